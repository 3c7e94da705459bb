"""Exercise `residual`: the backward of a residual block (He et al. 2016) with a tanh inside.

Notation
    x            the input (m, n); y the output, same shape
    W1, b1       the first dense layer, (n, n) and (n,);  z1 = x W1^T + b1,  h = tanh(z1)
    W2, b2       the second dense layer, (n, n) and (n,); f = h W2^T + b2
    dy           dC/dy, the gradient arriving from the block above
    dW1, db1, dW2, db2, dx   what backward returns

Forward
    y = x + f(x),   f(x) = tanh(x W1^T + b1) W2^T + b2

x reaches y along two paths. Derive every gradient, then run:  fnbackprop exercise check residual.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "residual"


def init(key, in_shape):
    n = in_shape[-1]
    k1, k2 = jax.random.split(key)
    return {"W1": jax.random.normal(k1, (n, n)) / jnp.sqrt(n), "b1": jnp.zeros(n),
            "W2": jax.random.normal(k2, (n, n)) / jnp.sqrt(n), "b2": jnp.zeros(n)}


def forward(params, x):
    h = jnp.tanh(x @ params["W1"].T + params["b1"])
    f = h @ params["W2"].T + params["b2"]
    return x + f, (x, h)


def backward(params, cache, dy):
    """Return ({"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}, dx)."""
    x, h = cache
    # BEGIN SOLUTION
    dW2 = dy.T @ h
    db2 = jnp.sum(dy, axis=0)
    dh = dy @ params["W2"]
    dz1 = dh * (1 - h ** 2)
    dW1 = dz1.T @ x
    db1 = jnp.sum(dz1, axis=0)
    dx = dy + dz1 @ params["W1"]
    # END SOLUTION
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}, dx
