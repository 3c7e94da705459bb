"""`fnbackprop bench --rnn-only`: the step of char-rnn's model, hand-written BPTT against jax.grad and
PyTorch's nn.LSTM.

Each contender computes the loss and every gradient of a 2-layer LSTM on one-hot characters with a
linear head (char-rnn's model: vocabulary 65, sequences and batches of 50), float32, on this machine's
CPU: the hand-written backward (`fnbackprop.models.char_rnn`) and `jax.grad` of the same forward, each
jitted, and PyTorch's `nn.LSTM` (its fused CPU kernel) with the same weights, forward and
`loss.backward()`. Interleaved rounds, medians (`timing.interleaved`), at hidden 128 (char-rnn's) and
512. The losses of the first call are recorded: the three must agree (the same weights and batch).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..models import char_rnn
from .timing import interleaved, per_round_ratio, summary, torch_module

VOCAB, SEQ, BATCH = 65, 50, 50


def torch_twin(model, params):
    """(nn.LSTM, nn.Linear) holding our weights, or None without PyTorch: layer l's W_ih is weight_ih_l{l}, and
    so on (the layout is PyTorch's already); the head's W_out, b_out are the Linear's weight and bias."""
    torch = torch_module()
    if torch is None:
        return None
    hidden = model.layers[0].hidden
    lstm = torch.nn.LSTM(model.vocab_size, hidden, num_layers=len(model.layers), batch_first=True)
    head = torch.nn.Linear(hidden, model.vocab_size)
    with torch.no_grad():
        for l, p in enumerate(params["layers"]):
            for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                getattr(lstm, f"{theirs}_l{l}").copy_(torch.from_numpy(np.array(p[ours])))
        head.weight.copy_(torch.from_numpy(np.array(params["W_out"])))
        head.bias.copy_(torch.from_numpy(np.array(params["b_out"])))
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
    calls: dict[str, Callable[[], Any]] = {"hand": functools.partial(hand, params, x, y),
                                           "jax.grad": functools.partial(auto, params, x, y)}
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


def run_rnn_benchmark(quick: bool = False, rounds: int | None = None) -> list[dict]:
    """One row per size: ms per step of each contender (medians and quartiles of interleaved rounds), the
    first call's losses, and the per-round ratios hand / jax.grad and PyTorch / hand."""
    rounds = rounds or (3 if quick else 15)
    rows = []
    for hidden in ((128,) if quick else (128, 512)):
        calls, losses = contenders(hidden)
        times = interleaved(calls, rounds)
        row = {"hidden": hidden, "layers": 2, "batch": BATCH, "seq": SEQ, "vocab": VOCAB, "rounds": rounds,
               "ms": {name: {k: 1e3 * v for k, v in summary(t).items() if k != "n"} for name, t in times.items()},
               "losses": losses, "hand / jax.grad": per_round_ratio(times["hand"], times["jax.grad"])}
        if "torch nn.LSTM" in times:
            row["torch / hand"] = per_round_ratio(times["torch nn.LSTM"], times["hand"])
        rows.append(row)
    return rows


def rnn_targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    """(target, met, measured): hand / jax.grad at most 1.0 at each size (median round); faster than
    PyTorch's nn.LSTM at char-rnn's size (hidden 128)."""
    out = []
    for r in rows:
        ratio = r["hand / jax.grad"]["median"]
        out.append((f"hand / jax.grad <= 1.0, hidden {r['hidden']}", ratio <= 1.0, f"{ratio:.3f}"))
        if "torch / hand" in r and r["hidden"] == 128:
            faster = r["torch / hand"]["median"]
            out.append(("faster than nn.LSTM, hidden 128", faster > 1.0, f"{faster:.2f}x"))
    return out


# ----- the memory of BPTT at T = 1,000 ------------------------------------------------------------------------
def bptt_contenders(cell, every: int) -> dict[str, Callable]:
    """name -> (params, x, dy) -> (dparams, dx) for one recurrent layer over a whole sequence, from a zero state:
    the hand-written BPTT storing every step's cache, the same recomputing each segment of `every` steps from
    its stored state (`checkpointed_backward`), jax.grad of the scanned forward, and jax.grad with
    `jax.checkpoint` around each segment of `every` steps (the same schedule, by autodiff)."""
    from ..layers.recurrent import checkpointed_backward, sequence_backward, sequence_forward

    def stored(params, x, dy):
        return sequence_backward(cell, params, sequence_forward(cell, params, x)[2], dy)[:2]

    def segmented(params, x):
        m, T, _ = x.shape
        segments = jnp.swapaxes(x.reshape(m, T // every, every, x.shape[-1]), 0, 1)

        @jax.checkpoint
        def segment(state, x_seg):
            hs, final, _ = sequence_forward(cell, params, x_seg, state)
            return final, hs

        hs = jax.lax.scan(segment, _zero(cell, params, x), segments)[1]
        return jnp.swapaxes(hs, 0, 1).reshape(m, T, -1)

    def autodiff(forward):
        return lambda params, x, dy: jax.vjp(forward, params, x)[1](dy)

    return {"hand, every step stored": stored,
            f"hand, checkpoints every {every} steps": lambda p, x, dy: checkpointed_backward(cell, p, x, dy, every)[:2],
            "jax.grad": autodiff(lambda p, x: sequence_forward(cell, p, x)[0]),
            f"jax.grad + jax.checkpoint every {every} steps": autodiff(segmented)}


def _zero(cell, params, x):
    from ..layers.recurrent import zero_state

    return zero_state(cell, x.shape[0], params["W_hh"].shape[1], x.dtype)


def measure_bptt_memory(T: int = 1000, hidden: int = 128, batch: int = 32, every: int = 40, timed: bool = True) -> dict:
    """Peak MiB (XLA's memory analysis, `bench.memory.memory_bytes`) and ms of each `bptt_contenders` entry for
    an LSTM layer of `hidden` on a float32 sequence (batch, T, hidden), every gradient of <h, dy>."""
    from ..layers.recurrent import lstm
    from .memory import MiB, median_seconds, memory_bytes

    layer = lstm(hidden)
    params = layer.init(jax.random.PRNGKey(0), (hidden,))
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, T, hidden), jnp.float32)
    dy = jax.random.normal(jax.random.PRNGKey(2), (batch, T, hidden), jnp.float32)
    out: dict[str, Any] = {"T": T, "hidden": hidden, "batch": batch, "every": every, "peak_mib": {}, "temp_mib": {}, "ms": {}}
    for name, step in bptt_contenders(layer.cell, every).items():
        peak, temp = memory_bytes(step, params, x, dy)
        out["peak_mib"][name], out["temp_mib"][name] = peak / MiB, temp / MiB
        if timed:
            out["ms"][name] = 1e3 * median_seconds(step, params, x, dy)
    return out
