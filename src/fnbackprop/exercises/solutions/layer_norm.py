"""Exercise `layer_norm`: the backward of layer normalisation (Ba et al. 2016).

Notation
    m, n         examples and features; x has shape (m, n), one example per row
    mu_i, var_i  the mean and (biased) variance of example i over its n features: shapes (m, 1)
    eps          a small constant inside the square root
    xhat         the normalised input, (m, n)
    gamma, beta  the scale and shift, (n,), shared by every example
    dy           dC/dy, the gradient arriving from the layer above
    dgamma, dbeta, dx   what backward returns

Forward
    mu_i = (1/n) sum_j x_ij,   var_i = (1/n) sum_j (x_ij - mu_i)^2,
    xhat_i = (x_i - mu_i) / sqrt(var_i + eps),   y_i = gamma xhat_i + beta

Batch norm's equations over the other axis. Derive dgamma, dbeta and dx, then run:
    fnbackprop exercise check layer_norm.py
"""
import jax.numpy as jnp

EXERCISE = "layer_norm"
EPS = 1e-5


def init(key, in_shape):
    n = in_shape[-1]
    return {"gamma": jnp.ones(n), "beta": jnp.zeros(n)}


def forward(params, x):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    inv_std = 1 / jnp.sqrt(var + EPS)
    xhat = (x - mu) * inv_std
    return params["gamma"] * xhat + params["beta"], (xhat, inv_std)


def backward(params, cache, dy):
    """Return ({"gamma": dgamma, "beta": dbeta}, dx)."""
    xhat, inv_std = cache
    n = dy.shape[-1]
    # BEGIN SOLUTION
    dgamma = jnp.sum(dy * xhat, axis=0)
    dbeta = jnp.sum(dy, axis=0)
    dxhat = dy * params["gamma"]
    dx = inv_std / n * (n * dxhat - jnp.sum(dxhat, axis=-1, keepdims=True)
                        - xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))
    # END SOLUTION
    return {"gamma": dgamma, "beta": dbeta}, dx
