"""Exercise `softmax_cross_entropy`: the output layer's softmax and the cross-entropy cost, together.

Notation
    m        examples in the batch
    z        the logits (m, n); a = softmax(z) row by row
    y        the targets (m, n), one-hot rows
    C        the cost, a scalar: averaged over the batch
    dC       dC/dC: the scalar the backward is seeded with (1 when C is the final cost)
    dz       dC/dz: what backward returns (no parameters: dparams is {})

Forward
    a_i = softmax(z_i),   C = -(1/m) sum_i sum_j y_ij log a_ij

The labels are not a layer input: forward(params, z, y) takes them, backward returns the gradient
with respect to z only. Derive dz, then run:  fnbackprop exercise check softmax_cross_entropy.py
"""
import jax.numpy as jnp

EXERCISE = "softmax_cross_entropy"


def init(key, in_shape):
    return {}


def forward(params, z, y):
    shifted = z - jnp.max(z, axis=-1, keepdims=True)
    log_a = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))
    m = z.shape[0]
    cost = -jnp.sum(y * log_a) / m
    return cost, (jnp.exp(log_a), y)


def backward(params, cache, dC):
    """Return ({}, dz)."""
    a, y = cache
    m = a.shape[0]
    # BEGIN SOLUTION
    dz = dC * (a - y) / m
    # END SOLUTION
    return {}, dz
