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


def _positive(value: Any, what: str) -> int:
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
    vocab_size, block_size, n_embd = (_positive(v, w) for v, w in ((vocab_size, "vocab_size"), (block_size, "block_size"),
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


def _dropout_scale(key: Array | None, rate: float, shape: tuple, dtype: Any) -> Array | float:
    """mask / (1 - rate), mask ~ Bernoulli(1 - rate); 1 without a key (inference) or a rate."""
    if key is None or rate == 0:
        return 1.0
    return jax.random.bernoulli(key, 1 - rate, shape).astype(dtype) / (1 - rate)


def attention_forward(params: dict, x: Array, n_head: int, rate: float = 0.0, key: Array | None = None,
                      probe: Array | None = None) -> tuple[Array, tuple]:
    """y = c_proj(merge(dropout(P) V)), P = softmax(mask(Q K^T / sqrt(hs))), [Q K V] = c_attn(x).

    The causal mask sets the scores of keys after the query (s > t) to -inf, so P[t, s] = 0 there.
    With a key, dropout (rate) on P and on the output, as nanoGPT's attn_dropout and resid_dropout.
    `probe` (m, nh, T, T), added to P, is how the checker reads dC/dP from autodiff.
    """
    m, T, C = x.shape
    hs = C // n_head
    qkv, _ = dense_forward(params["c_attn"], x)
    q, k, v = (_heads(a, n_head) for a in jnp.split(qkv, 3, axis=-1))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
    causal = jnp.tril(jnp.ones((T, T), bool))
    P = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    if probe is not None:
        P = P + probe
    k_att, k_out = (None, None) if key is None else jax.random.split(key)
    att_scale = _dropout_scale(k_att, rate, P.shape, x.dtype)
    y = _merge((P * att_scale) @ v)
    out, _ = dense_forward(params["c_proj"], y)
    out_scale = _dropout_scale(k_out, rate, out.shape, x.dtype)
    return out * out_scale, (x, q, k, v, P, att_scale, y, out_scale)


def attention_backward(params: dict, cache: tuple, dout: Array) -> tuple[dict, Array, Array]:
    """(dparams, dx, dP), the forward's steps in reverse (llm.c's attention_backward):

        dy = c_proj^T (dout * out_scale)                       (and dW_proj = dout^T y, db_proj = sum dout)
        dV = (P * att_scale)^T dy_h,   dP = (dy_h V^T) * att_scale        per head h
        dS = P * (dP - sum_s dP P)                              the softmax's Jacobian-vector product, row by row;
                                                                masked entries have P = 0, so dS = 0 there
        dQ = dS K / sqrt(hs),   dK = dS^T Q / sqrt(hs)
        dx = c_attn^T [dQ dK dV]                                (and dW_attn = [dQ dK dV]^T x)
    """
    x, q, k, v, P, att_scale, y, out_scale = cache
    hs = q.shape[-1]
    g_proj, dy = dense_backward(params["c_proj"], y, dout * out_scale)
    dyh = _heads(dy, q.shape[1])
    dv = (P * att_scale).transpose(0, 1, 3, 2) @ dyh
    dP = (dyh @ v.transpose(0, 1, 3, 2)) * att_scale
    dS = softmax_vjp(P, dP)
    dq = dS @ k / math.sqrt(hs)
    dk = dS.transpose(0, 1, 3, 2) @ q / math.sqrt(hs)
    g_attn, dx = dense_backward(params["c_attn"], x, jnp.concatenate([_merge(dq), _merge(dk), _merge(dv)], axis=-1))
    return {"c_attn": g_attn, "c_proj": g_proj}, dx, dP


def causal_self_attention(n_head: int, bias: bool = False, dropout: float = 0.0) -> Layer:
    """GPT-2's causal multi-head self-attention on (m, T, C) (`attention_forward`, `attention_backward`):
    one fused QKV projection c_attn (3C x C), the heads, the causal softmax, the output projection c_proj.
    Init: W ~ N(0, 0.02^2), b = 0. Stochastic (forward(params, x, key)) when dropout > 0."""
    n_head = _positive(n_head, "n_head")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout rate must lie in [0, 1), got {dropout}")

    def init(key: Array, in_shape: tuple[int, ...]) -> dict:
        C = in_shape[-1]
        if C % n_head:
            raise ValueError(f"n_head={n_head} does not divide the width C={C}")
        k_attn, k_proj = jax.random.split(key)
        return {name: {"W": GPT2_STD * jax.random.normal(k, shape, jnp.float32), **({"b": jnp.zeros(shape[0])} if bias else {})}
                for name, k, shape in (("c_attn", k_attn, (3 * C, C)), ("c_proj", k_proj, (C, C)))}

    def forward(params: dict, x: Array, key: Array | None = None) -> tuple[Array, tuple]:
        return attention_forward(params, x, n_head, dropout, key)

    def backward(params: dict, cache: tuple, dout: Array) -> tuple[dict, Array]:
        grads, dx, _ = attention_backward(params, cache, dout)
        return grads, dx

    return Layer(init, forward, backward, name=f"causal_self_attention({n_head} heads" + (", bias" if bias else "") + ")",
                 stochastic=dropout > 0)
