"""The layer protocol: three pure callables, no subclassing (`Layer` is a NamedTuple for convenience).

    init(key, in_shape)          -> params            in_shape excludes the batch axis
    forward(params, x)           -> (y, cache)        x: (m, *in_shape)
    backward(params, cache, dy)  -> (dparams, dx)     dy = dC/dy, dparams shaped like params

A layer with a true attribute `stochastic` (dropout) takes a PRNG key: `forward(params, x, key)`,
with `key=None` meaning inference mode. Networks hand each such layer its own key per step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

Array = jax.Array
Params = Any
Cache = Any


class Layer(NamedTuple):
    """A layer: pure `init`, `forward` and `backward`, plus a name for reports."""

    init: Callable[[Array, tuple[int, ...]], Params]
    forward: Callable[..., tuple[Array, Cache]]  # (params, x), or (params, x, key) for a stochastic layer
    backward: Callable[[Params, Cache, Array], tuple[Params, Any]]  # dx: an Array, None for integer inputs (tokens)
    name: str = "layer"
    stochastic: bool = False


def is_stochastic(layer: Any) -> bool:
    """True for layers that draw random numbers in training (dropout), taking forward(params, x, key)."""
    return bool(getattr(layer, "stochastic", False))


def forward_with_key(layer: Any, params: Params, x: Array, key: Array | None) -> tuple[Array, Cache]:
    """forward(params, x), or forward(params, x, key) for a stochastic layer (key None: inference)."""
    return layer.forward(params, x, key) if is_stochastic(layer) else layer.forward(params, x)


def no_params(key: Array, in_shape: tuple[int, ...]) -> dict:
    """`init` of a layer without parameters."""
    return {}
