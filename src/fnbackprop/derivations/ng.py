"""Andrew Ng's course notation, as derived in the blog notes on his deep learning specialization.

Examples are **columns**: A[l], Z[l] are (n[l], m), W[l] is (n[l], n[l-1]), B[l] is a column
(n[l], 1) broadcast over the m examples. Hidden layers use g = tanh or relu; the output layer is
logistic (sigmoid) with the cross-entropy loss, for which the notes derive dZ[L] = Yhat - Y.

The 1/m sits in dW and dB: dA and dZ are gradients of the per-example loss L (the notes' blue
quantities), dW and dB of the averaged cost C (the red ones). So Ng's dZ[l] is m times
fnbackprop's dZ[l] (which carries the 1/m), and dW, dB agree.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

G = {  # g[l] and g[l]'(Z[l])
    "tanh": (jnp.tanh, lambda Z: 1 - jnp.tanh(Z) ** 2),
    "relu": (lambda Z: jnp.maximum(Z, 0), lambda Z: (Z > 0).astype(Z.dtype)),
    "sigmoid": (lambda Z: 1 / (1 + jnp.exp(-Z)), lambda Z: jnp.exp(-Z) / (1 + jnp.exp(-Z)) ** 2),
}


def to_ng(params: list) -> list:
    """fnbackprop layout -> Ng's: W[l] unchanged (n[l], n[l-1]); b -> the column B[l]."""
    return [{"W": p["W"], "B": p["b"][:, None]} for p in params]


def from_ng(grads: list) -> list:
    """Ng's dW[l], dB[l] -> fnbackprop's {"W", "b"}."""
    return [{"W": g["dW"], "b": g["dB"][:, 0]} for g in grads]


def forward(ng_params: list, X, hidden: list[str]):
    """Z[l] = W[l] A[l-1] + B[l];  A[l] = g[l](Z[l]);  g[L] = sigmoid.  X: (n[0], m)."""
    A, caches = X, []
    for l, p in enumerate(ng_params):
        Z = p["W"] @ A + p["B"]  # Z[l] = W[l] A[l-1] + B[l]
        caches.append((A, Z))
        A = G[hidden[l] if l < len(hidden) else "sigmoid"][0](Z)  # A[l] = g[l](Z[l])
    return A, caches


def cost(ng_params: list, X, Y, hidden: list[str]):
    """C = (1/m) sum_i L(A[L](i), Y(i)),  L(yhat, y) = -(1 - y) ln(1 - yhat) - y ln(yhat)."""
    Yhat, _ = forward(ng_params, X, hidden)
    m = X.shape[1]
    return jnp.sum(-(1 - Y) * jnp.log(1 - Yhat) - Y * jnp.log(Yhat)) / m


def backward(ng_params: list, X, Y, hidden: list[str]):
    """The notes' back-propagating equations; returns ([{dW, dB}], [dZ[l]] (blue))."""
    Yhat, caches = forward(ng_params, X, hidden)
    m = X.shape[1]
    dZ = Yhat - Y  # dZ[L] = Yhat - Y  (logistic output with cross-entropy)
    grads: list[Any] = [None] * len(ng_params)
    dZs: list[Any] = [None] * len(ng_params)
    for l in reversed(range(len(ng_params))):
        A_prev, _ = caches[l]
        dZs[l] = dZ
        grads[l] = {
            "dW": (1 / m) * dZ @ A_prev.T,  # dW[l] = (1/m) dZ[l] A[l-1]^T
            "dB": (1 / m) * jnp.sum(dZ, axis=1, keepdims=True),  # dB[l] = (1/m) sum_i dZ[l]_i
        }
        if l > 0:
            dA = ng_params[l]["W"].T @ dZ  # dA[l-1] = W[l]^T dZ[l]
            dZ = dA * G[hidden[l - 1]][1](caches[l - 1][1])  # dZ[l-1] = dA[l-1] * g[l-1]'(Z[l-1])
    return grads, dZs
