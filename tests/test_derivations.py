"""The derivation audit: transcriptions agree with jax.grad and the engine; Dong's printed mistakes are flagged."""

import json

import jax
import jax.numpy as jnp
import optax
import pytest

import fnbackprop as fb
from fnbackprop import cli
from fnbackprop.derivations import audit, dong, matrix_calculus, ng
from fnbackprop.check.numerics import rel_err
from fnbackprop.train.epochs import make_optimizer

FLOAT64 = True  # conftest: the module runs with jax_enable_x64 (float64 references at 1e-10)


@pytest.fixture(scope="module")
def rows():
    return audit()


def by_equation(rows, fragment):
    (row,) = [r for r in rows if fragment in r.equation]
    return row


def test_every_verdict_is_the_expected_one(rows):
    assert all(r.as_expected for r in rows), [r for r in rows if not r.as_expected]


def test_every_source_is_covered(rows):
    sources = {r.source for r in rows}
    assert len(sources) == 5, sources  # Ng, matrix calculus, Dong, Lei, the diary


def test_correct_transcriptions_pass_to_rounding(rows):
    for r in rows:
        if r.expected:
            assert r.passed and r.max_rel_err <= 1e-12, r


def test_dongs_sign_error_is_flagged_by_descent_raising_the_cross_entropy(rows):
    row = by_equation(rows, "section 1.2, as printed")
    assert not row.passed and row.max_rel_err == pytest.approx(2.0)  # exactly -1 x the true gradient
    assert "raised the true cross-entropy" in row.detail


def test_dongs_missing_output_derivative_is_flagged(rows):
    row = by_equation(rows, "section 1.3, as printed")
    assert not row.passed and row.max_rel_err > 0.1


def test_the_five_matrix_calculus_rules_are_checked_individually(rows):
    for rule in ("G = XW", "G = WX", "G = g(X)", "G = X + C", "f = ||G||_F^2"):
        assert by_equation(rows, rule).passed


def test_cli_derivations_json_and_exit_status(capsys):
    assert cli.main(["check", "--derivations", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {"source", "equation", "passed", "max_rel_err"} <= set(entries[0])
    flagged = [e["equation"] for e in entries if not e["passed"]]
    assert len(flagged) == 2 and all("as printed" in e for e in flagged)


def test_the_audit_has_teeth(monkeypatch, capsys):
    """Plant a mistake in a transcription (the Frobenius rule without its 2): the audit must fail."""
    monkeypatch.setattr(matrix_calculus, "rule_frobenius", lambda G: G)
    assert cli.main(["check", "--derivations"]) == 1
    assert "UNEXPECTED" in capsys.readouterr().out


def test_layout_maps_round_trip(key):
    params = fb.mlp([4, 5, 3]).init(key)
    folded = dong.fold(params)
    assert folded[0].shape == (5, 5)  # (n_1, 1 + n_0): the bias column first
    assert rel_err(dong.unfold(folded), params) == 0
    assert rel_err(ng.from_ng([{"dW": p["W"], "dB": p["B"]} for p in ng.to_ng(params)]), params) == 0
    assert rel_err(matrix_calculus.from_mc(matrix_calculus.to_mc(params)), [p["W"] for p in params]) == 0


def test_dongs_l2_rule_on_the_weights_is_the_production_optimizer(key):
    """Dong's rule applied to the engine's gradients equals make_optimizer('sgd', l2=...) on the weights."""
    net = fb.mlp([4, 5, 3], hidden="sigmoid", output="sigmoid", loss="bce", init="nielsen")  # b ~ N(0, 1)
    params = net.init(key, jnp.float64)
    x, y = jax.random.normal(key, (6, 4), jnp.float64), jnp.ones((6, 3)) * 0.0
    _, grads = net.value_and_grad(params, x, y)
    eta, lam, n = 0.5, 5.0, 100
    rule = dong.unfold(dong.l2_update(dong.fold(params), dong.fold(grads), eta, lam, n))
    opt = make_optimizer("sgd", optax.constant_schedule(eta), l2=lam, n_train=n)
    updates, _ = opt.update(grads, opt.init(params), params)
    stepped = optax.apply_updates(params, updates)
    assert rel_err([p["W"] for p in rule], [p["W"] for p in stepped]) <= 1e-14
    # the literal rule also decays the bias column (it is part of W~); the engine's L2 leaves biases alone
    assert rel_err([p["b"] for p in rule], [p["b"] for p in stepped]) > 1e-4
