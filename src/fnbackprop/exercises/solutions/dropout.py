"""Exercise `dropout`: the backward of inverted dropout (Srivastava et al. 2014), in training mode.

Notation
    x        the input (m, n); y the output, same shape
    rate     the probability that a unit is dropped
    mask     mask_ij ~ Bernoulli(1 - rate): 1 keeps a unit, 0 drops it
    dy       dC/dy, the gradient arriving from the layer above
    dx       dC/dx: what backward returns (no parameters: dparams is {})

Forward
    y = x * mask / (1 - rate)      (inverted: the scale keeps E[y] = x, so inference needs no change)

The key draws the mask; the same key gives the same mask. Derive dx, then run:
    fnbackprop exercise check dropout.py
"""
import jax

EXERCISE = "dropout"
RATE = 0.5


def init(key, in_shape):
    return {}


def forward(params, x, key):
    mask = jax.random.bernoulli(key, 1 - RATE, x.shape).astype(x.dtype)
    return x * mask / (1 - RATE), mask


def backward(params, cache, dy):
    """Return ({}, dx)."""
    mask = cache
    # BEGIN SOLUTION
    dx = dy * mask / (1 - RATE)
    # END SOLUTION
    return {}, dx
