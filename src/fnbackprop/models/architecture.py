"""A network from a one-line spec: `fnbackprop train --layers "conv(20,5) maxpool(2) dense(100) relu"`.

    conv(F, K[, S[, P]])   conv2d: F maps, K x K kernel, stride S (1), padding P: valid (default), same or an int
    maxpool(K[, S])        max pooling, window K, stride S (K)
    avgpool(K[, S])        average pooling
    dense(N)               fully connected, N units
    dropout(R)             inverted dropout, rate R
    batchnorm, layernorm   normalisation
    flatten                (m, H, W, C) -> (m, H W C)
    relu, sigmoid, tanh... any hidden activation (`fnbackprop.ACTIVATIONS`)

Layers are separated by spaces (or commas outside parentheses). Flat inputs (a dataset's rows) are
reshaped to the dataset's image shape before the first conv or pool layer; a flatten is inserted
before the first dense layer that follows an image-shaped output; the output layer dense(n_outputs)
is appended. So Nielsen's chapter-6 network reads `conv(20,5) maxpool(2) conv(40,5) maxpool(2)
dense(100) relu` (his conv layers are followed by sigmoid or ReLU, written out: `conv(20,5) relu`).
"""

from __future__ import annotations

import re
from typing import Callable

import jax
import jax.numpy as jnp

from ..activations import ACTIVATIONS
from ..layers import (Layer, activation, avg_pool, batch_norm, conv2d, dense, dropout, flatten, forward_with_key, layer_norm,
                      max_pool, reshape)

IMAGE_LAYERS = ("conv", "maxpool", "avgpool")
_TOKEN = re.compile(r"\s*([a-z_0-9]+)\s*(?:\(([^()]*)\))?\s*,?")


def _numbers(args: str, kinds: tuple, name: str) -> list:
    """`args` split at commas and converted by `kinds` (the first len(parts) of them)."""
    parts = [a.strip() for a in args.split(",")] if args.strip() else []
    if not parts or len(parts) > len(kinds):
        raise ValueError(f"{name}(...) takes 1 to {len(kinds)} arguments, got {len(parts)}: {name}({args})")
    try:
        return [kind(p) for kind, p in zip(kinds, parts)]
    except ValueError:
        raise ValueError(f"cannot read the arguments of {name}({args})") from None


def _padding(text: str) -> str | int:
    return text.upper() if text.lower() in ("valid", "same") else int(text)


LAYERS: dict[str, Callable[[str], Layer]] = {
    "conv": lambda a: conv2d(*_numbers(a, (int, int, int, _padding), "conv")),
    "maxpool": lambda a: max_pool(*_numbers(a, (int, int), "maxpool")),
    "avgpool": lambda a: avg_pool(*_numbers(a, (int, int), "avgpool")),
    "dense": lambda a: dense(*_numbers(a, (int,), "dense")),
    "dropout": lambda a: dropout(*_numbers(a, (float,), "dropout")),
}
PLAIN = {"flatten": flatten, "batchnorm": batch_norm, "layernorm": layer_norm}


def parse_layers(spec: str) -> list[tuple[str, Layer]]:
    """[(kind, layer)] in the order of `spec`; ValueError naming the first part that is not a layer."""
    out, at = [], 0
    spec = spec.strip()
    while at < len(spec):
        match = _TOKEN.match(spec, at)
        if match is None or match.end() == at:
            raise ValueError(f"cannot read the layer spec at {spec[at:]!r}")
        name, args = match.group(1), match.group(2)
        if name in LAYERS:
            if args is None:
                raise ValueError(f"{name} needs its arguments in parentheses, e.g. {name}(2)")
            out.append((name, LAYERS[name](args)))
        elif name in PLAIN or (name in ACTIVATIONS and ACTIVATIONS[name].hidden_ok):
            if args is not None:
                raise ValueError(f"{name} takes no arguments, got {name}({args})")
            out.append((name, PLAIN[name]() if name in PLAIN else activation(name)))
        else:
            hidden = sorted(n for n, a in ACTIVATIONS.items() if a.hidden_ok)
            raise ValueError(f"unknown layer {name!r} in --layers; expected {', '.join([*LAYERS, *PLAIN])} or an activation "
                             f"({', '.join(hidden)})")
        at = match.end()
    if not out:
        raise ValueError("the layer spec is empty")
    return out


def check_shapes(layers: list[Layer], in_shape: tuple) -> None:
    """Trace each layer's init and forward on its input shape (no arithmetic): ValueError naming the
    first layer that does not fit, e.g. a 30x30 kernel on an 8x8 image."""
    shape = tuple(in_shape)
    for layer in layers:
        try:
            params = jax.eval_shape(lambda k, s=shape, layer=layer: layer.init(k, s), jax.random.PRNGKey(0))
            out = jax.eval_shape(lambda p, x, layer=layer: forward_with_key(layer, p, x, None), params,
                                 jax.ShapeDtypeStruct((2, *shape), jnp.float32))[0]
        except Exception as err:  # noqa: BLE001 (any failure here is a spec that does not fit: said in one line)
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise ValueError(f"{layer.name} does not fit its input shape {shape}: {first}") from None
        shape = tuple(out.shape[1:])


def layers_from_spec(spec: str, n_outputs: int, image_shape: tuple | None, n_features: int | None = None) -> list[Layer]:
    """The layers of `spec` for flat inputs: reshaped to `image_shape` before the first image layer,
    flattened before the first dense layer after one, and dense(n_outputs) appended; with
    `n_features`, every layer's shapes are checked (`check_shapes`)."""
    layers, image, flattened = [], False, False  # image: the output so far is (m, H, W, C); flattened: no longer
    for kind, layer in parse_layers(spec):
        if kind in IMAGE_LAYERS and not image:
            if flattened:
                raise ValueError(f"{kind} cannot follow a dense or flatten layer: its input is no longer an image")
            if image_shape is None:
                raise ValueError(f"{kind} needs image inputs; this dataset's rows have no image shape")
            layers.append(reshape(image_shape))
            image = True
        if kind == "dense" and image:
            layers.append(flatten())
        if kind in ("dense", "flatten"):
            image, flattened = False, True
        layers.append(layer)
    if image:
        layers.append(flatten())
    layers.append(dense(int(n_outputs)))
    if n_features is not None:
        check_shapes(layers, (int(n_features),))
    return layers
