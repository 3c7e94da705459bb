"""Recurrent layers with backpropagation through time written by hand: `rnn`, `lstm`, `gru`.

Each layer maps a sequence x: (m, T, C) to every hidden state h: (m, T, H), from a zero initial state
unless one is given. Parameters are laid out as PyTorch's one-layer `nn.RNN`, `nn.LSTM`, `nn.GRU`
(`weight_ih_l0` is W_ih, `weight_hh_l0` is W_hh, `bias_ih_l0` is b_ih, `bias_hh_l0` is b_hh), G gates
stacked in PyTorch's order (RNN G = 1; LSTM i, f, g, o; GRU r, z, n), so weights move both ways with
no reshaping. The initialisation is PyTorch's: every entry U(-1/sqrt(H), 1/sqrt(H)).

The forward precomputes the input projections of all steps at once, gi = x W_ih^T + b_ih: (m, T, G H),
then runs the recurrence in a `lax.scan`. The backward is a reverse `lax.scan` carrying dh (and dc
for the LSTM): at step t the gradient entering h_t is the upstream dy_t plus what step t + 1 sent
back, the derivation of the recurrence. The weights get the sum over time of each step's share (the
fan-out rule of Lei's notes: one weight, T uses), taken after the scan as two matrix products:

    dW_ih = sum_t dgi_t^T x_t,   db_ih = sum_t dgi_t,   dx_t = dgi_t W_ih
    dW_hh = sum_t dgh_t^T h_{t-1},   db_hh = sum_t dgh_t

with dgi_t, dgh_t the gradients of step t's input and hidden pre-activations (equal except in the
GRU, whose candidate scales its hidden part by the reset gate).

Truncated backpropagation through time: `layer.scan(params, x, state)` runs from a given state and
returns the final one; `layer.scan_backward(params, cache, dy, dstate)` takes the gradient of the
final state (None: zero, the state not used after the chunk) and returns the initial state's. The
state is h: (m, H), or (h, c) for the LSTM. Carry the final state of one chunk into the next as it
is (its gradient stops at the chunk boundary), or reset it per window.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .protocol import Array, Params

State = Any  # h: (m, H), or (h, c) for the LSTM


def _sigmoid(a: Array) -> Array:
    return jax.nn.sigmoid(a)


def _split(a: Array, parts: int) -> list[Array]:
    return jnp.split(a, parts, axis=-1)


# ----- the cells: one step forward beside its backward ----------------------------------------------------
class Cell(NamedTuple):
    """One step of a recurrence. `step(W_hh, b_hh, gi_t, state) -> (state_t, h_t, cache_t)`;
    `back(W_hh, cache_t, dh_t, dc_next) -> (dgi_t, dgh_t, (dh_{t-1}, dc_{t-1}))`, with dh_t the whole gradient
    entering h_t and dc_next what step t + 1 sent to the cell state (the LSTM's; None and None otherwise).
    `cell_state`: the state is (h, c), not h alone."""

    gates: int
    step: Callable
    back: Callable
    cell_state: bool = False


def _rnn_cell(nonlinearity: str) -> Cell:
    """h_t = g(a_t), a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh with g = tanh or relu (cs231n's
    rnn_step_forward, in PyTorch's layout). Backward: da_t = dh_t (.) g'(a_t), g' = 1 - h_t^2 for tanh,
    1[a_t > 0] for relu; dh_{t-1} = da_t W_hh; dgi_t = dgh_t = da_t."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")

    def step(W_hh: Array, b_hh: Array, gi: Array, h: Array) -> tuple:
        a = gi + h @ W_hh.T + b_hh
        h_new = jnp.tanh(a) if nonlinearity == "tanh" else jnp.maximum(a, 0)
        return h_new, h_new, (h, h_new)

    def back(W_hh: Array, cache: tuple, dh: Array, _: Any) -> tuple:
        h_prev, h_new = cache
        da = dh * (1 - h_new * h_new) if nonlinearity == "tanh" else dh * (h_new > 0).astype(dh.dtype)
        return da, da, (da @ W_hh, None)

    return Cell(1, step, back)


def _lstm_step(W_hh: Array, b_hh: Array, gi: Array, state: tuple) -> tuple:
    """i, f, g, o = sigma(a_i), sigma(a_f), tanh(a_g), sigma(a_o) with a = gi_t + h_{t-1} W_hh^T + b_hh;
    c_t = f (.) c_{t-1} + i (.) g;  h_t = o (.) tanh(c_t)  (PyTorch's nn.LSTM, gates in that order)."""
    h, c = state
    a_i, a_f, a_g, a_o = _split(gi + h @ W_hh.T + b_hh, 4)
    i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), jnp.tanh(a_g), _sigmoid(a_o)
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    h_new = o * tc
    return (h_new, c_new), h_new, (h, c, i, f, g, o, tc)


def _lstm_back(W_hh: Array, cache: tuple, dh: Array, dc_next: Array) -> tuple:
    """The LSTM step's backward (Karpathy's lstm.py, cs231n's lstm_step_backward):
    do = dh (.) tanh(c_t);  dc = dc_{t, from t+1} + dh (.) o (.) (1 - tanh^2(c_t))   (the cell's second path)
    then the gates (`_lstm_gates_back`);  dh_{t-1} = da W_hh."""
    da, dc_prev = _lstm_gates_back(cache, dh * cache[6], lstm_dc(cache, dh, dc_next))
    return da, da, (da @ W_hh, dc_prev)


def lstm_dc(cache: tuple, dh: Array, dc_next: Array) -> Array:
    """dc_t = dc_{t, from t+1} + dh_t (.) o (.) (1 - tanh^2(c_t)): the whole gradient entering c_t, from the
    next step and through h_t = o tanh(c_t) (the cell's second path)."""
    o, tc = cache[5], cache[6]
    return dc_next + dh * o * (1 - tc * tc)


def _lstm_gates_back(cache: tuple, do: Array, dc: Array) -> tuple[Array, Array]:
    """di = dc (.) g;  dg = dc (.) i;  df = dc (.) c_{t-1};  dc_{t-1} = dc (.) f
    da = [di i(1 - i), df f(1 - f), dg (1 - g^2), do o(1 - o)]  (the pre-activations, gates i, f, g, o)."""
    h, c, i, f, g, o, tc = cache
    da = jnp.concatenate([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g), do * o * (1 - o)], axis=-1)
    return da, dc * f


def _gru_step(W_hh: Array, b_hh: Array, gi: Array, h: Array) -> tuple:
    """r = sigma(gi_r + gh_r), z = sigma(gi_z + gh_z), n = tanh(gi_n + r (.) gh_n), gh = h_{t-1} W_hh^T + b_hh;
    h_t = (1 - z) (.) n + z (.) h_{t-1}  (PyTorch's nn.GRU: the reset gate inside, on W_hn h + b_hn)."""
    gi_r, gi_z, gi_n = _split(gi, 3)
    gh_r, gh_z, gh_n = _split(h @ W_hh.T + b_hh, 3)
    r, z = _sigmoid(gi_r + gh_r), _sigmoid(gi_z + gh_z)
    n = jnp.tanh(gi_n + r * gh_n)
    h_new = (1 - z) * n + z * h
    return h_new, h_new, (h, r, z, n, gh_n)


def _gru_back(W_hh: Array, cache: tuple, dh: Array, _: Any) -> tuple:
    """dn = dh (.) (1 - z);  dz = dh (.) (h_{t-1} - n);  da_n = dn (.) (1 - n^2)
    dr = da_n (.) gh_n;  da_r = dr (.) r(1 - r);  da_z = dz (.) z(1 - z)
    dgi = [da_r, da_z, da_n];  dgh = [da_r, da_z, da_n (.) r];  dh_{t-1} = dh (.) z + dgh W_hh."""
    h, r, z, n, gh_n = cache
    da_n = dh * (1 - z) * (1 - n * n)
    da_r = da_n * gh_n * r * (1 - r)
    da_z = dh * (h - n) * z * (1 - z)
    dgi = jnp.concatenate([da_r, da_z, da_n], axis=-1)
    dgh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
    return dgi, dgh, (dh * z + dgh @ W_hh, None)


LSTM_CELL = Cell(4, _lstm_step, _lstm_back, cell_state=True)
GRU_CELL = Cell(3, _gru_step, _gru_back)


# ----- the sequence: forward and backward through time ------------------------------------------------------
class SequenceCache(NamedTuple):
    x: Array  # (m, T, C)
    h_prev: Array  # (m, T, H): the state each step started from
    steps: Any  # each step's cache, stacked over time (T first)


def zero_state(cell: Cell, m: int, hidden: int, dtype: Any) -> State:
    """The zero state of m sequences: h, or (h, c) for a cell with a cell state."""
    h = jnp.zeros((m, hidden), dtype)
    return (h, h) if cell.cell_state else h


def sequence_forward(cell: Cell, params: Params, x: Array, state: State | None = None) -> tuple[Array, State, SequenceCache]:
    """(every h_t: (m, T, H), the final state, the cache) from `state` (None: zeros)."""
    hidden = params["W_hh"].shape[1]
    gi = x @ params["W_ih"].T + (params["b_ih"] if "b_ih" in params else 0)
    b_hh = params["b_hh"] if "b_hh" in params else jnp.zeros((params["W_hh"].shape[0],), x.dtype)
    state = zero_state(cell, x.shape[0], hidden, x.dtype) if state is None else state

    def one(carry: State, gi_t: Array) -> tuple:
        new, h_t, cache_t = cell.step(params["W_hh"], b_hh, gi_t, carry)
        return new, (h_t, carry[0] if cell.cell_state else carry, cache_t)

    stacked: tuple
    final, stacked = jax.lax.scan(one, state, jnp.swapaxes(gi, 0, 1))
    hs, h_prev, steps = stacked
    return jnp.swapaxes(hs, 0, 1), final, SequenceCache(x, jnp.swapaxes(h_prev, 0, 1), steps)


def sequence_backward(cell: Cell, params: Params, cache: SequenceCache, dy: Array, dstate: State | None = None,
                      intermediates: bool = False) -> tuple:
    """(dparams, dx, dstate_0), and with `intermediates` also dh_t: (m, T, H), the whole gradient entering
    each h_t (and dc_t for the LSTM, the cell state's, (m, T, H)). A reverse scan over time carrying
    (dh, dc): dh_t = dy_t + dh from step t + 1."""
    x = cache.x
    hidden = params["W_hh"].shape[1]
    zero = jnp.zeros((x.shape[0], hidden), dy.dtype)
    dstate = zero_state(cell, x.shape[0], hidden, dy.dtype) if dstate is None else dstate
    dh_next, dc_next = dstate if cell.cell_state else (dstate, zero)

    def one(carry: tuple, inputs: tuple) -> tuple:
        dh_carried, dc_carried = carry
        dy_t, cache_t = inputs
        dh_t = dy_t + dh_carried
        dgi_t, dgh_t, (dh_prev, dc_prev) = cell.back(params["W_hh"], cache_t, dh_t, dc_carried)
        dc_prev = zero if dc_prev is None else dc_prev
        dc_t = lstm_dc(cache_t, dh_t, dc_carried) if cell.cell_state else dc_carried
        return (dh_prev, dc_prev), (dgi_t, dgh_t, dh_t, dc_t)

    per_step: tuple
    (dh0, dc0), per_step = jax.lax.scan(one, (dh_next, dc_next), (jnp.swapaxes(dy, 0, 1), cache.steps), reverse=True)
    dgi, dgh, dhs, dcs = per_step
    dgi, dgh = jnp.swapaxes(dgi, 0, 1), jnp.swapaxes(dgh, 0, 1)
    grads = {"W_ih": jnp.einsum("mtg,mtc->gc", dgi, x), "W_hh": jnp.einsum("mtg,mth->gh", dgh, cache.h_prev)}
    if "b_ih" in params:
        grads["b_ih"] = jnp.sum(dgi, axis=(0, 1))
    if "b_hh" in params:
        grads["b_hh"] = jnp.sum(dgh, axis=(0, 1))
    dx = dgi @ params["W_ih"]
    dstate0 = (dh0, dc0) if cell.cell_state else dh0
    if not intermediates:
        return grads, dx, dstate0
    found = {"dh": jnp.swapaxes(dhs, 0, 1)}
    if cell.cell_state:
        found["dc"] = jnp.swapaxes(dcs, 0, 1)
    return grads, dx, dstate0, found


def checkpointed_backward(cell: Cell, params: Params, x: Array, dy: Array, every: int, state: State | None = None,
                          dstate: State | None = None) -> tuple:
    """(dparams, dx, dstate_0) of the sequence from `state`, storing only every `every`-th state: Gruslys et
    al.'s (2016) checkpointed BPTT in its simplest form. The forward keeps the n = T / every states that
    start each segment and nothing else; the backward walks the segments from the last to the first,
    recomputes one segment's step caches from its stored state (`sequence_forward`) and runs that segment's
    BPTT (`sequence_backward`) with the gradient carried in from the segment after it:

        dh_{end of s} = dh_0 of segment s + 1,   dW = sum over segments of each segment's dW

    Memory: n states and one segment's caches (O(T / k + k) instead of O(T)); cost: one more forward.
    The result is the plain backward's, up to the order of the sums over time."""
    m, T, _ = x.shape
    if every < 1 or T % every:
        raise ValueError(f"checkpointed BPTT needs a segment length dividing T = {T}, got {every}")
    n, hidden = T // every, params["W_hh"].shape[1]
    state = zero_state(cell, m, hidden, x.dtype) if state is None else state
    segments = lambda a: jnp.swapaxes(a.reshape(m, n, every, *a.shape[2:]), 0, 1)  # noqa: E731  (n, m, k, ...)

    def forward_segment(carry: State, x_seg: Array) -> tuple:
        final = sequence_forward(cell, params, x_seg, carry)[1]
        return final, carry  # keep the state the segment started from, nothing else

    starts: Any = jax.lax.scan(forward_segment, state, segments(x))[1]
    dstate = zero_state(cell, m, hidden, dy.dtype) if dstate is None else dstate
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

    def backward_segment(carry: tuple, inputs: tuple) -> tuple:
        dstate_end, total = carry
        x_seg, dy_seg, start = inputs
        cache = sequence_forward(cell, params, x_seg, start)[2]  # the segment's caches, recomputed
        grads, dx_seg, dstate_start = sequence_backward(cell, params, cache, dy_seg, dstate_end)
        return (dstate_start, jax.tree_util.tree_map(jnp.add, total, grads)), dx_seg

    dxs: Array
    (dstate0, grads), dxs = jax.lax.scan(backward_segment, (dstate, zeros), (segments(x), segments(dy), starts), reverse=True)
    return grads, jnp.swapaxes(dxs, 0, 1).reshape(x.shape), dstate0


# ----- the layers -------------------------------------------------------------------------------------------
class Recurrent(NamedTuple):
    """A recurrent layer: the layer protocol (`init`, `forward`, `backward` from a zero state) and
    `scan` / `scan_backward` for a given initial state and the final state's gradient."""

    init: Callable
    forward: Callable
    backward: Callable
    scan: Callable
    scan_backward: Callable
    cell: Cell
    hidden: int
    name: str = "recurrent"
    stochastic: bool = False


def _recurrent(cell: Cell, hidden: int, bias: bool, name: str) -> Recurrent:
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise ValueError(f"{name}: hidden must be a positive integer, got {hidden!r}")
    G = cell.gates

    def init(key: Array, in_shape: tuple[int, ...], dtype: Any = jnp.float32) -> dict:
        """PyTorch's init: every entry U(-1/sqrt(H), 1/sqrt(H)); in_shape is (T, C) or (C,)."""
        C = in_shape[-1]
        bound = 1 / math.sqrt(hidden)
        shapes: dict[str, tuple[int, ...]] = {"W_ih": (G * hidden, C), "W_hh": (G * hidden, hidden)}
        if bias:
            shapes |= {"b_ih": (G * hidden,), "b_hh": (G * hidden,)}
        keys = jax.random.split(key, len(shapes))
        return {k: jax.random.uniform(kk, s, dtype, -bound, bound) for kk, (k, s) in zip(keys, shapes.items())}

    def forward(params: dict, x: Array) -> tuple[Array, SequenceCache]:
        if x.ndim != 3:
            raise ValueError(f"{name}: expected x of shape (m, T, C), got {x.shape}")
        hs, _, cache = sequence_forward(cell, params, x)
        return hs, cache

    def backward(params: dict, cache: SequenceCache, dy: Array) -> tuple[dict, Array]:
        grads, dx, _ = sequence_backward(cell, params, cache, dy)
        return grads, dx

    def scan(params: dict, x: Array, state: State | None = None) -> tuple[Array, State, SequenceCache]:
        return sequence_forward(cell, params, x, state)

    def scan_backward(params: dict, cache: SequenceCache, dy: Array, dstate: State | None = None) -> tuple:
        return sequence_backward(cell, params, cache, dy, dstate)

    return Recurrent(init, forward, backward, scan, scan_backward, cell, hidden, name)


def rnn(hidden: int, nonlinearity: str = "tanh", bias: bool = True) -> Recurrent:
    """A vanilla RNN (PyTorch's nn.RNN, one layer): h_t = g(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""
    return _recurrent(_rnn_cell(nonlinearity), hidden, bias, f"rnn({hidden}, {nonlinearity})")


def lstm(hidden: int, bias: bool = True) -> Recurrent:
    """An LSTM (PyTorch's nn.LSTM, one layer; gates i, f, g, o): c_t = f c_{t-1} + i g, h_t = o tanh(c_t)."""
    return _recurrent(LSTM_CELL, hidden, bias, f"lstm({hidden})")


def gru(hidden: int, bias: bool = True) -> Recurrent:
    """A GRU (PyTorch's nn.GRU, one layer; gates r, z, n): h_t = (1 - z) n + z h_{t-1}."""
    return _recurrent(GRU_CELL, hidden, bias, f"gru({hidden})")
