"""Fast mode: finite differences along random directions (u^T J v) instead of entry by entry, and the
interpreter that checks a whole model's custom rules (`fnbackprop.check.rules`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb
from fnbackprop.check.mutations import MUTATIONS
from fnbackprop.check.projections import projected_differences, projection_error, support_norms
from fnbackprop.check.rules import custom_rules, derivative_variants, without_rules

FLOAT64 = True

KEY = jax.random.PRNGKey(0)


def test_a_projection_is_the_directional_derivative_and_a_wrong_gradient_is_off_by_its_error():
    A = jax.random.normal(KEY, (6, 6))
    x = [jax.random.normal(jax.random.PRNGKey(1), (6,)), jax.random.normal(jax.random.PRNGKey(2), (2, 3))]
    f = lambda t: jnp.sin(t[0]) @ A @ t[0] + jnp.sum(t[1] ** 3)  # noqa: E731
    grad = [jnp.cos(x[0]) * (A @ x[0]) + A.T @ jnp.sin(x[0]), 3 * x[1] ** 2]  # derived here, by hand
    wrong = [grad[0], 1.001 * grad[1]]  # 0.1% off in the second leaf only
    supports = np.array([[0, 12]] * 16 + [[6, 12]] * 4)
    sample = projected_differences(f, x, KEY, [grad, wrong], supports)
    norms = support_norms(grad, supports)
    right_error, used, dropped = projection_error(sample, 0, norms, 1e-6)
    assert right_error < 1e-8 and (used, dropped) == (20, 0)  # central differences in float64: ~1e-10
    wrong_error = projection_error(sample, 1, norms, 1e-6)[0]
    assert 1e-4 < wrong_error < 1e-2  # ~ 0.001 |<g1, v>| / ||g||: seen, at its size


NET = fb.mlp([6, 6, 6, 6], hidden=["tanh", "sigmoid"], output="softmax", loss="cross_entropy")


@pytest.fixture(scope="module")
def model_args():
    params = fb.check.verify.move_off_special_values(KEY, NET.init(KEY, jnp.float64))
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 6))
    y = jax.random.randint(jax.random.PRNGKey(4), (5,), 0, 6)
    return params, x, y


@pytest.mark.slow  # nine checks of 2 s: the second `.ci/run` step; experiments/fast_check.py does it at 1M parameters
def test_fast_mode_passes_the_hand_coded_model_and_catches_every_planted_mistake(model_args):
    correct = fb.check_vjp(NET.hand_loss, *model_args, fast=True, transforms=())
    assert correct.passed and any("fast mode" in n for n in correct.notes)
    assert all(r.fd_rel_err < 1e-6 for r in correct.rows if r.name != "args[2]")  # the projections ran, and agree
    caught = {name: not fb.check_vjp(mutate(NET).hand_loss, *model_args, fast=True, transforms=()).passed
              for name, mutate in MUTATIONS.items()}
    assert caught == {name: True for name in MUTATIONS}


def sneaky_square(rel: float):
    """x^2 whose autodiff says 2x (1 + rel): the forward's autodiff is not its derivative."""
    return lambda x: x ** 2 + rel * (x ** 2 - jax.lax.stop_gradient(x ** 2))


def test_fast_mode_finds_an_autodiff_that_is_not_the_derivative_in_a_leaf_where_hand_agrees_with_it():
    """Only finite differences can see this: hand = autodiff, both 0.01% off. The all-leaves directions
    disagree, the leaf's own directions localise it; the other leaf stays ok."""
    bad = sneaky_square(1e-4)

    @jax.custom_vjp
    def f(a, b):
        return jnp.sum(jnp.tanh(a)) + jnp.sum(bad(b))

    f.defvjp(lambda a, b: (f(a, b), (a, b)), lambda r, g: (g * (1 - jnp.tanh(r[0]) ** 2), g * 2 * r[1] * (1 + 1e-4)))
    a, b = jax.random.normal(KEY, (50,)), jax.random.normal(jax.random.PRNGKey(1), (400,))
    report = fb.check_vjp(f, a, b, fast=True, transforms=())
    assert {r.name: r.verdict for r in report.rows} == {"args[0]": "ok", "args[1]": "references disagree"}
    assert 1e-5 < report.rows[1].fd_rel_err < 1e-3


@pytest.mark.slow  # 23 s of compiles: the second `.ci/run` step
def test_fast_mode_on_a_relu_network_does_not_call_its_kinks_mistakes():
    net = fb.mlp([5, 7, 7, 3], hidden="relu", output="softmax", loss="cross_entropy")
    params = net.init(KEY, jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(5), (6, 5))
    y = jax.random.randint(jax.random.PRNGKey(6), (6,), 0, 3)
    assert fb.check_vjp(net.hand_loss, params, x, y, fast=True, transforms=()).passed
    assert not fb.check_vjp(MUTATIONS["missing g'"](net).hand_loss, params, x, y, fast=True, transforms=()).passed


# ----- custom rules inside a function ------------------------------------------------------------------
def wrong_tanh():
    @jax.custom_vjp
    def t(x):
        return jnp.tanh(x)

    t.defvjp(lambda x: (jnp.tanh(x), x), lambda x, g: (g * jnp.tanh(x),))  # tanh for tanh'
    return t


def test_rules_inside_a_jitted_function_are_found_and_bypassed():
    t = wrong_tanh()
    model = lambda W, x: jnp.sum(jax.jit(lambda z: t(z @ W))(x) ** 2)  # noqa: E731
    W, x = jax.random.normal(KEY, (3, 3)), jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    assert custom_rules(model, W, x) == ["t"]
    plain = lambda W, x: jnp.sum(jnp.tanh(x @ W) ** 2)  # noqa: E731
    np.testing.assert_allclose(jax.grad(without_rules(model))(W, x), jax.grad(plain)(W, x), rtol=1e-13)
    assert not np.allclose(jax.grad(model)(W, x), jax.grad(plain)(W, x))


def test_check_vjp_checks_a_model_that_calls_a_rule_and_names_the_slip():
    t = wrong_tanh()
    W, x = jax.random.normal(KEY, (3, 3)), jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    report = fb.check_vjp(lambda W, x: jnp.sum(t(x @ W) ** 2), W, x, transforms=())
    assert [r.name for r in report.failing()] == ["args[0]", "args[1]"]
    assert report.diagnosis.startswith("activation-for-derivative") and "tanh" in report.diagnosis
    with pytest.raises(TypeError, match="calls no custom rule"):
        fb.check_vjp(lambda W, x: jnp.sum(x @ W), W, x)


def test_each_variant_is_the_gradient_a_derivation_with_that_slip_gives():
    W, x = jax.random.normal(KEY, (3, 3)), jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    f = lambda W, x: jnp.sum(jnp.tanh(x @ W))  # noqa: E731
    y = jnp.tanh(x @ W)
    slips = {  # dW for each slip, written out by hand
        "transpose": x.T @ (1 - y ** 2),  # the slip is in x's gradient (W is square); W's own is the true one
        "missing-derivative": x.T @ jnp.ones_like(y),
        "activation-for-derivative": x.T @ y,
    }
    variants = {v.kind: jax.grad(v.fn)(W, x) for v in derivative_variants(f, W, x)}
    assert set(variants) == {"transpose", "missing-derivative", "activation-for-derivative"}
    for kind, dW in slips.items():
        np.testing.assert_allclose(variants[kind], dW, rtol=1e-12)
