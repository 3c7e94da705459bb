"""Exercise `sigmoid`: the backward of the logistic activation (Nielsen ch. 1-2).

Notation
    z        the activation's input (m, n); a = sigma(z) its output, same shape
    da       dC/da, the gradient arriving from the layer above
    dz       dC/dz: what backward returns (no parameters: dparams is {})

Forward
    a = sigma(z) = 1 / (1 + exp(-z)), elementwise

Derive dz, then run:  fnbackprop exercise check sigmoid.py
"""
import jax.numpy as jnp

EXERCISE = "sigmoid"


def init(key, in_shape):
    return {}


def forward(params, z):
    a = 1 / (1 + jnp.exp(-z))
    return a, (z, a)


def backward(params, cache, da):
    """Return ({}, dz)."""
    z, a = cache
    # BEGIN SOLUTION
    dz = da * a * (1 - a)
    # END SOLUTION
    return {}, dz
