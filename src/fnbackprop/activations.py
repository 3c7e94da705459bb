"""Activation functions, each beside its hand-written derivative.

An activation is a frozen dataclass, so it is hashable and can be a static argument of `jax.jit`.
Elementwise activations give `derivative(z, a) = g'(z)`, written in terms of the cached output
`a = g(z)` where that is cheaper (sigmoid' = a(1 - a), tanh' = 1 - a^2). The backward rule is

    dZ = dA * g'(Z)                      (Ng's notation; the Hadamard product)

except for softmax, which is not elementwise: its backward is the Jacobian-vector product
`dZ = A * (dA - sum_k dA_k A_k)` (row by row), and it may only be an output activation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """An activation g with its derivative g'(z), given both z and a = g(z)."""

    name: str
    fn: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array] | None
    equation: str
    hidden_ok: bool = True

    def backward(self, z: Array, a: Array, da: Array) -> Array:
        """dZ = dA * g'(Z) for elementwise g; the softmax Jacobian-vector product otherwise."""
        if self.derivative is None:
            return softmax_vjp(a, da)
        return da * self.derivative(z, a)


def softmax_vjp(a: Array, da: Array) -> Array:
    """dz_j = sum_k da_k da_k/dz_j = a_j (da_j - sum_k da_k a_k), since da_k/dz_j = a_k (1[j=k] - a_j)."""
    return a * (da - jnp.sum(da * a, axis=-1, keepdims=True))


def _huber(z: Array) -> Array:
    return jnp.where(jnp.abs(z) <= 1.0, 0.5 * z * z, jnp.abs(z) - 0.5)


GELU_C = 0.044715
SQRT_2_OVER_PI = np.sqrt(2 / np.pi)  # float64; each use takes it in its input's dtype, as jax.nn.gelu does


def _gelu_tanh_u(z: Array) -> Array:
    """tanh u, u = sqrt(2/pi) (z + c z^3): written once for GELU's value and its derivative, so that a program
    computing both (a training step) computes it once."""
    return jnp.tanh(SQRT_2_OVER_PI.astype(z.dtype) * (z + GELU_C * z**3))


def _gelu_tanh(z: Array) -> Array:
    """z/2 (1 + tanh u), as jax.nn.gelu(z, approximate=True) computes it."""
    return z * (0.5 * (1 + _gelu_tanh_u(z)))


def _gelu_tanh_derivative(z: Array) -> Array:
    """d/dz of z/2 (1 + tanh u), u = sqrt(2/pi) (z + c z^3): the product rule, then the chain rule through tanh."""
    k = SQRT_2_OVER_PI.astype(z.dtype)
    t = _gelu_tanh_u(z)
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * GELU_C * z * z)


ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in (
        Activation("identity", lambda z: z, lambda z, a: jnp.ones_like(z), "g'(z) = 1"),
        Activation("sigmoid", jax.nn.sigmoid, lambda z, a: a * (1 - a), "g'(z) = a (1 - a)"),
        Activation("tanh", jnp.tanh, lambda z, a: 1 - a * a, "g'(z) = 1 - a^2"),
        Activation(
            "relu",
            jax.nn.relu,
            lambda z, a: (z > 0).astype(z.dtype),
            "g'(z) = 1[z > 0]  (0 at the kink, as jax.nn.relu)",
        ),
        Activation(
            "leaky_relu",
            lambda z: jax.nn.leaky_relu(z, LEAKY_SLOPE),
            lambda z, a: jnp.where(z >= 0, 1.0, LEAKY_SLOPE).astype(z.dtype),
            f"g'(z) = 1 if z >= 0 else {LEAKY_SLOPE}  (1 at the kink, as jax.nn.leaky_relu)",
        ),
        Activation("softplus", jax.nn.softplus, lambda z, a: jax.nn.sigmoid(z), "g'(z) = sigmoid(z)"),
        Activation(
            "silu",
            jax.nn.silu,
            lambda z, a: jax.nn.sigmoid(z) * (1 + z * (1 - jax.nn.sigmoid(z))),
            "g'(z) = s (1 + z (1 - s)), s = sigmoid(z)",
        ),
        Activation(
            "huber",
            _huber,
            lambda z, a: jnp.clip(z, -1.0, 1.0),
            "g(z) = z^2/2 if |z| <= 1 else |z| - 1/2;  g'(z) = clip(z, -1, 1)  (Dong's tutorial names it)",
        ),
        Activation(
            "gelu",
            _gelu_tanh,
            lambda z, a: _gelu_tanh_derivative(z),
            "g(z) = z/2 (1 + tanh u), u = sqrt(2/pi) (z + 0.044715 z^3);  "
            "g'(z) = (1 + tanh u)/2 + z/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 z^2)  (GPT-2's tanh form)",
        ),
        Activation(
            "softmax",
            lambda z: jax.nn.softmax(z, axis=-1),
            None,
            "dz = a * (da - sum(da * a))  (Jacobian-vector product; output layer only)",
            hidden_ok=False,
        ),
    )
}


def get_activation(name: str | Activation, *, hidden: bool) -> Activation:
    """Look an activation up by name, with a clear error for unknown names or a hidden softmax."""
    if isinstance(name, Activation):
        act = name
    elif isinstance(name, str) and name in ACTIVATIONS:
        act = ACTIVATIONS[name]
    else:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    if hidden and not act.hidden_ok:
        raise ValueError(f"activation {act.name!r} may only be used on the output layer, not a hidden one")
    return act
