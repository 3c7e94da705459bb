"""Exercise `softmax`: the backward of softmax on its own (not fused with a loss).

Notation
    z        the input (m, n), one row per example; a = softmax(z) row by row, same shape
    da       dC/da, the gradient arriving from above (any cost, not only cross-entropy)
    dz       dC/dz: what backward returns (no parameters: dparams is {})

Forward
    a_j = exp(z_j) / sum_k exp(z_k)     within each row (the row's max is subtracted first, which
                                        changes nothing mathematically)

Every a_k depends on every z_j of its row: dz_j = sum_k da_k (d a_k / d z_j).
Derive dz, then run:  fnbackprop exercise check softmax.py
"""
import jax.numpy as jnp

EXERCISE = "softmax"


def init(key, in_shape):
    return {}


def forward(params, z):
    e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True))
    a = e / jnp.sum(e, axis=-1, keepdims=True)
    return a, a


def backward(params, cache, da):
    """Return ({}, dz)."""
    a = cache
    # BEGIN SOLUTION
    dz = a * (da - jnp.sum(da * a, axis=-1, keepdims=True))
    # END SOLUTION
    return {}, dz
