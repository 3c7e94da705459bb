"""`fb.audit` and `fnbackprop audit`: a package of custom rules written here (correct ones, a wrong one, one
that needs a domain, functions calling them, a submodule), audited as a user would audit an installed one."""

import json
import textwrap

import pytest

import fnbackprop as fb
from fnbackprop import cli
from fnbackprop.check.audit import points_of, read_specs

PACKAGE = {
    "__init__.py": '''
        import jax
        import jax.numpy as jnp
        from . import inner

        @jax.custom_jvp
        def softplus(x):
            return jnp.logaddexp(x, 0.0)

        softplus.defjvps(lambda t, ans, x: t * jax.nn.sigmoid(x))

        @jax.custom_vjp
        def cube(x):
            return x ** 3

        cube.defvjp(lambda x: (cube(x), x), lambda x, ct: (2 * x ** 2 * ct,))   # the mistake: 2 where 3 belongs

        @jax.custom_jvp
        def log(x):
            return jnp.log(x)

        log.defjvps(lambda t, ans, x: t / x)

        def smooth_relu(x, beta=1.0):  # calls a rule
            return softplus(beta * x) / beta

        def plain(x):  # calls none
            return jnp.sin(x)

        def _private(x):
            return cube(x)
    ''',
    "inner.py": '''
        import jax
        import jax.numpy as jnp

        @jax.custom_jvp
        def norm(x):
            return jnp.sqrt(jnp.sum(x ** 2))

        @norm.defjvp
        def _(primals, tangents):
            (x,), (t,) = primals, tangents
            n = norm(x)
            return n, jnp.sum(jnp.where(n == 0, 0.0, x / jnp.where(n == 0, 1.0, n)) * t)
    ''',
}


@pytest.fixture
def package(tmp_path, monkeypatch):
    folder = tmp_path / "rulepkg"
    folder.mkdir()
    for name, source in PACKAGE.items():
        (folder / name).write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys

    sys.modules.pop("rulepkg", None)
    sys.modules.pop("rulepkg.inner", None)
    return importlib.import_module("rulepkg")


def test_the_audit_finds_every_rule_and_caller_and_judges_each(package):
    rows = {r.name: r for r in fb.audit(package, specs={"rulepkg.log": "f64[4]>0"})}
    assert set(rows) == {"rulepkg.softplus", "rulepkg.cube", "rulepkg.log", "rulepkg.smooth_relu", "rulepkg.inner.norm"}
    assert {n: r.kind for n, r in rows.items()}["rulepkg.smooth_relu"] == "calls rules"
    assert rows["rulepkg.cube"].verdict == "fail" and rows["rulepkg.cube"].diagnosis.startswith("scale x0.666667")
    for name in ("rulepkg.softplus", "rulepkg.log", "rulepkg.smooth_relu", "rulepkg.inner.norm"):
        assert rows[name].verdict == "pass", rows[name]
    assert rows["rulepkg.inner.norm"].points == ["random", "zeros", "ties"] and "convention at zeros" in rows["rulepkg.inner.norm"].detail
    assert "zeros" not in rows["rulepkg.log"].points  # a positive domain has no zero point
    assert rows["rulepkg.softplus"].reference == "reverse mode"


def test_a_rule_outside_its_domain_everywhere_is_skipped_with_the_reason(package):
    rows = {r.name: r for r in fb.audit(package, specs={"rulepkg.log": "f64[4](-3,-1)"})}
    assert rows["rulepkg.log"].verdict == "skipped" and "no drawn point is inside" in rows["rulepkg.log"].detail


def test_specs_read_domains_and_their_points():
    (a, b, c) = read_specs("f64[4]>0 f64[2,3](0,1) i32[5]<6")
    assert (a.low, a.high, b.shape, b.low, b.high, c.bound) == (0.0, None, (2, 3), 0.0, 1.0, 6)
    assert points_of([a]) == ["random", "ties"] and points_of([b]) == ["random", "ties", "low edge", "high edge"]
    with pytest.raises(ValueError, match="cannot read the argument spec 'f64\\[4\\]>'"):
        read_specs("f64[4]>")


def test_the_command_prints_the_table_and_exits_1_on_a_failing_rule(package, tmp_path, capsys):
    specs = tmp_path / "specs.toml"
    specs.write_text('[specs]\n"rulepkg.log" = "f64[4]>0"\n')
    assert cli.main(["audit", "rulepkg", "--specs", str(specs), "--json"]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["rulepkg.cube"]["verdict"] == "fail" and rows["rulepkg.log"]["verdict"] == "pass"


@pytest.mark.parametrize("argv, said", [(["no_such_module_here"], "cannot import no_such_module_here"),
                                        (["rulepkg", "--specs", "absent.toml"], "no specs file absent.toml")])
def test_the_command_refuses_bad_input_in_one_line(package, capfd, argv, said):
    assert cli.main(["audit", *argv]) == 2
    out, err = capfd.readouterr()
    assert said in out + err and (out + err).count("\n") == 1


def test_points_on_the_edge_of_the_domain_or_at_a_jump_are_not_checked():
    """log at 0 (not finite), sqrt at 0 (finite, but not next to it on one side), a step (a jump): none is a
    point where a derivative exists to check; a smooth function at 0 is."""
    import jax
    import jax.numpy as jnp

    from fnbackprop.check.audit import inside_domain

    key = jax.random.PRNGKey(0)
    with jax.enable_x64(True):
        zeros = [jnp.zeros(4, jnp.float64)]
        assert not inside_domain(jnp.log, zeros, key)
        assert not inside_domain(jnp.sqrt, zeros, key)
        assert not inside_domain(lambda x: jnp.where(x >= 0, 1.0, 0.0), zeros, key)
        assert inside_domain(jnp.sin, zeros, key) and inside_domain(jnp.abs, zeros, key)  # a kink is inside
