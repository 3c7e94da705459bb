"""char-rnn's and min-char-rnn's recipes on Tiny Shakespeare: hand-written BPTT, jax.grad, and a PyTorch twin.

    python experiments/char_rnn.py [--epochs 50] [--seeds 3] [--sources hand,autodiff,torch] [--data-path PATH]
                                   [--min-char-rnn-epochs 1] [--quick] [--stem char_rnn]

The `char-rnn` preset (`fnbackprop.train.rnn_lm.PRESETS`: 2 x 128 LSTM, sequences and batches of 50 with the
state carried, RMSprop 2e-3 decay 0.95, x0.97 per epoch after epoch 10, element-wise clipping at 5, the
forget-gate biases at 1) for each seed, with the hand-written backward, with jax.grad, and with a PyTorch
twin: `nn.LSTM` (2 layers) and `nn.Linear` on one-hot characters, started from the *same* initial weights
(ours, moved through the PyTorch layout), trained on the same batches in the same order with
`torch.optim.RMSprop` (alpha 0.95, eps 1e-8), `clamp_` at 5 and the same per-epoch learning rate.
The three are scored on the same validation characters by the same function (the twin's weights moved
back into our layout): `rnn_lm.validation_windows`, every validation character, state carried, a
deterministic paired estimate. Then the `min-char-rnn` preset (hand) for one seed.
Writes results/char_rnn.{json,png} (results/char_rnn-quick.* with --quick), samples in the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from _common import machine, spread
from fnbackprop.bench.rnn import torch_twin
from fnbackprop.train import lm, rnn_lm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
def from_torch(lstm, head, n_layer: int) -> dict:
    """nn.LSTM's and nn.Linear's weights as our CharRNN parameters (the inverse of `bench.rnn.torch_twin`)."""
    as_jax = lambda t: jnp.asarray(t.detach().numpy())  # noqa: E731
    layers = [{ours: as_jax(getattr(lstm, f"{theirs}_l{l}")) for ours, theirs in
               (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"))} for l in range(n_layer)]
    return {"layers": layers, "W_out": as_jax(head.weight), "b_out": as_jax(head.bias)}


def run_jax(config: rnn_lm.RNNConfig, data: lm.CharData) -> tuple[dict, object]:
    began = time.perf_counter()
    result = rnn_lm.train_rnn(config, data)
    return {"val_loss": result.final_val_loss, "train_seconds": result.train_seconds,
            "wall_seconds": time.perf_counter() - began, "history": result.history}, result.params


def run_torch(config: rnn_lm.RNNConfig, data: lm.CharData) -> tuple[dict, object]:
    """The PyTorch twin of `rnn_lm.train_rnn` (carry batching, RMSprop, element-wise clipping: the char-rnn preset)."""
    import torch

    assert config.cell == "lstm" and config.batching == "carry" and config.optimizer == "rmsprop" and config.clip == "elementwise"
    began = time.perf_counter()
    torch.manual_seed(config.seed)
    V, L = len(data.chars), config.n_layer
    model = rnn_lm.model_of(config, V)
    lstm, head = torch_twin(model, rnn_lm.initial_params(model, config, jax.random.split(jax.random.PRNGKey(config.seed))[0]))
    parameters = [*lstm.parameters(), *head.parameters()]
    per_epoch = rnn_lm.batches_per_epoch(config, len(data.train))
    total = rnn_lm.total_iterations(config, len(data.train))
    schedule = np.asarray(jax.vmap(rnn_lm.learning_rate(config, per_epoch))(jnp.arange(total)), np.float64)
    opt = torch.optim.RMSprop(parameters, lr=config.lr, alpha=config.decay_rate, eps=1e-8)
    xs, ys = (torch.from_numpy(a.astype(np.int64)) for a in rnn_lm.streams(data.train, config.batch_size))
    T = config.seq_length
    loss_fn = torch.nn.CrossEntropyLoss()
    losses, state = [], None
    loop_began = time.perf_counter()
    for it in range(total):
        k = it % per_epoch
        if k == 0:
            state = None  # a zero state at each epoch's start, as rnn_lm
        x = torch.nn.functional.one_hot(xs[:, k * T:(k + 1) * T], V).float()
        out, state = lstm(x, state)
        state = tuple(s.detach() for s in state)  # truncated BPTT: the gradient stops at the chunk boundary
        loss = loss_fn(head(out).reshape(-1, V), ys[:, k * T:(k + 1) * T].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in parameters:
            p.grad.clamp_(-config.grad_clip, config.grad_clip)
        for group in opt.param_groups:
            group["lr"] = float(schedule[it])
        opt.step()
        losses.append(loss.item())
    train_seconds = time.perf_counter() - loop_began
    params = from_torch(lstm, head, L)
    return {"val_loss": score(model, config, data, params), "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - began, "last_train_loss": float(np.mean(losses[-per_epoch // 2:]))}, params


def score(model, config: rnn_lm.RNNConfig, data: lm.CharData, params: dict) -> float:
    """The validation loss on every validation character (the same function for every source)."""
    windows = [jnp.asarray(a) for a in rnn_lm.validation_windows(config, data.val)]
    return float(rnn_lm.make_validation(model, config)(params, *windows))


def sample(model, params, data: lm.CharData, n: int = 300) -> str:
    return data.decode(rnn_lm.generate(model, params, data.encode("\n"), n, jax.random.PRNGKey(0)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=None, help="epochs of the char-rnn preset (default: its 50)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sources", default="hand,autodiff,torch")
    p.add_argument("--min-char-rnn-epochs", type=float, default=1.0, help="0 leaves min-char-rnn out")
    p.add_argument("--data-path", default=None)
    p.add_argument("--quick", action="store_true", help="smoke test: 0.05 epochs, 1 seed, results/char_rnn-quick.*")
    p.add_argument("--stem", default="char_rnn", help="results/STEM.json and STEM.png (default char_rnn)")
    args = p.parse_args()
    sources = args.sources.split(",")
    if "torch" in sources:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed (pip install '.[torch]'): the twin is left out", file=sys.stderr)
            sources.remove("torch")
    data = lm.load_chars(args.data_path)
    config = rnn_lm.PRESETS["char-rnn"]
    if args.quick:
        config, args.seeds, args.min_char_rnn_epochs = replace(config, max_epochs=0.05, eval_interval=10), 1, 0.002
    elif args.epochs is not None:
        config = replace(config, max_epochs=args.epochs)
    runs: dict = {s: [] for s in sources}
    params_of: dict = {}
    for seed in range(args.seeds):
        for source in sources:  # alternating, so that the machine's drift spreads over every source
            c = replace(config, seed=seed, grad_source=source if source != "torch" else "hand")
            record, params = (run_torch if source == "torch" else run_jax)(c, data)
            record["seed"] = seed
            runs[source].append(record)
            params_of.setdefault(source, params)
            print(f"{source} seed {seed}: val {record['val_loss']:.4f}, loop {record['train_seconds']:.1f} s, "
                  f"whole {record['wall_seconds']:.1f} s", flush=True)
    model = rnn_lm.model_of(config, data.vocab_size)
    summary = {s: {"val_loss": spread([r["val_loss"] for r in runs[s]]),
                   "train_seconds": spread([r["train_seconds"] for r in runs[s]]),
                   "sample": sample(model, params_of[s], data)} for s in sources}
    out: dict = {"machine": machine(), "config": asdict(config), "sources": summary, "runs": runs}
    if args.min_char_rnn_epochs > 0:
        mc = replace(rnn_lm.PRESETS["min-char-rnn"], max_epochs=args.min_char_rnn_epochs)
        record, params = run_jax(mc, data)
        record["sample"] = sample(rnn_lm.model_of(mc, data.vocab_size), params, data)
        out["min-char-rnn"] = {"config": asdict(mc), **record}
        print(f"min-char-rnn: val {record['val_loss']:.4f}, loop {record['train_seconds']:.1f} s", flush=True)
    stem = args.stem + ("-quick" if args.quick else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4))
    for source in sources:
        if source == "torch":
            continue
        for r in runs[source]:
            h = [e for e in r["history"] if "train_loss" in e]
            ax.plot([e["epoch"] for e in h], [e["val_loss"] for e in h], color="C0" if source == "hand" else "C1",
                    alpha=0.7, label=f"{source} (validation)" if r["seed"] == 0 else None)
    for r in runs.get("torch", []):
        ax.scatter([config.max_epochs], [r["val_loss"]], color="C2", marker="x", label="PyTorch twin (final)" if r["seed"] == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (every character)")
    ax.set_title(f"char-rnn preset, {config.max_epochs:g} epochs, {args.seeds} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=120)
    print(json.dumps({s: summary[s]["val_loss"] for s in sources}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
