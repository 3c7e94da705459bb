"""The per-example delta form: Y. Lei's Algorithm 1 (Week 5 lecture notes) and the diary's version.

One training example at a time, as column vectors: z^l = W^l a^{l-1} + b^l, a^l = sigma(z^l) in
every layer. Each gives the gradient of one example's cost C_i; the mini-batch gradient is their
average, (1/s) sum_{i in I} dC_i/dW^l (Lei's Remark 6), with `jax.vmap` doing the per-example part.

- Lei: C_i = 1/2 (y - a^L)^2 summed over outputs, delta^L = grad_a C (.) sigma'(z^L).
- The diary ("My Machine Learning Diary: Day 32"): the logistic cost with several outputs, for
  which delta^L = a^L - y; then delta^l = (W^{l+1})^T delta^{l+1} (.) sigma'(z^l).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def sigma(z):
    return 1 / (1 + jnp.exp(-z))


def sigma_prime(z):
    """sigma'(z) = sigma(z)(1 - sigma(z))."""
    return sigma(z) * (1 - sigma(z))


def _forward(params: list, x):
    a, zs, activations = x, [], [x]
    for p in params:
        z = p["W"] @ a + p["b"]  # z^l = W^l a^{l-1} + b^l
        zs.append(z)
        a = sigma(z)  # a^l = sigma(z^l)
        activations.append(a)
    return zs, activations


def _backward(params: list, zs, activations, delta):
    grads: list[Any] = [None] * len(params)
    for l in reversed(range(len(params))):
        grads[l] = {"W": delta @ activations[l].T, "b": delta}  # dC/dW^l = delta^l (a^{l-1})^T, dC/db^l = delta^l
        if l > 0:
            delta = (params[l]["W"].T @ delta) * sigma_prime(zs[l - 1])  # delta^l = ((W^{l+1})^T delta^{l+1}) (.) sigma'(z^l)
    return grads


def lei_example(params: list, x, y) -> list:
    """Algorithm 1 for one example (x, y column vectors); C_i = 1/2 ||y - a^L||^2."""
    zs, activations = _forward(params, x)
    grad_a = activations[-1] - y  # grad_a C = a^L - y
    return _backward(params, zs, activations, grad_a * sigma_prime(zs[-1]))  # delta^L = grad_a C (.) sigma'(z^L)


def diary_example(params: list, x, y) -> list:
    """The diary's version for one example: sigmoid everywhere, logistic cost, delta^L = a^L - y."""
    zs, activations = _forward(params, x)
    return _backward(params, zs, activations, activations[-1] - y)  # delta^L = a^L - y


def to_columns(params: list) -> list:
    """fnbackprop layout -> column vectors: W^l unchanged, b^l as an (n_l, 1) column."""
    return [{"W": p["W"], "b": p["b"][:, None]} for p in params]


def minibatch_gradient(per_example, params: list, X, Y) -> list:
    """(1/s) sum_{i in I} dC_i/dW^l, dC_i/db^l over the rows of X, Y; in fnbackprop's layout."""
    cols = to_columns(params)
    per = jax.vmap(per_example, in_axes=(None, 0, 0))(cols, X[:, :, None], Y[:, :, None])
    return [{"W": g["W"].mean(0), "b": g["b"].mean(0)[:, 0]} for g in per]
