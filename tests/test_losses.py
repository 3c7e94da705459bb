"""Costs against their textbook definitions, stable logits paths, and dC/dA against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnbackprop.activations import ACTIVATIONS
from fnbackprop.losses import LOSSES, Head

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)

A = np.array([[0.2, 0.8], [0.6, 0.4]])
Y = np.array([[0.0, 1.0], [1.0, 0.0]])


def test_costs_match_their_definitions_on_a_worked_example():
    # Written out by hand from the definitions, m = 2 examples:
    # mse = (1/m) sum ||a - y||^2 = (0.04 + 0.04 + 0.16 + 0.16) / 2 = 0.2
    assert float(LOSSES["mse"].cost(A, Y)) == pytest.approx(0.2, rel=1e-14)
    assert float(LOSSES["quadratic"].cost(A, Y)) == pytest.approx(0.1, rel=1e-14)
    # bce = -(1/2) [ln 0.8 + ln 0.8 + ln 0.6 + ln 0.6]
    assert float(LOSSES["bce"].cost(A, Y)) == pytest.approx(-(2 * np.log(0.8) + 2 * np.log(0.6)) / 2, rel=1e-14)
    # cross_entropy = -(1/2) [ln 0.8 + ln 0.6]
    assert float(LOSSES["cross_entropy"].cost(A, Y)) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, rel=1e-14)


@pytest.mark.parametrize("loss", ["bce", "cross_entropy"])
def test_cost_from_logits_equals_cost_from_outputs(loss, key):
    head = Head(ACTIVATIONS[LOSSES[loss].canonical_output], LOSSES[loss])
    z = jax.random.normal(key, (5, 3), jnp.float64)
    y = jax.nn.one_hot(jnp.array([0, 1, 2, 1, 0]), 3, dtype=jnp.float64)
    np.testing.assert_allclose(head.cost(z, y), head.loss.cost(head.predict(z), y), rtol=1e-13)


def test_logits_cost_is_finite_where_the_probability_underflows():
    """z = 1000 for the wrong class: ln a underflows to -inf, the logits form gives the exact 1000/m."""
    z = jnp.array([[1000.0, 0.0]], jnp.float64)
    y = jnp.array([[0.0, 1.0]], jnp.float64)
    ce = Head(ACTIVATIONS["softmax"], LOSSES["cross_entropy"])
    assert float(ce.cost(z, y)) == pytest.approx(1000.0, rel=1e-12)
    bce = Head(ACTIVATIONS["sigmoid"], LOSSES["bce"])
    assert float(bce.cost(z, y)) == pytest.approx(1000.0 + np.log(2), rel=1e-12)  # softplus(1000) + softplus(0)
    assert np.all(np.isfinite(bce.backward(z, y))) and np.all(np.isfinite(ce.backward(z, y)))


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_grad_output_matches_autodiff(loss, key):
    a = jax.random.uniform(key, (4, 3), jnp.float64, 0.05, 0.95)
    a = a / a.sum(-1, keepdims=True) if loss == "cross_entropy" else a
    y = jax.nn.one_hot(jnp.array([0, 2, 1, 1]), 3, dtype=jnp.float64)
    np.testing.assert_allclose(LOSSES[loss].grad_output(a, y), jax.grad(LOSSES[loss].cost)(a, y), rtol=1e-12)


@pytest.mark.parametrize("output,loss", [("identity", "bce"), ("sigmoid", "cross_entropy"), ("softmax", "bce")])
def test_invalid_output_loss_pairs_are_refused(output, loss):
    with pytest.raises(ValueError, match=f"loss '{loss}' needs output activation"):
        Head(ACTIVATIONS[output], LOSSES[loss])
