"""Teeth: each planted textbook mistake must make the agreement check fail."""

import jax
import pytest

import fnbackprop as fb
from fnbackprop.check.battery import compare, sample_away_from_kinks
from fnbackprop.check.mutations import MUTATIONS
from fnbackprop.check.numerics import TOL_FLOAT64, rel_err

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)


@pytest.fixture(scope="module")
def square_problem():
    """Equal widths, so that W for W^T and a wrong layer's cache type-check, as on paper; m = 4 > 1."""
    net = fb.mlp([5, 5, 5, 5], hidden=["tanh", "sigmoid"], output="softmax", loss="cross_entropy")
    return net, sample_away_from_kinks(net, jax.random.PRNGKey(3), 4, "cross_entropy")


def test_the_unmutated_network_passes(square_problem):
    net, sample = square_problem
    assert compare(net, *sample).passed()


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_planted_mistake_is_caught(square_problem, mutation):
    net, sample = square_problem
    mutant = MUTATIONS[mutation](net)
    agreement = compare(mutant, *sample)
    assert not agreement.passed()
    assert agreement.hand_vs_autodiff > 1e-3, agreement  # far above rounding, not a near miss
    assert agreement.autodiff_vs_finite_diff <= 1e-6  # the references still agree: the backward is wrong


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_custom_vjp_carries_the_mistake_into_jax_grad(square_problem, mutation):
    """jax.grad of the custom_vjp loss runs the (mutated) hand backward, not autodiff."""
    net, (params, x, y) = square_problem
    mutant = MUTATIONS[mutation](net)
    hand = jax.grad(mutant.hand_loss)(params, x, y)
    assert rel_err(hand, mutant.value_and_grad(params, x, y)[1]) <= TOL_FLOAT64
    assert rel_err(hand, jax.grad(net.loss)(params, x, y)) > 1e-3


def test_mutants_keep_the_forward_pass(square_problem):
    net, (params, x, y) = square_problem
    for mutation in MUTATIONS.values():
        assert float(mutation(net).loss(params, x, y)) == float(net.loss(params, x, y))
