"""Composition: the residual block y = x + f(x)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .protocol import Array, Layer, forward_with_key, is_stochastic


def residual(*inner: Layer) -> Layer:
    """y = x + f(x), f the inner layers in sequence (output shape = input shape).

    Backward: the identity path and the inner path both reach x, so their gradients add:
    dx = dy + df^T dy, the inner layers' backward run in reverse. Stochastic if any inner layer is;
    each inner layer then gets its own key, folded in from the residual's.
    """

    def keys(key: Array | None) -> list:
        return [None if key is None else jax.random.fold_in(key, i) for i in range(len(inner))]

    def init(key: Array, in_shape: tuple[int, ...]) -> list:
        params, shape = [], in_shape
        for layer, k in zip(inner, jax.random.split(key, len(inner))):
            params.append(layer.init(k, shape))
            x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
            shape = jax.eval_shape(lambda p, x: forward_with_key(layer, p, x, None), params[-1], x)[0].shape[1:]
        return params

    def forward(params: list, x: Array, key: Array | None = None) -> tuple[Array, list]:
        h, caches = x, []
        for layer, p, k in zip(inner, params, keys(key)):
            h, cache = forward_with_key(layer, p, h, k)
            caches.append(cache)
        return x + h, caches

    def backward(params: list, caches: list, dy: Array) -> tuple[list, Array]:
        grads, dh = [None] * len(inner), dy
        for i in reversed(range(len(inner))):
            grads[i], dh = inner[i].backward(params[i], caches[i], dh)
        return grads, dy + dh

    return Layer(init, forward, backward, name="residual(" + ", ".join(l.name for l in inner) + ")",
                 stochastic=any(is_stochastic(layer) for layer in inner))
