"""A network is a sequence of layers and an output head; its backward runs the layers' in reverse.

    net = fb.mlp([n0, n1, ..., nL], hidden="relu", output="identity", loss="mse")
    params = net.init(key)                       # one entry per layer that has parameters
    yhat = net.apply(params, x)                  # x: (m, n0) -> (m, nL)
    cost = net.loss(params, x, y)                # averaged over the batch
    cost, grads = net.value_and_grad(params, x, y)   # the hand-coded backward
    jax.grad(net.hand_loss)(params, x, y)        # the same backward, through jax.custom_vjp

Everything is pure, so `jax.jit`, `jax.vmap` and `jax.grad` apply. Bad shapes raise ValueError at
trace time; label and NaN checks run where values are concrete (outside `jit`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..activations import Activation, get_activation
from ..layers import Layer, activation, dense, forward_with_key, is_stochastic
from ..losses import Head, Loss, get_loss

Array = jax.Array
Params = list


class Trace(NamedTuple):
    """Everything one hand-coded forward and backward pass computed.

    outputs[i] is layer i's output and cotangents[i] = dC/d outputs[i], the upstream gradient its
    backward received. prediction = A[L] = g[L](Z[L]), grad_prediction = dC/dA[L], dx = dC/dx.
    """

    cost: Array
    grads: Params
    outputs: tuple
    cotangents: tuple
    prediction: Array
    grad_prediction: Array
    dx: Array


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _layer_key(key: Array | None, i: int) -> Array | None:
    return None if key is None else jax.random.fold_in(key, i)


@dataclass(frozen=True)
class Network:
    """Layers applied in order, then a head (output activation and loss) on the last output."""

    layers: tuple[Layer, ...]
    in_shape: tuple[int, ...]
    head: Head

    # ----- structure -------------------------------------------------------------------------
    @functools.cached_property
    def _structure(self) -> tuple[tuple[tuple[int, ...], ...], tuple[bool, ...], tuple[int, ...]]:
        """(input shape of every layer, whether it has parameters, the output shape), by jax.eval_shape."""
        in_shapes, has_params, shape = [], [], self.in_shape
        key = jax.random.PRNGKey(0)
        for layer in self.layers:
            params = jax.eval_shape(lambda k: layer.init(k, shape), key)
            y, _ = jax.eval_shape(lambda p, x: forward_with_key(layer, p, x, None), params,
                                  jax.ShapeDtypeStruct((2, *shape), jnp.float32))
            in_shapes.append(shape)
            has_params.append(bool(jax.tree_util.tree_leaves(params)))
            shape = tuple(y.shape[1:])
        return tuple(in_shapes), tuple(has_params), shape

    @property
    def stochastic(self) -> bool:
        """True when some layer draws random numbers in training (then steps take a PRNG key)."""
        return any(is_stochastic(layer) for layer in self.layers)

    @property
    def n_out(self) -> int:
        """Width of the output layer."""
        return int(np.prod(self._structure[2]))

    def _expand(self, params: Params) -> list:
        """One entry per layer, {} for layers without parameters."""
        if not isinstance(params, (list, tuple)):
            raise TypeError(f"params must be the list returned by net.init, got {type(params).__name__}")
        flags = self._structure[1]
        if len(params) != sum(flags):
            raise ValueError(f"params has {len(params)} entries; this network has {sum(flags)} layers with parameters")
        it = iter(params)
        return [next(it) if has else {} for has in flags]

    def _compact(self, per_layer: list) -> list:
        return [p for p, has in zip(per_layer, self._structure[1]) if has]

    # ----- the public contract ---------------------------------------------------------------
    def init(self, key: Array, dtype: Any = None) -> Params:
        """Draw parameters: a list with one entry per layer that has parameters."""
        keys = jax.random.split(key, len(self.layers))
        per_layer = [layer.init(k, shape) for layer, k, shape in zip(self.layers, keys, self._structure[0])]
        params = self._compact(per_layer)
        if dtype is not None:
            params = jax.tree_util.tree_map(lambda p: p.astype(dtype), params)
        return params

    def logits(self, params: Params, x: Array, key: Array | None = None) -> Array:
        """Z[L], the last layer's output, before the output activation."""
        return self._forward(self._expand(params), self._check_x(x), key)[0]

    def apply(self, params: Params, x: Array) -> Array:
        """yhat = A[L] = g[L](Z[L]), in inference mode (dropout off)."""
        return self.head.predict(self.logits(params, x))

    def loss(self, params: Params, x: Array, y: Array, key: Array | None = None) -> Array:
        """C(params; x, y), averaged over the batch (evaluated from the logits for canonical pairs).

        `key` drives stochastic layers (dropout); without it they run in inference mode.
        """
        x, y = self._check_x(x), self.targets(y, x)
        return self.head.cost(self._forward(self._expand(params), x, key)[0], y)

    def value_and_grad(self, params: Params, x: Array, y: Array, key: Array | None = None) -> tuple[Array, Params]:
        """(C, dC/dparams) by the hand-coded backward pass."""
        t = self.trace(params, x, y, key)
        return t.cost, t.grads

    def trace(self, params: Params, x: Array, y: Array, key: Array | None = None) -> Trace:
        """Hand-coded forward and backward, keeping every layer's output and upstream gradient."""
        x, y = self._check_x(x), self.targets(y, x)
        full = self._expand(params)
        z, caches, outputs = self._forward(full, x, key)
        dz = self.head.backward(z, y)
        grads, cotangents, dx = self._backward(full, caches, dz)
        return Trace(
            cost=self.head.cost(z, y),
            grads=self._compact(grads),
            outputs=tuple(outputs),
            cotangents=tuple(cotangents),
            prediction=self.head.predict(z),
            grad_prediction=self.head.grad_output(z, y),
            dx=dx,
        )

    @functools.cached_property
    def hand_loss(self):
        """C(params, x, y) as a `jax.custom_vjp` whose backward is the hand-coded one.

        `jax.grad`, `jax.vmap` (per-example gradients), `jax.jit` and optax then all run through
        the hand-coded equations. The cotangent of float targets y is autodiff of the cost in y
        (not part of any derivation); integer labels get none. Stochastic layers run in inference
        mode here; train them with `value_and_grad(..., key=...)`.
        """

        @jax.custom_vjp
        def core(params, x, y):
            return self.head.cost(self._forward(self._expand(params), x, None)[0], y)

        def fwd(params, x, y):
            full = self._expand(params)
            z, caches, _ = self._forward(full, x, None)
            return self.head.cost(z, y), (full, caches, z, y)

        def bwd(res, g):
            full, caches, z, y = res
            grads, _, dx = self._backward(full, caches, self.head.backward(z, y))
            _, vjp_y = jax.vjp(lambda t: self.head.cost(z, t), y)
            scale = lambda t: jax.tree_util.tree_map(lambda v: g * v, t)  # noqa: E731
            return scale(self._compact(grads)), scale(dx), vjp_y(g)[0]

        core.defvjp(fwd, bwd)

        def hand_loss(params: Params, x: Array, y: Array) -> Array:
            return core(params, self._check_x(x), self.targets(y, x))

        return hand_loss

    def probed_cost(self, params: Params, x: Array, y: Array, probes: tuple, output_probe: Array,
                    key: Array | None = None) -> Array:
        """The cost with a probe added to every layer's output and to A[L].

        At zero probes it equals the cost, and its autodiff gradient in `probes[i]` is dC/d(output
        of layer i), in `output_probe` dC/dA[L]: the autodiff reference for the intermediates.
        """
        x, y = self._check_x(x), self.targets(y, x)
        for i, (layer, p, probe) in enumerate(zip(self.layers, self._expand(params), probes)):
            x = forward_with_key(layer, p, x, _layer_key(key, i))[0] + probe
        return self.head.loss.cost(self.head.predict(x) + output_probe, y)

    # ----- the engine ------------------------------------------------------------------------
    def _forward(self, full: list, x: Array, key: Array | None) -> tuple[Array, list, list]:
        caches, outputs = [], []
        for i, (layer, p) in enumerate(zip(self.layers, full)):
            x, cache = forward_with_key(layer, p, x, _layer_key(key, i))
            caches.append(cache)
            outputs.append(x)
        return x, caches, outputs

    def _backward(self, full: list, caches: list, dy: Array) -> tuple[list, list, Array]:
        """Run the layers' backward passes in the reverse order of the forward pass."""
        grads: list[Any] = [None] * len(self.layers)
        cotangents: list[Any] = [None] * len(self.layers)
        for i in reversed(range(len(self.layers))):
            cotangents[i] = dy
            grads[i], dy = self.layers[i].backward(full[i], caches[i], dy)
        return grads, cotangents, dy

    # ----- input checks ----------------------------------------------------------------------
    def _check_x(self, x: Array) -> Array:
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 1 + len(self.in_shape) or tuple(shape[1:]) != self.in_shape:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.in_shape))}), got {shape}")
        if shape[0] == 0:
            raise ValueError("x is an empty batch")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
        if _is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
            raise ValueError("x contains NaN or Inf")
        return x

    def targets(self, y: Array, x: Array) -> Array:
        """Check y against x and the output width; integer class labels become one-hot rows (any loss)."""
        m, n_out = x.shape[0], self.n_out
        y = jnp.asarray(y)
        if jnp.issubdtype(y.dtype, jnp.integer) and y.ndim == 1:
            if n_out < 2:
                raise ValueError(f"integer labels need an output width of at least 2 classes; give y of shape ({m}, {n_out})")
            if y.shape != (m,):
                raise ValueError(f"labels must have shape ({m},) to match x, got {y.shape}")
            if _is_concrete(y):
                labels = np.asarray(y)
                if labels.min() < 0 or labels.max() >= n_out:
                    raise ValueError(f"labels must lie in [0, {n_out}), got values from {labels.min()} to {labels.max()}")
            return jax.nn.one_hot(y, n_out, dtype=x.dtype)
        if y.shape != (m, n_out):
            raise ValueError(f"y must have shape ({m}, {n_out}), got {y.shape}")
        if _is_concrete(y):
            self._check_target_values(np.asarray(y))
        return y.astype(x.dtype)

    def _check_target_values(self, y: np.ndarray) -> None:
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or Inf")
        name = self.head.loss.name
        if name in ("bce", "cross_entropy") and not np.all((y >= 0) & (y <= 1)):
            raise ValueError(f"targets of loss {name!r} must lie in [0, 1]")
        if name == "cross_entropy" and not np.allclose(y.sum(-1), 1, atol=1e-4):
            raise ValueError("targets of 'cross_entropy' must be one-hot (or probability) rows summing to 1")


@dataclass(frozen=True)
class MLP(Network):
    """Dense layers with an activation between each pair: the networks of the source texts."""

    activations: tuple[Activation, ...] = ()

    @property
    def depth(self) -> int:
        """L, the number of dense layers."""
        return len(self.activations) + 1

    def intermediates(self, params: Params, x: Array, y: Array) -> dict[str, list[Array]]:
        """Z[l], A[l], dZ[l] = dC/dZ[l], dA[l] = dC/dA[l] for l = 1..L (list index l-1).

        The layers alternate dense, activation, ..., dense, so Z[l] is the output of layer 2(l-1)
        and A[l] of layer 2(l-1)+1; A[L] and dA[L] come from the head.
        """
        t = self.trace(params, x, y)
        return {
            "Z": list(t.outputs[0::2]),
            "A": list(t.outputs[1::2]) + [t.prediction],
            "dZ": list(t.cotangents[0::2]),
            "dA": list(t.cotangents[1::2]) + [t.grad_prediction],
        }


def network(layers: Sequence[Layer], in_shape: Sequence[int], output: str = "identity", loss: str = "mse") -> Network:
    """A network of any layers obeying the protocol, with an output activation and loss."""
    return Network(tuple(layers), tuple(in_shape), Head(get_activation(output, hidden=False), get_loss(loss)))


def _hidden_list(hidden: str | Sequence[str], n_hidden: int) -> list[str]:
    if isinstance(hidden, str):
        return [hidden] * n_hidden
    hidden = list(hidden)
    if len(hidden) != n_hidden:
        raise ValueError(f"hidden lists {len(hidden)} activations for {n_hidden} hidden layers")
    return hidden


def mlp(
    sizes: Sequence[int],
    hidden: str | Sequence[str] = "relu",
    output: str = "identity",
    loss: str | Loss = "mse",
    init: str = "lecun",
) -> MLP:
    """A multilayer perceptron [n0, n1, ..., nL]: dense -> g[1] -> ... -> dense -> g[L] with a loss.

    `hidden` is one activation name or one per hidden layer; `init` names the weight scheme
    (see `fnbackprop.layers.init_dense_params`).
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least two entries [n_in, n_out], got {sizes}")
    bad = [n for n in sizes if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0]
    if bad:
        raise ValueError(f"every size must be a positive integer, got {sizes}")
    acts = tuple(get_activation(g, hidden=True) for g in _hidden_list(hidden, len(sizes) - 2))
    layers: list[Layer] = []
    for n_out, act in zip(sizes[1:], acts + (None,)):
        layers.append(dense(int(n_out), init))
        if act is not None:
            layers.append(activation(act))
    head = Head(get_activation(output, hidden=False), get_loss(loss))
    return MLP(tuple(layers), (int(sizes[0]),), head, acts)
