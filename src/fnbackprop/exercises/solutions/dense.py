"""Exercise `dense`: the backward of a fully connected layer (Ng, week 4; rows are examples here).

Notation
    m        examples in the batch; x has shape (m, n_in), one example per row
    W, b     weights (n_out, n_in) and bias (n_out,)
    y        the layer's output (m, n_out)
    dy       dC/dy, the gradient of the batch cost C with respect to y; it arrives from the layer
             above and already carries the 1/m of the averaged cost
    dW, db, dx   dC/dW, dC/db, dC/dx: what backward returns, each shaped like W, b, x

Forward
    y = x W^T + b          (Ng's Z[l] = W[l] A[l-1] + b[l], with examples as rows instead of columns)

Derive dW, db and dx from the chain rule, then run:  fnbackprop exercise check dense.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "dense"
N_OUT = 4


def init(key, in_shape):
    """W ~ N(0, 1/n_in), b = 0."""
    n_in = in_shape[-1]
    return {"W": jax.random.normal(key, (N_OUT, n_in)) / jnp.sqrt(n_in), "b": jnp.zeros(N_OUT)}


def forward(params, x):
    y = x @ params["W"].T + params["b"]
    return y, x  # the cache: what backward needs


def backward(params, cache, dy):
    """Return ({"W": dW, "b": db}, dx)."""
    x = cache
    # BEGIN SOLUTION
    dW = dy.T @ x
    db = jnp.sum(dy, axis=0)
    dx = dy @ params["W"]
    # END SOLUTION
    return {"W": dW, "b": db}, dx
