"""Sequences (m, T, C): token and position embedding, and GPT-2's causal multi-head self-attention.

Notation of llm.c's `train_gpt2.c` and nanoGPT's `model.py`: m sequences of T positions, C channels,
nh heads of hs = C / nh channels each. Linear maps store W as (n_out, n_in), as `dense` does.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..activations import softmax_vjp
from .dense import dense_backward, dense_forward
from .protocol import Array, Layer

GPT2_STD = 0.02  # GPT-2's init: every weight N(0, 0.02^2)


def positive_integer(value: Any, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


# ----- embedding ---------------------------------------------------------------------------------------
def embedding(vocab_size: int, block_size: int, n_embd: int) -> Layer:
    """x[n, t] = wte[idx[n, t]] + wpe[t] for integer tokens idx: (m, T), T <= block_size.

    Backward: each row of wte gets the sum of dx over the positions where its token was used (a
    scatter-add: the fan-out rule over uses), each row t of wpe the sum of dx[:, t] over the batch;
    rows never used get 0. Tokens are integers and have no gradient: dx is None.
    """
    vocab_size, block_size, n_embd = (positive_integer(v, w) for v, w in ((vocab_size, "vocab_size"), (block_size, "block_size"),
                                                                     (n_embd, "n_embd")))

    def init(key: Array, in_shape: tuple[int, ...] = ()) -> dict:
        k_te, k_pe = jax.random.split(key)
        return {"wte": GPT2_STD * jax.random.normal(k_te, (vocab_size, n_embd), jnp.float32),
                "wpe": GPT2_STD * jax.random.normal(k_pe, (block_size, n_embd), jnp.float32)}

    def forward(params: dict, idx: Array) -> tuple[Array, Array]:
        return params["wte"][idx] + params["wpe"][: idx.shape[1]], idx

    def backward(params: dict, idx: Array, dx: Array) -> tuple[dict, None]:
        dwte = jnp.zeros_like(params["wte"]).at[idx.reshape(-1)].add(dx.reshape(-1, dx.shape[-1]))
        dwpe = jnp.zeros_like(params["wpe"]).at[: idx.shape[1]].set(jnp.sum(dx, axis=0))
        return {"wte": dwte, "wpe": dwpe}, None

    return Layer(init, forward, backward, name=f"embedding({vocab_size}, {block_size}, {n_embd})")


# ----- causal self-attention ---------------------------------------------------------------------------
def _heads(a: Array, n_head: int) -> Array:
    """(m, T, C) -> (m, nh, T, hs)."""
    m, T, C = a.shape
    return a.reshape(m, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def _merge(a: Array) -> Array:
    """(m, nh, T, hs) -> (m, T, C), the inverse of `_heads`."""
    m, nh, T, hs = a.shape
    return a.transpose(0, 2, 1, 3).reshape(m, T, nh * hs)


def _swap(a: Array) -> Array:
    """A^T of each head's matrix: (m, nh, r, c) -> (m, nh, c, r)."""
    return jnp.swapaxes(a, -1, -2)


def _dropout_scale(key: Array | None, rate: float, shape: tuple, dtype: Any) -> Array | float:
    """mask / (1 - rate), mask ~ Bernoulli(1 - rate); 1 without a key (inference) or a rate."""
    if key is None or rate == 0:
        return 1.0
    return jax.random.bernoulli(key, 1 - rate, shape).astype(dtype) / (1 - rate)


def attention_forward(params: dict, x: Array, n_head: int, rate: float = 0.0, key: Array | None = None,
                      probe: Array | None = None, block: int | None = None, scales: tuple | None = None,
                      dtype: Any = None) -> tuple[Array, tuple]:
    """y = c_proj(merge(dropout(P) V)), P = softmax(mask(Q K^T / sqrt(hs))), [Q K V] = c_attn(x).

    The causal mask sets the scores of keys after the query (s > t) to -inf, so P[t, s] = 0 there.
    With a key, dropout (rate) on P and on the output, as nanoGPT's attn_dropout and resid_dropout.
    `probe` (m, nh, T, T), added to P, is how the checker reads dC/dP from autodiff. With `block`, the
    core runs blockwise (`blockwise_attention`): P is never stored, so neither dropout on P nor a probe.
    `scales` (att_scale, out_scale), the dropout masks already scaled by 1 / (1 - rate), stand for the key
    (a tensor-parallel rank takes its slice of the one-device masks: `fnbackprop.parallel.tensor`).
    hs is read from c_attn's output, 3 nh hs wide: a rank holding nh / tp heads runs this unchanged.
    With a `dtype`, c_attn's and c_proj's products (forward, and dx's) take their operands rounded to it; the
    core's (Q K^T and P V) stay in x's dtype (at T = 64 and hs = 32, bfloat16 there made a CPU step no faster).
    """
    qkv, _ = dense_forward(params["c_attn"], x, dtype)
    hs = qkv.shape[-1] // (3 * n_head)
    q, k, v = (_heads(a, n_head) for a in jnp.split(qkv, 3, axis=-1))
    k_att, k_out = (None, None) if key is None else jax.random.split(key)
    if block is None:
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
        causal = jnp.tril(jnp.ones((q.shape[2], q.shape[2]), bool))
        P = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        if probe is not None:
            P = P + probe
        att_scale = _dropout_scale(k_att, rate, P.shape, x.dtype) if scales is None else scales[0]
        o, core = (P * att_scale) @ v, (P, att_scale)
    else:
        if (rate > 0 and key is not None) or probe is not None:
            raise ValueError("blockwise attention stores no probabilities: no attention dropout, no probe")
        o, lse = blockwise_attention(q, k, v, block)
        core = (o, lse)
    y = _merge(o)
    out, _ = dense_forward(params["c_proj"], y, dtype)
    out_scale = _dropout_scale(k_out, rate, out.shape, x.dtype) if scales is None else scales[1]
    return out * out_scale, (x, q, k, v, core, y, out_scale)


def attention_backward(params: dict, cache: tuple, dout: Array, block: int | None = None,
                       dtype: Any = None) -> tuple[dict, Array, Array | None]:
    """(dparams, dx, dP), the forward's steps in reverse (llm.c's attention_backward):

        dy = c_proj^T (dout * out_scale)                       (and dW_proj = dout^T y, db_proj = sum dout)
        dV = (P * att_scale)^T dy_h,   dP = (dy_h V^T) * att_scale        per head h (dV computed as its transpose)
        dS = P * (dP - sum_s dP P)                              the softmax's Jacobian-vector product, row by row;
                                                                masked entries have P = 0, so dS = 0 there
        dQ = dS K / sqrt(hs),   dK = dS^T Q / sqrt(hs)                  (dK as its transpose, Q^T dS / sqrt(hs))
        dx = c_attn^T [dQ dK dV]                                (and dW_attn = [dQ dK dV]^T x)

    With `block` the middle lines run blockwise (`blockwise_attention_backward`) and dP is None. `dtype` rounds
    c_proj's and c_attn's products' operands, as in the forward.
    """
    x, q, k, v, core, y, out_scale = cache
    hs = q.shape[-1]
    g_proj, dy = dense_backward(params["c_proj"], y, dout * out_scale, dtype)
    dyh = _heads(dy, q.shape[1])
    if block is None:
        P, att_scale = core
        # dV and dK as their transposes, dV^T = dy_h^T (P * att_scale) and dK^T = Q^T dS / sqrt(hs), so that every
        # product's left operand is contracted over its last axis: XLA's CPU backend sends P^T dy_h, contracted over
        # its rows, to a slower kernel (212 against 140 us at 12 sequences x 4 heads of 64 x 64 by 64 x 32)
        dv_t = _swap(dyh) @ (P * att_scale)
        dP = (dyh @ _swap(v)) * att_scale
        dS = softmax_vjp(P, dP)
        dq = dS @ k / math.sqrt(hs)
        dk_t = _swap(q) @ dS / math.sqrt(hs)
        dk, dv = _swap(dk_t), _swap(dv_t)
    else:
        o, lse = core
        (dq, dk, dv), dP = blockwise_attention_backward(q, k, v, o, lse, dyh, block), None
    g_attn, dx = dense_backward(params["c_attn"], x, jnp.concatenate([_merge(dq), _merge(dk), _merge(dv)], axis=-1), dtype)
    return {"c_attn": g_attn, "c_proj": g_proj}, dx, dP


# ----- blockwise (memory-saving) attention ---------------------------------------------------------------
def _key_blocks(k: Array, v: Array, block: int) -> tuple[Array, Array, int]:
    """K and V split into blocks of `block` keys, (n_blocks, m, nh, block, hs), padded with zeros at the end."""
    T = k.shape[2]
    n_blocks = -(-T // block)
    pad = ((0, 0), (0, 0), (0, n_blocks * block - T), (0, 0))

    def split(a: Array) -> Array:
        a = jnp.pad(a, pad)
        return a.reshape(*a.shape[:2], n_blocks, block, a.shape[-1]).transpose(2, 0, 1, 3, 4)

    return split(k), split(v), n_blocks


def _block_scores(q: Array, kj: Array, j: Array, block: int, T: int) -> Array:
    """S_j = Q K_j^T / sqrt(hs) for key block j, -inf where the key is after the query or is padding."""
    keys = j * block + jnp.arange(block)
    allowed = (keys[None, :] <= jnp.arange(q.shape[2])[:, None]) & (keys[None, :] < T)
    return jnp.where(allowed, q @ kj.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]), -jnp.inf)


def blockwise_attention(q: Array, k: Array, v: Array, block: int) -> tuple[Array, Array]:
    """(O, L): O = softmax(mask(Q K^T / sqrt(hs))) V and each row's log-sum-exp L, over key blocks (online softmax).

    Per block j, with S_j its scores: m' = max(m, rowmax S_j), P~_j = exp(S_j - m'),
    l' = l exp(m - m') + rowsum P~_j, A' = A exp(m - m') + P~_j V_j; at the end O = A / l and
    L = m + log l. Only (T x block) scores exist at a time; the (T x T) matrix never does.
    """
    m_, nh, T, hs = q.shape
    kb, vb, n_blocks = _key_blocks(k, v, block)

    def step(carry, inputs):
        row_max, row_sum, acc = carry
        j, kj, vj = inputs
        s = _block_scores(q, kj, j, block, T)
        new_max = jnp.maximum(row_max, jnp.max(s, axis=-1))  # finite from block 0 on: key 0 precedes every query
        p = jnp.exp(s - new_max[..., None])
        shrink = jnp.exp(row_max - new_max)
        return (new_max, row_sum * shrink + jnp.sum(p, axis=-1), acc * shrink[..., None] + p @ vj), None

    start = (jnp.full((m_, nh, T), -jnp.inf, q.dtype), jnp.zeros((m_, nh, T), q.dtype), jnp.zeros_like(q))
    (row_max, row_sum, acc), _ = jax.lax.scan(step, start, (jnp.arange(n_blocks), kb, vb))
    return acc / row_sum[..., None], row_max + jnp.log(row_sum)


def blockwise_attention_backward(q: Array, k: Array, v: Array, o: Array, lse: Array, do: Array,
                                 block: int) -> tuple[Array, Array, Array]:
    """(dQ, dK, dV) from Q, K, V, O, L and dO, recomputing each block's probabilities (FlashAttention's backward).

    P_j = exp(S_j - L) (the forward's probabilities, recomputed from the log-sum-exp), and the softmax
    term of dS = P (dP - rowsum(dP P)) is D = rowsum(dP P) = rowsum(dO V^T P) = rowsum(dO O), one number
    per query computed once. Then per key block j:

        dV_j = P_j^T dO,   dP_j = dO V_j^T,   dS_j = P_j (dP_j - D),
        dQ += dS_j K_j / sqrt(hs),   dK_j = dS_j^T Q / sqrt(hs).
    """
    T = q.shape[2]
    kb, vb, n_blocks = _key_blocks(k, v, block)
    D = jnp.sum(do * o, axis=-1)
    scale = 1 / math.sqrt(q.shape[-1])

    def step(dq, inputs):
        j, kj, vj = inputs
        p = jnp.exp(_block_scores(q, kj, j, block, T) - lse[..., None])
        dv_j = p.transpose(0, 1, 3, 2) @ do
        ds = p * (do @ vj.transpose(0, 1, 3, 2) - D[..., None])
        return dq + ds @ kj * scale, (ds.transpose(0, 1, 3, 2) @ q * scale, dv_j)

    dq, (dkb, dvb) = jax.lax.scan(step, jnp.zeros_like(q), (jnp.arange(n_blocks), kb, vb))

    def join(a: Array) -> Array:  # (n_blocks, m, nh, block, hs) -> (m, nh, T, hs)
        return a.transpose(1, 2, 0, 3, 4).reshape(*a.shape[1:3], n_blocks * block, a.shape[-1])[:, :, :T]

    return dq, join(dkb), join(dvb)


def causal_self_attention(n_head: int, bias: bool = False, dropout: float = 0.0, block: int | None = None) -> Layer:
    """GPT-2's causal multi-head self-attention on (m, T, C) (`attention_forward`, `attention_backward`):
    one fused QKV projection c_attn (3C x C), the heads, the causal softmax, the output projection c_proj.
    Init: W ~ N(0, 0.02^2), b = 0. Stochastic (forward(params, x, key)) when dropout > 0.
    `block`: the core runs over key blocks of that many keys and recomputes the probabilities in the
    backward (`blockwise_attention`), so memory grows with T block instead of T^2 (no dropout on P then)."""
    n_head = positive_integer(n_head, "n_head")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout rate must lie in [0, 1), got {dropout}")
    if block is not None:
        block = positive_integer(block, "block")

    def init(key: Array, in_shape: tuple[int, ...]) -> dict:
        C = in_shape[-1]
        if C % n_head:
            raise ValueError(f"n_head={n_head} does not divide the width C={C}")
        k_attn, k_proj = jax.random.split(key)
        return {name: {"W": GPT2_STD * jax.random.normal(k, shape, jnp.float32), **({"b": jnp.zeros(shape[0])} if bias else {})}
                for name, k, shape in (("c_attn", k_attn, (3 * C, C)), ("c_proj", k_proj, (C, C)))}

    def forward(params: dict, x: Array, key: Array | None = None) -> tuple[Array, tuple]:
        return attention_forward(params, x, n_head, dropout, key, block=block)

    def backward(params: dict, cache: tuple, dout: Array) -> tuple[dict, Array]:
        grads, dx, _ = attention_backward(params, cache, dout, block)
        return grads, dx

    return Layer(init, forward, backward, name=f"causal_self_attention({n_head} heads" + (", bias" if bias else "")
                 + (f", blocks of {block}" if block else "") + ")", stochastic=dropout > 0)
