"""The checker on custom rules as users write them in the wild: differentiation conventions where autodiff
of the primal is NaN, kinks across several tied entries at once, the transform rows judged like the eager
row (finite differences, domain-safe moves), and the transpose and broadcast-sum diagnoses. Every rule is
written here, each mistake with its correct twin."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb

FLOAT64 = True


# ----- differentiation conventions --------------------------------------------------------------------------
def norm_rule(value_at_zero):
    """||x|| with a custom_jvp choosing the gradient `value_at_zero` (every entry) at x = 0, where autodiff of
    sqrt(sum x^2) is 0/0 = NaN. The subgradients at 0 are the unit ball: 0 and 0.5 (norm 0.87 over 3
    entries) are valid; 0.8 (norm 1.39) is not, although each entry lies within its slopes [-1, 1]; 3 is not."""
    @jax.custom_jvp
    def norm(x):
        return jnp.sqrt(jnp.sum(x ** 2))

    @norm.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        n = norm(x)
        g = jnp.where(n == 0, value_at_zero, x / jnp.where(n == 0, 1.0, n))
        return n, jnp.sum(g * t)

    return norm


def sinc_rule(value_at_zero):
    """sin(x) / x, 1 at 0, written naively (autodiff of the primal is NaN at 0); the derivative there is 0."""
    @jax.custom_jvp
    def sinc(x):
        return jnp.where(x == 0, 1.0, jnp.sin(x) / x)

    @sinc.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        safe = jnp.where(x == 0, 1.0, x)
        return sinc(x), jnp.where(x == 0, value_at_zero, (jnp.cos(safe) * safe - jnp.sin(safe)) / safe ** 2) * t

    return sinc


def test_autodiff_is_nan_where_these_rules_exist():
    assert np.isnan(jax.grad(norm_rule(0.0).fun)(jnp.zeros(3))).all()
    assert np.isnan(jax.grad(lambda x: jnp.sum(sinc_rule(0.0).fun(x)))(jnp.array([0.0, 1.0]))[0])


@pytest.mark.parametrize("value, verdict", [(0.0, "convention"), (0.5, "convention"), (0.8, "backward wrong"),
                                            (3.0, "backward wrong"), (np.nan, "non-finite")])
def test_a_norm_at_zero_passes_with_a_subgradient_and_fails_with_anything_else(value, verdict):
    report = fb.check_vjp(norm_rule(value), jnp.zeros(3), transforms=())
    (row,) = report.rows
    assert row.verdict == verdict and report.passed == (verdict == "convention"), report
    if verdict == "convention":
        assert "autodiff of the primal is nan" in row.detail
    if value == 0.8:  # each entry within [-1, 1]: only the test across the entries sees it
        assert row.diagnosis.startswith("tie")


@pytest.mark.parametrize("value, passes", [(0.0, True), (0.3, False)])
def test_sinc_at_zero_is_judged_by_the_finite_differences(value, passes):
    report = fb.check_vjp(sinc_rule(value), jnp.array([0.0, 1.0, -2.0]))
    assert report.passed == passes, report
    assert report.rows[0].verdict == ("convention" if passes else "backward wrong")
    assert report.rows[-1].name.endswith("under jax.checkpoint") and report.rows[-1].ok == passes  # judged like eager


# ----- kinks across entries ---------------------------------------------------------------------------------
def max_rule(share):
    """max over the last axis; `share` says how the rule splits the upstream gradient among tied entries."""
    @jax.custom_vjp
    def row_max(x):
        return jnp.max(x, axis=-1)

    def fwd(x):
        return row_max(x), x

    def bwd(x, ct):
        tied = (x == jnp.max(x, axis=-1, keepdims=True)).astype(x.dtype)
        weights = {"every tied entry all of it": tied,
                   "split evenly": tied / jnp.sum(tied, axis=-1, keepdims=True),
                   "first": jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1], dtype=x.dtype),
                   "convex split 1:2:3": tied * jnp.arange(1.0, x.shape[-1] + 1) /
                   jnp.sum(tied * jnp.arange(1.0, x.shape[-1] + 1), axis=-1, keepdims=True)}[share]
        return (weights * ct[..., None],)

    row_max.defvjp(fwd, bwd)
    return row_max


TIES = jnp.array([[1.0, 3.0, 3.0, 0.5], [2.0, 2.0, 2.0, -1.0], [0.3, -0.2, 1.5, 0.1]])


@pytest.mark.parametrize("share, passes", [("every tied entry all of it", False), ("split evenly", True), ("first", True),
                                           ("convex split 1:2:3", True)])
def test_the_gradient_at_a_tie_must_be_a_subgradient_across_the_tied_entries(share, passes):
    report = fb.check_vjp(max_rule(share), TIES)
    assert report.passed == passes, report
    if not passes:
        (eager, *_) = report.failing()
        assert eager.name == "args[0]" and eager.diagnosis.startswith("tie") and "not together" in eager.detail


def test_separate_kinks_of_both_curvatures_are_not_judged_as_one():
    """ReLU at 0 under upstream gradients of both signs, its derivative there taken as 1: each kink is convex
    or concave alone, and no direction test may join them (a false alarm would)."""
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, 0.0)

    relu.defvjp(lambda x: (relu(x), x), lambda x, ct: ((x >= 0).astype(x.dtype) * ct,))
    x = jnp.zeros(8)
    for seed in range(3):
        report = fb.check_vjp(relu, x, key=jax.random.PRNGKey(seed), transforms=())
        assert report.passed and report.rows[0].verdict == "kink", report


# ----- the transform rows --------------------------------------------------------------------------------------
def test_a_function_on_a_domain_is_checked_under_vmap_at_points_it_accepts():
    """Binary entropy at probabilities near 0 and 1: a move of 0.1 N(0, 1) leaves (0, 1) and makes both sides
    NaN; the rows then move less, say so, and pass. Its twin with a sign slip fails in every row."""
    def entropy_rule(sign):
        @jax.custom_vjp
        def entropy(p):
            return -p * jnp.log(p) - (1 - p) * jnp.log1p(-p)

        entropy.defvjp(lambda p: (entropy(p), p), lambda p, ct: (sign * ct * (jnp.log1p(-p) - jnp.log(p)),))
        return entropy

    p = jnp.array([0.02, 0.5, 0.97, 0.01])
    report = fb.check_vjp(entropy_rule(1.0), p)
    assert report.passed, report
    assert any("leaves the function's domain" in note for note in report.notes)
    wrong = fb.check_vjp(entropy_rule(-1.0), p)
    assert len(wrong.failing()) == 4 and {r.diagnosis.split(":")[0] for r in wrong.failing()} == {"sign"}


# ----- diagnoses ------------------------------------------------------------------------------------------------
def test_a_rule_applying_j_where_its_transpose_belongs_is_named_transpose_for_any_linear_map():
    """A cumulative sum (not a matrix product): its VJP is the reversed cumulative sum; the cumulative sum
    itself is J ct."""
    def cumsum_rule(transposed):
        @jax.custom_vjp
        def cumsum(x):
            return jnp.cumsum(x, axis=-1)

        def bwd(_, ct):
            return (jnp.cumsum(ct, axis=-1) if transposed else jnp.flip(jnp.cumsum(jnp.flip(ct, -1), axis=-1), -1),)

        cumsum.defvjp(lambda x: (cumsum(x), None), bwd)
        return cumsum

    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5))
    assert fb.check_vjp(cumsum_rule(False), x, transforms=()).passed
    report = fb.check_vjp(cumsum_rule(True), x, transforms=())
    assert report.diagnosis.startswith("transpose") and "J ct" in report.diagnosis


@pytest.mark.parametrize("by_design", [False, True])
def test_an_unreduced_gradient_of_a_broadcast_input_is_named_from_its_shape(by_design):
    @jax.custom_vjp
    def scaled(a, x):
        return a * x

    scaled.defvjp(lambda a, x: (scaled(a, x), (a, x)), lambda res, ct: (ct * res[1], ct * res[0]))
    report = fb.check_vjp(scaled, jnp.array(2.0), jnp.ones((3, 4)), transforms=(), by_design=by_design)
    assert not report.passed and report.diagnosis.startswith("broadcast-sum") and "[3, 4]" in report.diagnosis
