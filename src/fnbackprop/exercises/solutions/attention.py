"""Exercise `attention`: the backward of single-head causal self-attention (GPT-2, one head).

Notation
    x            the input (m, T, C): m sequences of T positions, C features each
    W_attn       (3C, C): the fused projection; [q k v] = x W_attn^T, each (m, T, C)
    s            the scores q k^T / sqrt(C), (m, T, T); the causal mask sets s[t, u] = -inf for u > t
    P            softmax of the masked scores over the last axis: P[t, u] = 0 for u > t
    o            P v, (m, T, C)
    W_proj       (C, C): the output projection; y = o W_proj^T
    dy           dC/dy, the gradient arriving from above
    dW_attn, dW_proj, dx   what backward returns ({"c_attn": {"W": ...}, "c_proj": {"W": ...}}, dx)

Forward
    [q k v] = x W_attn^T,   P = softmax(mask(q k^T / sqrt(C))),   y = (P v) W_proj^T

Derive every gradient (the softmax's backward, row by row, is part of it), then run:
    fnbackprop exercise check attention.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "attention"


def init(key, in_shape):
    c = in_shape[-1]
    k1, k2 = jax.random.split(key)
    return {"c_attn": {"W": 0.02 * jax.random.normal(k1, (3 * c, c))}, "c_proj": {"W": 0.02 * jax.random.normal(k2, (c, c))}}


def forward(params, x):
    c = x.shape[-1]
    q, k, v = jnp.split(x @ params["c_attn"]["W"].T, 3, axis=-1)
    s = q @ jnp.swapaxes(k, -1, -2) / jnp.sqrt(c)
    causal = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
    P = jax.nn.softmax(jnp.where(causal, s, -jnp.inf), axis=-1)
    o = P @ v
    y = o @ params["c_proj"]["W"].T
    return y, (x, q, k, v, P, o)


def backward(params, cache, dy):
    """Return ({"c_attn": {"W": dW_attn}, "c_proj": {"W": dW_proj}}, dx)."""
    x, q, k, v, P, o = cache
    c = x.shape[-1]
    # BEGIN SOLUTION
    dW_proj = jnp.einsum("mtc,mtd->cd", dy, o)
    do = dy @ params["c_proj"]["W"]
    dP = do @ jnp.swapaxes(v, -1, -2)
    dv = jnp.swapaxes(P, -1, -2) @ do
    ds = P * (dP - jnp.sum(dP * P, axis=-1, keepdims=True))
    dq = ds @ k / jnp.sqrt(c)
    dk = jnp.swapaxes(ds, -1, -2) @ q / jnp.sqrt(c)
    dqkv = jnp.concatenate([dq, dk, dv], axis=-1)
    dW_attn = jnp.einsum("mtc,mtd->cd", dqkv, x)
    dx = dqkv @ params["c_attn"]["W"]
    # END SOLUTION
    return {"c_attn": {"W": dW_attn}, "c_proj": {"W": dW_proj}}, dx
