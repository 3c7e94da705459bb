"""The training step of char-rnn's model, hand-written BPTT against jax.grad and PyTorch's nn.LSTM.

    python experiments/char_rnn_step.py [--rounds 15] [--quick]

Each contender computes the loss and every gradient of a 2-layer LSTM on one-hot characters with a
linear head (char-rnn's model: vocabulary 65, sequences and batches of 50), float32, on this machine's
CPU: the hand-written backward (`fnbackprop.models.char_rnn`) and `jax.grad` of the same forward, each
jitted, and PyTorch's `nn.LSTM` (its fused CPU kernel) with the same weights, forward and
`loss.backward()`. Interleaved rounds, medians (`fnbackprop.bench.timing.interleaved`), at hidden 128
(char-rnn's) and 512. Writes results/char_rnn_step.json.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fnbackprop.bench.timing import interleaved, per_round_ratio, summary, torch_module
from fnbackprop.models import char_rnn

VOCAB, SEQ, BATCH = 65, 50, 50


def torch_twin(model, params):
    """nn.LSTM (2 layers) + nn.Linear with our weights; () -> None runs one forward and backward."""
    torch = torch_module()
    if torch is None:
        return None
    hidden = model.layers[0].hidden
    lstm = torch.nn.LSTM(VOCAB, hidden, num_layers=len(model.layers), batch_first=True)
    head = torch.nn.Linear(hidden, VOCAB)
    with torch.no_grad():
        for l, p in enumerate(params["layers"]):
            for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                getattr(lstm, f"{theirs}_l{l}").copy_(torch.from_numpy(np.asarray(p[ours])))
        head.weight.copy_(torch.from_numpy(np.asarray(params["W_out"])))
        head.bias.copy_(torch.from_numpy(np.asarray(params["b_out"])))
    return lstm, head


def contenders(hidden: int) -> tuple[dict, dict]:
    model = char_rnn(VOCAB, hidden=hidden, n_layer=2, cell="lstm")
    params = model.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, VOCAB, (BATCH, SEQ))
    targets = np.roll(idx, -1, axis=1)
    x, y = jnp.asarray(idx), jnp.asarray(targets)
    hand = jax.jit(model.value_and_grad)
    auto = jax.jit(jax.value_and_grad(model.loss))
    losses = {"hand": float(jax.block_until_ready(hand(params, x, y))[0]),
              "jax.grad": float(jax.block_until_ready(auto(params, x, y))[0])}
    calls = {"hand": functools.partial(hand, params, x, y), "jax.grad": functools.partial(auto, params, x, y)}
    twin = torch_twin(model, params)
    if twin is not None:
        torch = torch_module()
        lstm, head = twin
        tx = torch.nn.functional.one_hot(torch.from_numpy(idx), VOCAB).float()
        ty = torch.from_numpy(targets)

        def torch_step():
            lstm.zero_grad()
            head.zero_grad()
            out, _ = lstm(tx)
            loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, VOCAB), ty.reshape(-1))
            loss.backward()
            return loss.item()

        losses["torch nn.LSTM"] = torch_step()
        calls["torch nn.LSTM"] = torch_step
    return calls, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="hidden 128 only, 3 rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    results = []
    for hidden in ((128,) if args.quick else (128, 512)):
        calls, losses = contenders(hidden)
        times = interleaved(calls, rounds)
        row = {"hidden": hidden, "layers": 2, "batch": BATCH, "seq": SEQ, "vocab": VOCAB, "rounds": rounds,
               "ms": {name: {k: 1e3 * v for k, v in summary(t).items() if k != "n"} for name, t in times.items()},
               "losses": losses,
               "hand / jax.grad (per round)": per_round_ratio(times["hand"], times["jax.grad"])}
        if "torch nn.LSTM" in times:
            row["torch / hand (per round)"] = per_round_ratio(times["torch nn.LSTM"], times["hand"])
        results.append(row)
        print(json.dumps(row, indent=1))
    out = Path(__file__).parent / "results" / f"char_rnn_step{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"machine": "2 CPU cores, float32", "results": results}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
