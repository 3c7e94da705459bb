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
    """(nn.LSTM, nn.Linear) holding our weights, or None without PyTorch."""
    torch = torch_module()
    if torch is None:
        return None
    hidden = model.layers[0].hidden
    lstm = torch.nn.LSTM(VOCAB, hidden, num_layers=len(model.layers), batch_first=True)
    head = torch.nn.Linear(hidden, VOCAB)
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
