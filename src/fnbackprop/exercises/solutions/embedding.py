"""Exercise `embedding`: the backward of GPT-2's token and position embeddings.

Notation
    idx          the tokens (m, T): integers in [0, V); the input, with no gradient of its own
    wte          the token embedding table (V, C): row v is token v's vector
    wpe          the position embedding table (block_size, C): row t is position t's vector
    x            the output (m, T, C)
    dx           dC/dx, the gradient arriving from the first block
    dwte, dwpe   what backward returns ({"wte": dwte, "wpe": dwpe}, None)

Forward
    x[n, t] = wte[idx[n, t]] + wpe[t]

A token may appear many times in a batch. Derive dwte and dwpe, then run:
    fnbackprop exercise check embedding.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "embedding"
VOCAB, BLOCK_SIZE, N_EMBD = 5, 4, 3


def init(key, in_shape):
    k1, k2 = jax.random.split(key)
    return {"wte": 0.02 * jax.random.normal(k1, (VOCAB, N_EMBD)), "wpe": 0.02 * jax.random.normal(k2, (BLOCK_SIZE, N_EMBD))}


def forward(params, idx):
    x = params["wte"][idx] + params["wpe"][: idx.shape[1]]
    return x, idx


def backward(params, cache, dx):
    """Return ({"wte": dwte, "wpe": dwpe}, None): the tokens are integers and get no gradient."""
    idx = cache
    # BEGIN SOLUTION
    dwte = jnp.zeros_like(params["wte"]).at[idx].add(dx)
    dwpe = jnp.zeros_like(params["wpe"]).at[: idx.shape[1]].set(jnp.sum(dx, axis=0))
    # END SOLUTION
    return {"wte": dwte, "wpe": dwpe}, None
