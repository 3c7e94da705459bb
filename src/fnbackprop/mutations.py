"""Planted mistakes: textbook errors in a backward pass, applied to an MLP, that every check must catch.

Each mutation takes a correct `MLP` and returns one whose *hand-coded backward* carries exactly one
classic mistake; its forward pass and cost are untouched, so `jax.grad` of its cost still gives the
true gradient. A check that passes a mutant has no teeth. Some mistakes only type-check when shapes
line up (W for W^T needs square hidden layers; a wrong layer's cache needs equal widths), as they
do in a hand derivation where they go unnoticed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from .activations import Activation
from .layers import Layer, activation, dense_backward, dense_forward
from .losses import Head
from .network import MLP, mlp

Array = jax.Array


class _NoMeanHead(Head):
    """dZ[L] = A[L] - Y: the 1/m of the averaged cost dropped."""

    def backward(self, z: Array, y: Array) -> Array:
        return super().backward(z, y) * z.shape[0]


def drop_one_over_m(net: MLP) -> MLP:
    """Drop the 1/m: the gradient of the summed, not the averaged, cost."""
    return dataclasses.replace(net, head=_NoMeanHead(net.head.output, net.head.loss))


def _map_dense(net: MLP, backward: Callable) -> MLP:
    layers = tuple(
        Layer(layer.init, dense_forward, backward, layer.name) if layer.forward is dense_forward else layer
        for layer in net.layers
    )
    return dataclasses.replace(net, layers=layers)


def _untransposed_backward(params: dict, x: Array, dz: Array) -> tuple[dict, Array]:
    grads, _ = dense_backward(params, x, dz)
    return grads, dz @ params["W"].T


def w_instead_of_w_transpose(net: MLP) -> MLP:
    """dA[l-1] = W[l] dZ[l] instead of W[l]^T dZ[l] (square layers only)."""
    return _map_dense(net, _untransposed_backward)


def _summed_bias_backward(params: dict, x: Array, dz: Array) -> tuple[dict, Array]:
    grads, dx = dense_backward(params, x, dz)
    return {**grads, "b": grads["b"] * dz.shape[0]}, dx


def sum_instead_of_mean_db(net: MLP) -> MLP:
    """dB[l] = sum_i dZ[l]_i of the per-example gradients, not their mean (m times too large)."""
    return _map_dense(net, _summed_bias_backward)


def _map_activations(net: MLP, derivative: Callable[[Activation], Callable], label: str) -> MLP:
    """Replace g'(z, a) in every hidden activation by `derivative(act)`."""
    def wrong(act: Activation) -> Layer:
        return activation(dataclasses.replace(act, name=f"{act.name} ({label})", derivative=derivative(act)))

    swapped = iter(net.activations)
    layers = tuple(layer if layer.forward is dense_forward else wrong(next(swapped)) for layer in net.layers)
    return dataclasses.replace(net, layers=layers)


def g_instead_of_g_prime(net: MLP) -> MLP:
    """dZ[l] = dA[l] * g(Z[l]) instead of dA[l] * g'(Z[l]) in every hidden layer."""
    return _map_activations(net, lambda act: lambda z, a: a, "g for g'")


def g_prime_of_a(net: MLP) -> MLP:
    """dZ[l] = dA[l] * g'(A[l]): the derivative evaluated at the output instead of the input."""
    return _map_activations(net, lambda act: lambda z, a: act.derivative(a, act.fn(a)), "g'(A)")


def missing_g_prime(net: MLP) -> MLP:
    """dZ[l] = dA[l]: the factor g'(Z[l]) forgotten."""
    return _map_activations(net, lambda act: lambda z, a: jnp.ones_like(z), "no g'")


def _sign_flipped_backward(params: dict, x: Array, dz: Array) -> tuple[dict, Array]:
    grads, dx = dense_backward(params, x, dz)
    return {**grads, "W": -grads["W"]}, dx


def sign_flip(net: MLP) -> MLP:
    """dW[l] = -dZ^T A_prev: the gradient of the cost's negative (descent becomes ascent)."""
    return _map_dense(net, _sign_flipped_backward)


class _StaleCacheMLP(MLP):
    """Each hidden layer's backward reads the cache of the layer of the same kind before it."""

    def _backward(self, full: list, caches: list, dy: Array):
        stale = [caches[i - 2] if i >= 2 else caches[i] for i in range(len(caches))]
        return super()._backward(full, stale, dy)


def previous_layers_cache(net: MLP) -> MLP:
    """Use the previous layer's cache (its A_prev, Z) in the backward (equal widths only)."""
    return _StaleCacheMLP(**{f.name: getattr(net, f.name) for f in dataclasses.fields(net)})


MUTATIONS: dict[str, Callable[[MLP], MLP]] = {
    "drop 1/m": drop_one_over_m,
    "sum instead of mean in db": sum_instead_of_mean_db,
    "W instead of W^T in dA_prev": w_instead_of_w_transpose,
    "g(Z) instead of g'(Z)": g_instead_of_g_prime,
    "g'(A) instead of g'(Z)": g_prime_of_a,
    "missing g'": missing_g_prime,
    "sign flip in dW": sign_flip,
    "previous layer's cache": previous_layers_cache,
}


def reference_network() -> MLP:
    """Equal widths (so every mistake type-checks), two different smooth hidden activations."""
    return mlp([5, 5, 5, 5], hidden=["tanh", "sigmoid"], output="softmax", loss="cross_entropy")


def catalogue_score(check: Callable[[MLP], bool], net: MLP | None = None) -> dict[str, bool]:
    """{mutation: caught}, where `check(network) -> passed`; a check with teeth catches them all."""
    net = reference_network() if net is None else net
    return {name: not check(mutate(net)) for name, mutate in MUTATIONS.items()}
