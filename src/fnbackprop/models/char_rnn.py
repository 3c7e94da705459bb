"""A character-level recurrent language model (char-rnn's): one-hot characters, stacked recurrent layers
(`fb.lstm` by default), a linear head, the mean cross-entropy over every position; its backward
written out in the reverse order of its forward.

    a^0 = onehot(idx);  a^l, s^l_T = layer_l(a^{l-1}, s^l_0);  logits = a^L W_out^T + b_out
    C = -(1 / (m T)) sum_{i, t} log softmax(logits_{i, t})[y_{i, t}]

Backward (the head and the loss fused, as llm.c does): dlogits = (softmax(logits) - onehot(y)) / (m T),
dW_out = dlogits^T a^L, db_out = sum dlogits, da^L = dlogits W_out; then each layer's BPTT from the top
down, da^{l-1} = its dx. With states given (truncated BPTT, char-rnn's way), each layer starts from its
state and the final states are returned; their gradients stop at the chunk's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from ..layers.protocol import Array
from ..layers.recurrent import Recurrent, gru, lstm, rnn, zero_state

CELLS = {"rnn": lambda h: rnn(h), "lstm": lstm, "gru": gru}


@dataclass(frozen=True)
class CharRNN:
    vocab_size: int
    layers: tuple[Recurrent, ...]

    def init(self, key: Array, dtype: Any = jnp.float32) -> dict:
        """Each layer PyTorch's init; the head W_out: (V, H) and b_out U(-1/sqrt(H), 1/sqrt(H)) (nn.Linear's)."""
        keys = jax.random.split(key, len(self.layers) + 1)
        params: dict = {"layers": [], "W_out": None, "b_out": None}
        width = self.vocab_size
        for layer, k in zip(self.layers, keys):
            params["layers"].append(layer.init(k, (width,), dtype))
            width = layer.hidden
        bound = width ** -0.5
        kw, kb = jax.random.split(keys[-1])
        params["W_out"] = jax.random.uniform(kw, (self.vocab_size, width), dtype, -bound, bound)
        params["b_out"] = jax.random.uniform(kb, (self.vocab_size,), dtype, -bound, bound)
        return params

    def zero_states(self, m: int, dtype: Any = jnp.float32) -> list:
        """Every layer's zero state for a batch of m sequences."""
        return [zero_state(layer.cell, m, layer.hidden, dtype) for layer in self.layers]

    def forward(self, params: dict, idx: Array, states: Sequence | None = None) -> tuple[Array, list, list]:
        """(logits: (m, T, V), the final states, the caches)."""
        a = jax.nn.one_hot(idx, self.vocab_size, dtype=params["W_out"].dtype)
        states = list(states) if states is not None else [None] * len(self.layers)
        finals, caches = [], []
        for layer, p, s in zip(self.layers, params["layers"], states):
            a, final, cache = layer.scan(p, a, s)
            finals.append(final)
            caches.append(cache)
        caches.append(a)
        return a @ params["W_out"].T + params["b_out"], finals, caches

    def loss(self, params: dict, idx: Array, targets: Array, states: Sequence | None = None) -> Array:
        """The mean cross-entropy over every position."""
        logits = self.forward(params, idx, states)[0]
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))

    def value_and_grad(self, params: dict, idx: Array, targets: Array, states: Sequence | None = None) -> tuple:
        """(loss, grads) by the hand-written backward; with `states`, (loss, grads, final states)."""
        logits, finals, caches = self.forward(params, idx, states)
        top = caches.pop()
        logp = jax.nn.log_softmax(logits, axis=-1)
        loss = -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))
        dlogits = (jnp.exp(logp) - jax.nn.one_hot(targets, self.vocab_size, dtype=logits.dtype)) / targets.size
        grads: dict = {"W_out": jnp.einsum("mtv,mth->vh", dlogits, top), "b_out": jnp.sum(dlogits, axis=(0, 1)),
                       "layers": [None] * len(self.layers)}
        da = dlogits @ params["W_out"]
        for l in reversed(range(len(self.layers))):
            grads["layers"][l], da, _ = self.layers[l].scan_backward(params["layers"][l], caches[l], da)
        return (loss, grads) if states is None else (loss, grads, finals)

    def n_params(self, params: dict) -> int:
        return sum(int(a.size) for a in jax.tree_util.tree_leaves(params))


def char_rnn(vocab_size: int, hidden: int = 128, n_layer: int = 2, cell: str = "lstm") -> CharRNN:
    """char-rnn's model: n_layer recurrent layers of `hidden` units (`cell`: rnn, lstm or gru) on one-hot
    characters, and a linear head over the vocabulary."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    if n_layer < 1 or hidden < 1 or vocab_size < 2:
        raise ValueError(f"need n_layer >= 1, hidden >= 1 and vocab_size >= 2, got {n_layer}, {hidden}, {vocab_size}")
    return CharRNN(vocab_size, tuple(CELLS[cell](hidden) for _ in range(n_layer)))
