"""The agreement battery over every built-in component, and `fnbackprop check` on the command line."""

import json

import jax
import pytest

from fnbackprop import cli
from fnbackprop.activations import ACTIVATIONS
from fnbackprop.check.battery import battery, valid_heads
from fnbackprop.check.numerics import finite_difference_grad

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)


@pytest.fixture(scope="module")
def rows():
    return battery(jax.random.PRNGKey(0))


@pytest.mark.slow  # the whole battery: 25 s of finite differences (suite time)
def test_battery_covers_every_activation_and_valid_head(rows):
    names = {r.component for r in rows}
    assert {f"hidden {g}" for g, a in ACTIVATIONS.items() if a.hidden_ok} <= names
    assert {f"output {o} + {l}" for o, l in valid_heads()} <= names


@pytest.mark.slow  # the whole battery: 25 s of finite differences (suite time)
def test_every_component_agrees_with_all_three_references(rows):
    """float64: hand = jax.grad to 1e-10, and both = central differences to 1e-6 (see numerics)."""
    bad = [r for r in rows if not r.passed]
    assert not bad, bad


def test_finite_differences_are_accurate_on_a_known_gradient():
    """f(w) = sum(sin(w) * w^3) has gradient cos(w) w^3 + 3 sin(w) w^2, by calculus, not by code."""
    w = jax.numpy.linspace(-2.0, 3.0, 7, dtype=jax.numpy.float64)
    fd = finite_difference_grad(lambda v: jax.numpy.sum(jax.numpy.sin(v) * v**3), w)
    exact = jax.numpy.cos(w) * w**3 + 3 * jax.numpy.sin(w) * w**2
    assert float(jax.numpy.max(jax.numpy.abs(fd - exact))) < 1e-8


def test_finite_differences_refuse_float32():
    with pytest.raises(TypeError, match="float64"):
        finite_difference_grad(lambda v: v.sum(), jax.numpy.ones(3, jax.numpy.float32))


def test_cli_check_prints_a_table_and_exits_zero(capsys):
    assert cli.main(["check", "--only", "hidden tanh"]) == 0
    out = capsys.readouterr().out
    assert "hidden tanh" in out and "agree" in out


def test_cli_check_json(capsys):
    assert cli.main(["check", "--only", "softmax + cross_entropy", "--json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert [r["component"] for r in rows] == ["output softmax + cross_entropy"] and rows[0]["passed"]


def test_cli_check_exits_nonzero_on_disagreement(monkeypatch, capsys):
    """Plant a wrong derivative in the registry: the command must say DISAGREE and exit 1."""
    import dataclasses
    wrong = dataclasses.replace(ACTIVATIONS["tanh"], derivative=lambda z, a: 1 - a)
    monkeypatch.setitem(ACTIVATIONS, "tanh", wrong)
    assert cli.main(["check", "--only", "hidden tanh"]) == 1
    assert "DISAGREE" in capsys.readouterr().out


def test_cli_check_unknown_filter(capsys):
    assert cli.main(["check", "--only", "no-such-component"]) == 2
