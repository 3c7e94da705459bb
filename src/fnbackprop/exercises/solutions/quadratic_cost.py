"""Exercise `quadratic_cost`: the gradient of Nielsen's quadratic cost with respect to the output.

Notation
    m        examples in the batch
    a        the network's output (m, n)
    y        the targets (m, n)
    C        the cost, a scalar, averaged over the batch
    dC       dC/dC: the scalar the backward is seeded with (1 when C is the final cost)
    da       dC/da: what backward returns (no parameters: dparams is {})

Forward (Nielsen, eq. 6)
    C = (1 / 2m) sum_i ||a_i - y_i||^2

The targets are not a layer input: forward(params, a, y) takes them, backward returns the gradient
with respect to a only. Derive da, then run:  fnbackprop exercise check quadratic_cost.py
"""
import jax.numpy as jnp

EXERCISE = "quadratic_cost"


def init(key, in_shape):
    return {}


def forward(params, a, y):
    m = a.shape[0]
    cost = jnp.sum((a - y) ** 2) / (2 * m)
    return cost, (a, y)


def backward(params, cache, dC):
    """Return ({}, da)."""
    a, y = cache
    m = a.shape[0]
    # BEGIN SOLUTION
    da = dC * (a - y) / m
    # END SOLUTION
    return {}, da
