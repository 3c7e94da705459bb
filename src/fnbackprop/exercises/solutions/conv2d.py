"""Exercise `conv2d`: the backward of a 2-D convolution, stride 1, no padding (Nielsen ch. 6, cs231n).

Notation (NHWC images, HWIO kernels, as JAX and TensorFlow store them)
    x        the input (m, H, W, C): m images of H x W pixels with C channels
    w        the kernel (kh, kw, C, F): F filters, each kh x kw over all C channels
    b        the bias (F,), one per filter
    z        the output (m, H - kh + 1, W - kw + 1, F)
    dz       dC/dz, the gradient arriving from the layer above
    dw, db, dx   what backward returns, shaped like w, b, x

Forward (a cross-correlation, as in every deep-learning library)
    z[n, p, q, f] = b[f] + sum_{i, j, c} x[n, p + i, q + j, c] w[i, j, c, f]

Written below as a sum over the kernel offsets (i, j): each offset contributes the window of x
shifted by (i, j), times the C x F matrix w[i, j]. Derive dw, db and dx, then run:
    fnbackprop exercise check conv2d.py
"""
import jax
import jax.numpy as jnp

EXERCISE = "conv2d"
FILTERS, KERNEL = 3, 3


def init(key, in_shape):
    c = in_shape[-1]
    fan_in = KERNEL * KERNEL * c
    return {"W": jax.random.normal(key, (KERNEL, KERNEL, c, FILTERS)) * jnp.sqrt(2 / fan_in), "b": jnp.zeros(FILTERS)}


def forward(params, x):
    w = params["W"]
    kh, kw = w.shape[:2]
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    z = params["b"]
    for i in range(kh):
        for j in range(kw):
            z = z + x[:, i:i + ho, j:j + wo, :] @ w[i, j]
    return z, x


def backward(params, cache, dz):
    """Return ({"W": dw, "b": db}, dx)."""
    x = cache
    w = params["W"]
    kh, kw = w.shape[:2]
    ho, wo = dz.shape[1], dz.shape[2]
    # BEGIN SOLUTION
    db = jnp.sum(dz, axis=(0, 1, 2))
    dw = jnp.zeros_like(w)
    dx = jnp.zeros_like(x)
    for i in range(kh):
        for j in range(kw):
            window = x[:, i:i + ho, j:j + wo, :]
            dw = dw.at[i, j].set(jnp.einsum("npqc,npqf->cf", window, dz))
            dx = dx.at[:, i:i + ho, j:j + wo, :].add(dz @ w[i, j].T)
    # END SOLUTION
    return {"W": dw, "b": db}, dx
