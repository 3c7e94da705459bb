"""fb.check_vjp: custom_vjp rules written here (not taken from the package), each correct or with one
planted mistake, on pytree, integer and nondiff inputs; and the fb.testing assertions."""

import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb

FLOAT64 = True


def logsumexp_rule(mistake=""):
    """Stable log-sum-exp over the last axis; its rule is d lse / dx = softmax(x)."""

    @jax.custom_vjp
    def lse(x):
        top = jnp.max(x, -1, keepdims=True)
        return top[..., 0] + jnp.log(jnp.sum(jnp.exp(x - top), -1))

    def fwd(x):
        y = lse(x)
        return y, (x, y)

    def bwd(res, g):
        x, y = res
        p = jnp.exp(x - y[..., None])
        return ({"": g[..., None] * p, "scale": 2 * g[..., None] * p, "sign": -g[..., None] * p,
                 "g forgotten": p, "nan": (g[..., None] * p).at[0, 0].set(jnp.nan)}[mistake],)

    lse.defvjp(fwd, bwd)
    return lse


X = jax.random.normal(jax.random.PRNGKey(1), (4, 5))


def names(rows, transforms=False):
    """Row names; without transforms, only the eager rows (not "... under jax.vmap" and the like)."""
    return [r.name for r in rows if transforms or " under " not in r.name]


def test_a_correct_rule_passes_and_says_where_it_was_compared():
    report = fb.check_vjp(logsumexp_rule(), X)
    assert report.passed and names(report.rows) == ["args[0]"]
    assert report.rows[0].rel_err <= 1e-12 and report.rows[0].fd_rel_err <= 1e-8


@pytest.mark.parametrize("mistake,verdict,ratio", [("scale", "backward wrong", 2.0), ("sign", "backward wrong", -1.0),
                                                   ("g forgotten", "backward wrong", None), ("nan", "non-finite", None)])
def test_a_planted_mistake_in_the_rule_fails(mistake, verdict, ratio):
    row, *under_transforms = fb.check_vjp(logsumexp_rule(mistake), X).failing()
    assert row.name == "args[0]" and row.verdict == verdict and len(under_transforms) == 3
    if ratio is not None:
        assert row.ratio == pytest.approx(ratio)


def embedding_sum(mistake=""):
    """sum(W[idx] * b): a pytree input and an integer one (its cotangent is float0)."""

    @jax.custom_vjp
    def f(params, idx):
        return jnp.sum(params["W"][idx] * params["b"])

    def fwd(params, idx):
        return f(params, idx), (params, idx)

    def bwd(res, g):
        params, idx = res
        rows = g * params["b"] if mistake != "no scatter-add" else g * params["b"] / 2
        dW = jnp.zeros_like(params["W"]).at[idx].add(rows) if mistake != "set, not add" else jnp.zeros_like(params["W"]).at[idx].set(rows)
        return {"W": dW, "b": g * jnp.sum(params["W"][idx], 0)}, np.zeros(idx.shape, jax.dtypes.float0)

    f.defvjp(fwd, bwd)
    return f


PARAMS = {"W": jax.random.normal(jax.random.PRNGKey(2), (6, 3)), "b": jnp.array([0.5, -1.0, 2.0])}
IDX = jnp.array([0, 2, 2, 5])  # index 2 twice: its gradient rows must add up


def test_pytree_and_integer_inputs_get_a_row_each_in_argument_order():
    report = fb.check_vjp(embedding_sum(), PARAMS, IDX, transforms=())
    assert report.passed
    assert names(report.rows) == ["args[0]['W']", "args[0]['b']", "args[1]"]
    assert "not differentiable" in report.rows[2].detail


def test_a_scatter_that_overwrites_repeated_rows_is_named():
    report = fb.check_vjp(embedding_sum("set, not add"), PARAMS, IDX, transforms=())
    assert [(r.name, r.verdict) for r in report.failing() if " under " not in r.name] == [("args[0]['W']", "backward wrong")]


def test_nondiff_argnums_are_passed_as_given():
    @partial(jax.custom_vjp, nondiff_argnums=(1,))
    def power(x, n):
        return x**n

    power.defvjp(lambda x, n: (power(x, n), x), lambda n, x, ct: (n * x ** (n - 1) * ct,))
    report = fb.check_vjp(power, jnp.array([0.5, 2.0, 3.0]), 3, transforms=())
    assert report.passed and names(report.rows) == ["args[0]"] and "nondiff_argnums (1,)" in report.notes[-1]


def test_a_plain_function_with_its_own_rule():
    a, b = jax.random.normal(jax.random.PRNGKey(3), (4, 4)), jax.random.normal(jax.random.PRNGKey(4), (4, 4))
    right = fb.check_vjp(lambda a, b: a @ b, a, b, vjp=lambda a, b, ct: (ct @ b.T, a.T @ ct), transforms=())
    transposed = fb.check_vjp(lambda a, b: a @ b, a, b, vjp=lambda a, b, ct: (ct @ b, a.T @ ct), transforms=())  # square
    assert right.passed and names(transposed.failing()) == ["args[0]"]


def test_a_rule_that_raises_is_a_report_and_a_plain_function_without_a_rule_is_refused():
    report = fb.check_vjp(lambda a, b: a @ b, jnp.ones((2, 3)), jnp.ones((3, 2)), vjp=lambda a, b, ct: (ct @ b, a.T @ ct))
    assert not report.passed and report.rows[0].verdict == "raised" and "dot_general" in report.rows[0].detail
    with pytest.raises(TypeError, match="custom_vjp"):
        fb.check_vjp(lambda a: a, jnp.ones(3))


def test_the_testing_assertions_raise_with_the_table():
    fb.testing.assert_vjp_correct(logsumexp_rule(), X)
    with pytest.raises(AssertionError, match=r"X +args\[0\] +\(4, 5\) +backward wrong.*x2"):
        fb.testing.assert_vjp_correct(logsumexp_rule("scale"), X)
    fb.testing.assert_layer_correct(fb.dense(3), in_shape=(4,))
    with pytest.raises(AssertionError, match="dx"):
        broken = fb.dense(3)._replace(backward=lambda p, x, dz: (fb.layers.dense_backward(p, x, dz)[0], 2 * dz @ p["W"]))
        fb.testing.assert_layer_correct(broken, in_shape=(4,))


SQUARE_RULE = logsumexp_rule()
SCALED_RULE = logsumexp_rule("scale")


def model_with_a_scaled_rule(W, x):
    """A plain function (no rule of its own) that calls a wrong rule: checked with the rule bypassed."""
    return jnp.sum(SCALED_RULE(x @ W))


def no_rule_at_all(x):
    return jnp.sum(x ** 2)


@pytest.mark.slow  # 18 s of compiles; the rule's checks themselves run in the quick suite
def test_cli_checks_a_custom_vjp_function_from_a_file(capfd):
    from fnbackprop import cli

    assert cli.main(["check", f"{__file__}:SQUARE_RULE", "--args", "f64[4,5]"]) == 0
    assert cli.main(["check", f"{__file__}:SCALED_RULE", "--args", "f32[3,2]"]) == 1
    out, err = capfd.readouterr()
    said = " ".join(out.split())
    assert "FAIL: args[0], args[0] under jax.vmap" in said and "backward wrong | diagnosis: scale x2" in said
    assert "Traceback" not in out + err
    assert cli.main(["check", f"{__file__}:SCALED_RULE", "--args", "f64[3,2]", "--json"]) == 1
    report = json.loads(capfd.readouterr().out)
    assert report["rows"][0]["diagnosis"].startswith("scale x2")
    for argv, message in [(["--args", "q[3]"], "cannot read the argument spec 'q[3]'"), ([], "needs --args")]:
        assert cli.main(["check", f"{__file__}:SQUARE_RULE", *argv]) == 2
        assert message in capfd.readouterr().err
    assert cli.main(["check", f"{__file__}:model_with_a_scaled_rule", "--args", "f64[4,4] f64[3,4]", "--fast", "--json"]) == 1
    report = json.loads(capfd.readouterr().out)
    assert [r["name"] for r in report["rows"] if r["verdict"] == "backward wrong"][:2] == ["args[0]", "args[1]"]
    assert report["diagnosis"].startswith("scale x2") and any("fast mode" in n for n in report["notes"])
    assert cli.main(["check", f"{__file__}:no_rule_at_all", "--args", "f64[3]"]) == 2
    assert "calls no custom rule" in capfd.readouterr().err


def test_each_transform_is_a_row_and_a_rule_wrong_only_under_vmap_is_named():
    @jax.custom_vjp
    def double(x):
        return 2 * x

    def bwd(x, g):  # right eagerly and under jit; under vmap it (wrongly) halves the gradient
        return (g if type(g).__name__ == "BatchTracer" else 2 * g,)

    double.defvjp(lambda x: (double(x), x), bwd)
    report = fb.check_vjp(double, jnp.arange(3.0))
    assert [r.name for r in report.rows] == ["args[0]", "args[0] under jax.vmap", "args[0] under lax.scan",
                                             "args[0] under jax.checkpoint"]
    assert [r.name for r in report.failing()] == ["args[0] under jax.vmap"]
    assert report.failing()[0].diagnosis.startswith("scale x0.5")


def test_second_order_on_request_catches_a_rule_that_is_right_only_to_first_order():
    def sine(stop):
        @jax.custom_vjp
        def f(x):
            return jnp.sin(x)

        f.defvjp(lambda x: (f(x), x), lambda x, g: (g * (jax.lax.stop_gradient(jnp.cos(x)) if stop else jnp.cos(x)),))
        return f

    x = jnp.linspace(-1.0, 2.0, 5)
    assert fb.check_vjp(sine(stop=False), x, second_order=True, transforms=()).passed
    assert fb.check_vjp(sine(stop=True), x, transforms=()).passed  # first order alone cannot tell
    failing = fb.check_vjp(sine(stop=True), x, second_order=True, transforms=()).failing()
    assert [r.name for r in failing] == ["args[0] under second order"]


def test_the_taylor_remainder_falls_like_h_squared_for_a_correct_rule_and_like_h_for_a_wrong_one():
    """No step to choose: the exponent is fitted over three decades of h."""
    from fnbackprop.check.vjp import taylor_rate

    f = lambda leaves: jnp.sum(jnp.sin(leaves[0]) * leaves[0] ** 2)  # noqa: E731
    x = [jnp.linspace(-1.0, 2.0, 6)]
    exact = [jnp.cos(x[0]) * x[0] ** 2 + 2 * jnp.sin(x[0]) * x[0]]  # by calculus
    key = jax.random.PRNGKey(0)
    assert abs(taylor_rate(f, x, exact, key) - 2) < 0.1
    assert abs(taylor_rate(f, x, [1.01 * exact[0]], key) - 1) < 0.1
    assert "h^2.0" in fb.check_vjp(logsumexp_rule(), X, transforms=()).notes[0]
    assert "h^1.0" in fb.check_vjp(logsumexp_rule("sign"), X, transforms=()).notes[0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_below_float64_a_correct_rule_passes_with_default_options_and_a_scale_error_fails(dtype):
    """The tolerance is autodiff's own error at that precision (x2), against a float64 reference."""
    good = fb.check_vjp(logsumexp_rule(), X, dtype=dtype, transforms=())
    assert good.passed and good.tol < 0.1
    bad = fb.check_vjp(logsumexp_rule("scale"), X, dtype=dtype, transforms=())
    (row,) = bad.failing()
    assert row.name == "args[0]" and row.diagnosis.startswith("scale x") and row.ratio == pytest.approx(2, rel=0.02)
    assert fb.check_vjp(embedding_sum(), PARAMS, IDX, dtype=dtype, transforms=()).passed


def test_the_documented_examples_pass_and_only_by_design_lets_the_deliberate_ones_through():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "custom_rules.py"
    spec = importlib.util.spec_from_file_location("custom_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, (f, args, by_design) in module.examples(jax.random.PRNGKey(0)).items():
        report = fb.check_vjp(f, *args, by_design=by_design, transforms=())
        assert report.passed, name
        if by_design:
            assert {r.verdict for r in report.rows} == {"by design"} and "by design" in report.rows[0].detail
            assert not fb.check_vjp(f, *args, transforms=()).passed  # undeclared, the same rule is a wrong gradient
    nan_rule = logsumexp_rule("nan")
    assert not fb.check_vjp(nan_rule, X, by_design=True, transforms=()).passed  # by design never excuses a NaN
