"""Exercise `relu`: the backward of the rectified linear unit.

Notation
    z        the activation's input (m, n); a = relu(z) its output, same shape
    da       dC/da, the gradient arriving from the layer above
    dz       dC/dz: what backward returns (no parameters: dparams is {})

Forward
    a = max(0, z), elementwise (at z = 0 exactly, any slope in [0, 1] is a valid choice)

Derive dz, then run:  fnbackprop exercise check relu.py
"""
import jax.numpy as jnp

EXERCISE = "relu"


def init(key, in_shape):
    return {}


def forward(params, z):
    a = jnp.maximum(z, 0)
    return a, (z, a)


def backward(params, cache, da):
    """Return ({}, dz)."""
    z, a = cache
    # BEGIN SOLUTION
    dz = da * (z > 0)
    # END SOLUTION
    return {}, dz
