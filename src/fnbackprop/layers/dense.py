"""Dense layers and activations.

Examples are rows (x: (m, n_in)) and W is stored as (n_out, n_in), as in Ng's and Nielsen's texts,
so Ng's column equations appear transposed:

    Z = A_prev W^T + b           (Ng: Z[l] = W[l] A[l-1] + B[l])
    dW = dZ^T A_prev             (Ng: dW[l] = (1/m) dZ[l] A[l-1]^T; the 1/m is already in dZ)
    db = sum_i dZ_i              (Ng: dB[l] = (1/m) sum_i dZ[l]_i)
    dA_prev = dZ W               (Ng: dA[l-1] = W[l]^T dZ[l])
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..activations import Activation, get_activation, softmax_vjp
from .protocol import Array, Layer, no_params


def _normal(key: Array, shape: tuple[int, ...], std: float, dtype: Any) -> Array:
    return std * jax.random.normal(key, shape, dtype)


def init_dense_params(key: Array, n_in: int, n_out: int, scheme: str, dtype: Any = jnp.float32) -> dict:
    """W: (n_out, n_in) and b: (n_out,) drawn by a named scheme.

    - ``lecun``: W ~ N(0, 1/n_in), b = 0.
    - ``he``: W ~ N(0, 2/n_in), b = 0 (for ReLU-type hidden layers).
    - ``nielsen``: W ~ N(0, 1/n_in), b ~ N(0, 1)  (Nielsen's network2 default_weight_initializer).
    - ``nielsen_large``: W ~ N(0, 1), b ~ N(0, 1)  (Nielsen's network.py, large_weight_initializer).
    """
    kw, kb = jax.random.split(key)
    zeros = jnp.zeros((n_out,), dtype)
    schemes = {
        "lecun": lambda: (_normal(kw, (n_out, n_in), n_in**-0.5, dtype), zeros),
        "he": lambda: (_normal(kw, (n_out, n_in), (2 / n_in) ** 0.5, dtype), zeros),
        "nielsen": lambda: (_normal(kw, (n_out, n_in), n_in**-0.5, dtype), _normal(kb, (n_out,), 1.0, dtype)),
        "nielsen_large": lambda: (_normal(kw, (n_out, n_in), 1.0, dtype), _normal(kb, (n_out,), 1.0, dtype)),
    }
    if scheme not in schemes:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {sorted(schemes)}")
    W, b = schemes[scheme]()
    return {"W": W, "b": b}


INIT_SCHEMES = ("lecun", "he", "nielsen", "nielsen_large")


def matmul(a: Array, b: Array, dtype: Any = None) -> Array:
    """The matrix product a b with its operands rounded to `dtype` (bfloat16, say) and its sums of products
    kept in a's own dtype, as mixed-precision training multiplies: sum_k round(a_ik) round(b_kj). Without a
    dtype, or in a's own, plain a @ b."""
    if dtype is None or jnp.dtype(dtype) == a.dtype:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=a.dtype)


def dense_forward(params: dict, x: Array, dtype: Any = None) -> tuple[Array, Array]:
    """Z = A_prev W^T + b  (Ng: Z[l] = W[l] A[l-1] + B[l]); the cache is A_prev. Leading axes beyond the
    batch (a sequence's positions, x: (m, T, n_in)) are more rows; without "b" in params, no bias. With a
    `dtype`, the product's operands are rounded to it (`matmul`)."""
    z = matmul(x, params["W"].T, dtype)
    return (z + params["b"] if "b" in params else z), x


def dense_backward(params: dict, x: Array, dz: Array, dtype: Any = None) -> tuple[dict, Array]:
    """dW = dZ^T A_prev, db = sum_i dZ_i, dA_prev = dZ W  (Ng: dW = dZ A^T, dB = sum dZ, dA = W^T dZ).

    dZ already holds the 1/m of the averaged cost (see `fnbackprop.losses`). With a `dtype`, dA_prev's product
    takes its operands rounded to it, as the forward's does (`matmul`); dW's keeps A_prev's and dZ's own
    precision. Decision: XLA's CPU backend has no bfloat16 kernel for a product contracted over its rows, as dW's
    is: it multiplied the rounded operands in float32 after converting them back, two conversions a product for
    no speed (the CPU preset's step 26.1 against 27.1 ms without them, 7 alternating pairs), and unrounded
    operands give the weights' gradients float32's accuracy.
    """
    rows, x_rows = dz.reshape(-1, dz.shape[-1]), x.reshape(-1, x.shape[-1])  # every leading axis: rows
    grads = {"W": rows.T @ x_rows, **({"b": jnp.sum(rows, axis=0)} if "b" in params else {})}
    return grads, matmul(dz, params["W"], dtype)


def dense(n_out: int, init: str = "lecun", bias: bool = True, dtype: Any = None) -> Layer:
    """A fully connected layer without activation: Z = A_prev W^T + b (no b with bias=False), on
    inputs (m, n_in) or (m, ..., n_in); with a `dtype`, the forward's and dA_prev's products take their operands
    rounded to it (`matmul`), dW's keep theirs (`dense_backward`)."""
    if not isinstance(n_out, int) or n_out <= 0:
        raise ValueError(f"dense layer width must be a positive integer, got {n_out!r}")
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {init!r}; expected one of {list(INIT_SCHEMES)}")

    def init_fn(key: Array, in_shape: tuple[int, ...]) -> dict:
        params = init_dense_params(key, in_shape[-1], n_out, init)
        return params if bias else {"W": params["W"]}

    name = f"dense({n_out}" + ("" if bias else ", no bias") + ("" if dtype is None else f", {jnp.dtype(dtype).name} products") + ")"
    if dtype is None:  # dense_forward itself: the planted mistakes of `fnbackprop.check.mutations` find dense layers by it
        return Layer(init_fn, dense_forward, dense_backward, name=name)
    return Layer(init_fn, functools.partial(dense_forward, dtype=dtype), functools.partial(dense_backward, dtype=dtype), name=name)


def activation(g: str | Activation) -> Layer:
    """A = g(Z), backward dZ = dA * g'(Z); the cache is (Z, A)."""
    act = get_activation(g, hidden=True)

    def forward(params: dict, z: Array) -> tuple[Array, tuple[Array, Array]]:
        a = act.fn(z)
        return a, (z, a)

    def backward(params: dict, cache: tuple[Array, Array], da: Array) -> tuple[dict, Array]:
        z, a = cache
        return {}, act.backward(z, a, da)

    return Layer(no_params, forward, backward, name=act.name)


def softmax() -> Layer:
    """A = softmax(Z) row by row, as a layer on its own (the full Jacobian-vector product).

    da_k/dz_j = a_k (1[j = k] - a_j), so dz_j = sum_k da_k a_k (1[j = k] - a_j) = a_j (da_j - sum_k da_k a_k).
    """
    act = get_activation("softmax", hidden=False)

    def forward(params: dict, z: Array) -> tuple[Array, Array]:
        a = act.fn(z)
        return a, a

    def backward(params: dict, a: Array, da: Array) -> tuple[dict, Array]:
        return {}, softmax_vjp(a, da)

    return Layer(no_params, forward, backward, name="softmax")
