"""The matrix-calculus framework of the blog post "a framework for derivatives of matrix-valued functions".

Examples are **rows**: Z[l] = A[l-1] W[l] with W[l] of shape (n[l-1], n[l]) (each column one
neuron's weights), no bias, and f = (1/m) ||A[L] - Y||_F^2. Five rules give df/dX from df/dG:

    G = X W     ->  df/dX = df/dG W^T
    G = W X     ->  df/dX = W^T df/dG
    G = g(X)    ->  df/dX = df/dG * g'(X)     (elementwise)
    G = X + C   ->  df/dX = df/dG
    f = ||G||_F^2  ->  df/dG = 2 G

The backward pass below is written only with these rules, in the order the post applies them.
"""

from __future__ import annotations

import jax.numpy as jnp

G = {
    "sigmoid": (lambda Z: 1 / (1 + jnp.exp(-Z)), lambda Z: jnp.exp(-Z) / (1 + jnp.exp(-Z)) ** 2),
    "relu": (lambda Z: jnp.maximum(Z, 0), lambda Z: (Z > 0).astype(Z.dtype)),
    "tanh": (jnp.tanh, lambda Z: 1 - jnp.tanh(Z) ** 2),
    "identity": (lambda Z: Z, lambda Z: jnp.ones_like(Z)),
}


def rule_xw(df_dG, W):
    """G = X W  ->  df/dX = df/dG W^T."""
    return df_dG @ W.T


def rule_wx(df_dG, W):
    """G = W X  ->  df/dX = W^T df/dG."""
    return W.T @ df_dG


def rule_elementwise(df_dG, X, g_prime):
    """G = g(X)  ->  df/dX = df/dG * g'(X)."""
    return df_dG * g_prime(X)


def rule_plus_constant(df_dG):
    """G = X + C  ->  df/dX = df/dG."""
    return df_dG


def rule_frobenius(G_value):
    """f = ||G||_F^2  ->  df/dG = 2 G."""
    return 2 * G_value


def to_mc(params: list) -> list:
    """fnbackprop layout -> the post's: W[l] = W^T, (n[l-1], n[l]); the bias is dropped (must be 0)."""
    return [p["W"].T for p in params]


def from_mc(grads: list) -> list:
    """df/dW[l] -> fnbackprop's dW = (df/dW[l])^T."""
    return [g.T for g in grads]


def forward(Ws: list, X, activations: list[str]):
    """Z[l] = A[l-1] W[l];  A[l] = g[l](Z[l])."""
    A, caches = X, []
    for W, g in zip(Ws, activations):
        Z = A @ W
        caches.append((A, Z))
        A = G[g][0](Z)
    return A, caches


def cost(Ws: list, X, Y, activations: list[str]):
    """f = (1/m) ||A[L] - Y||_F^2."""
    A, _ = forward(Ws, X, activations)
    return jnp.sum((A - Y) ** 2) / X.shape[0]


def backward(Ws: list, X, Y, activations: list[str]):
    """df/dW[l] for every layer, each step one of the five rules."""
    A, caches = forward(Ws, X, activations)
    m = X.shape[0]
    df_dA = (1 / m) * rule_plus_constant(rule_frobenius(A - Y))  # df/dA[L] = (1/m) 2 (A[L] - Y)
    grads = [None] * len(Ws)
    for l in reversed(range(len(Ws))):
        A_prev, Z = caches[l]
        df_dZ = rule_elementwise(df_dA, Z, G[activations[l]][1])  # df/dZ[l] = df/dA[l] * g'(Z[l])
        grads[l] = rule_wx(df_dZ, A_prev)  # Z = A[l-1] W[l] is "W X" in W:  df/dW[l] = A[l-1]^T df/dZ[l]
        df_dA = rule_xw(df_dZ, Ws[l])  # Z = A[l-1] W[l] is "X W" in A:  df/dA[l-1] = df/dZ[l] W[l]^T
    return grads
