"""The agreement battery: the hand-coded backward against jax.grad and float64 finite differences.

For a network, parameters and a batch, `compare` computes three gradients of the same cost:

- hand: `net.trace` (the hand-coded backward pass);
- autodiff: `jax.grad(net.loss)`, and for the intermediates dZ, dA of every layer, `jax.grad` of
  `net.probed_cost` in zero probes added to each layer's output;
- finite differences: float64 central differences of `net.loss` in every parameter entry.

`battery` runs it over every built-in activation (as a hidden layer) and every valid output/loss
pair, in float64. Inputs are redrawn until every pre-activation is at least `KINK_MARGIN` away from
0, so that ReLU-type kinks do not mislead the finite differences.
"""

from __future__ import annotations

import functools
from typing import Iterator, NamedTuple

import jax
import jax.numpy as jnp

from ..activations import ACTIVATIONS
from ..losses import LOSSES
from ..models.network import MLP, Network, mlp
from .numerics import TOL_FINITE_DIFF, TOL_FLOAT64, finite_difference_grad, rel_err

Array = jax.Array

KINK_MARGIN = 1e-3


class Agreement(NamedTuple):
    """Relative errors (see `fnbackprop.check.numerics.rel_err`) between the three references."""

    hand_vs_autodiff: float
    intermediates_vs_autodiff: float
    hand_vs_finite_diff: float
    autodiff_vs_finite_diff: float

    def passed(self, tol: float = TOL_FLOAT64, fd_tol: float = TOL_FINITE_DIFF) -> bool:
        """Hand equals autodiff (params and intermediates), and both equal finite differences."""
        return (
            self.hand_vs_autodiff <= tol
            and self.intermediates_vs_autodiff <= tol
            and self.hand_vs_finite_diff <= fd_tol
            and self.autodiff_vs_finite_diff <= fd_tol
        )


def autodiff_intermediates(net: Network, params: list, x: Array, y: Array) -> tuple[tuple, Array]:
    """(dC/d output of every layer, dC/dA[L]) by jax.grad of the probed cost at zero probes."""
    outputs = net.trace(params, x, y).outputs
    probes = tuple(jnp.zeros_like(o) for o in outputs)
    out_probe = jnp.zeros_like(net.apply(params, x))
    return jax.grad(net.probed_cost, argnums=(3, 4))(params, x, y, probes, out_probe)


def _references(net: Network, finite_differences: bool, params: list, x: Array, y: Array) -> dict:
    trace = net.trace(params, x, y)
    probe_grads, out_grad = autodiff_intermediates(net, params, x, y)
    refs = {
        "hand": trace.grads,
        "autodiff": jax.grad(net.loss)(params, x, y),
        "hand_inter": (trace.cotangents, trace.grad_prediction),
        "autodiff_inter": (probe_grads, out_grad),
    }
    if finite_differences:
        refs["fd"] = finite_difference_grad(lambda q: net.loss(q, x, y), params)
    return refs


def compare(net: Network, params: list, x: Array, y: Array, finite_differences: bool = True) -> Agreement:
    """Hand vs autodiff vs finite differences on one batch, in one compiled call (fd needs float64)."""
    refs = jax.jit(functools.partial(_references, net, finite_differences))(params, x, y)
    nan = float("nan")
    return Agreement(
        hand_vs_autodiff=rel_err(refs["hand"], refs["autodiff"]),
        intermediates_vs_autodiff=rel_err(refs["hand_inter"], refs["autodiff_inter"]),
        hand_vs_finite_diff=rel_err(refs["hand"], refs["fd"]) if finite_differences else nan,
        autodiff_vs_finite_diff=rel_err(refs["autodiff"], refs["fd"]) if finite_differences else nan,
    )


def sample_targets(key: Array, loss: str, m: int, n_out: int, dtype=jnp.float64) -> Array:
    """Targets a loss accepts: one-hot rows (cross_entropy), 0/1 (bce), normal values otherwise."""
    if loss == "cross_entropy":
        return jax.nn.one_hot(jax.random.randint(key, (m,), 0, n_out), n_out, dtype=dtype)
    if loss == "bce":
        return jax.random.bernoulli(key, 0.5, (m, n_out)).astype(dtype)
    return jax.random.normal(key, (m, n_out), dtype)


def sample_away_from_kinks(net: MLP, key: Array, m: int, loss: str, dtype=jnp.float64, tries: int = 50):
    """(params, x, y) in `dtype` with every pre-activation Z[l] at least KINK_MARGIN from 0."""
    for k in jax.random.split(key, tries):
        kp, kx, ky = jax.random.split(k, 3)
        params = net.init(kp, dtype)
        x = jax.random.normal(kx, (m, *net.in_shape), dtype)
        y = sample_targets(ky, loss, m, net.n_out, dtype)
        if all(float(jnp.min(jnp.abs(z))) > KINK_MARGIN for z in net.intermediates(params, x, y)["Z"]):
            return params, x, y
    raise RuntimeError(f"no sample away from the kinks in {tries} tries")


def valid_heads() -> Iterator[tuple[str, str]]:
    """Every (output activation, loss) pair the library accepts."""
    for loss in LOSSES.values():
        outputs = [loss.canonical_output] if loss.canonical_output else list(ACTIVATIONS)
        for out in outputs:
            yield out, loss.name


class BatteryRow(NamedTuple):
    component: str
    equation: str  # the derivative (hidden) or the cost (output) under test
    agreement: Agreement
    passed: bool


def battery(key: Array, m: int = 5, only: str | None = None) -> list[BatteryRow]:
    """Every hidden activation and every valid output/loss pair, float64, all three references.

    `only` keeps the components whose name contains it.
    """
    cases = [(f"hidden {g}", act.equation, mlp([4, 6, 5, 3], hidden=g, output="identity", loss="mse"), "mse")
             for g, act in ACTIVATIONS.items() if act.hidden_ok]
    cases += [(f"output {out} + {loss}", LOSSES[loss].equation, mlp([4, 6, 3], hidden="tanh", output=out, loss=loss), loss)
              for out, loss in valid_heads()]
    cases = [case for case in cases if only is None or only in case[0]]
    rows = []
    for (name, equation, net, loss), k in zip(cases, jax.random.split(key, len(cases))):
        agreement = compare(net, *sample_away_from_kinks(net, k, m, loss))
        rows.append(BatteryRow(name, equation, agreement, agreement.passed()))
    return rows
