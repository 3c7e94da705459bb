"""Regularisation layers: dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .protocol import Array, Layer, no_params


def dropout(rate: float) -> Layer:
    """Inverted dropout: y = x * mask / (1 - rate), mask_i ~ Bernoulli(1 - rate); identity at inference.

    The mask is kept in the cache, so the backward is dx = dy * mask / (1 - rate): the same units
    dropped, the same scaling. A stochastic layer: forward(params, x, key), key=None for inference.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"dropout rate must lie in [0, 1), got {rate}")

    def forward(params: dict, x: Array, key: Array | None) -> tuple[Array, Array]:
        if key is None or rate == 0:
            scale = jnp.ones_like(x)
        else:
            scale = jax.random.bernoulli(key, 1 - rate, x.shape).astype(x.dtype) / (1 - rate)
        return x * scale, scale

    def backward(params: dict, scale: Array, dy: Array) -> tuple[dict, Array]:
        return {}, dy * scale

    return Layer(no_params, forward, backward, name=f"dropout({rate})", stochastic=True)
