"""Exercise `batch_norm`: the backward of batch normalisation in training mode (Ioffe and Szegedy 2015).

Notation
    m            examples in the batch; x has shape (m, n), one example per row
    mu, var      the batch mean and (biased) variance of each feature: shapes (n,)
    eps          a small constant inside the square root
    xhat         the normalised input, (m, n)
    gamma, beta  the scale and shift, (n,)
    dy           dC/dy, the gradient arriving from the layer above
    dgamma, dbeta, dx   what backward returns

Forward
    mu = (1/m) sum_i x_i,   var = (1/m) sum_i (x_i - mu)^2,
    xhat = (x - mu) / sqrt(var + eps),   y = gamma xhat + beta

mu and var are computed from every x_i: a gradient reaches each x_i directly and through them.
Derive dgamma, dbeta and dx, then run:  fnbackprop exercise check batch_norm.py
"""
import jax.numpy as jnp

EXERCISE = "batch_norm"
EPS = 1e-5


def init(key, in_shape):
    n = in_shape[-1]
    return {"gamma": jnp.ones(n), "beta": jnp.zeros(n)}


def forward(params, x):
    mu = jnp.mean(x, axis=0)
    var = jnp.mean((x - mu) ** 2, axis=0)
    inv_std = 1 / jnp.sqrt(var + EPS)
    xhat = (x - mu) * inv_std
    return params["gamma"] * xhat + params["beta"], (xhat, inv_std)


def backward(params, cache, dy):
    """Return ({"gamma": dgamma, "beta": dbeta}, dx)."""
    xhat, inv_std = cache
    m = dy.shape[0]
    # BEGIN SOLUTION
    dgamma = jnp.sum(dy * xhat, axis=0)
    dbeta = jnp.sum(dy, axis=0)
    dxhat = dy * params["gamma"]
    dx = inv_std / m * (m * dxhat - jnp.sum(dxhat, axis=0) - xhat * jnp.sum(dxhat * xhat, axis=0))
    # END SOLUTION
    return {"gamma": dgamma, "beta": dbeta}, dx
