"""check_vjp on a catalogue of custom_vjp rules written outside the package (`vjp_catalogue.py`):
every planted mistake fails and every correct rule passes, in float64 and in float32, and the
diagnosis names the kind each mistake was planted as; then property tests over shapes and dtypes."""

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings

import fnbackprop as fb
from fnbackprop import strategies as fbst
from vjp_catalogue import CATALOGUE, affine, diagnosis_word

FLOAT64 = True

#: the acceptance threshold for the diagnosis on a catalogue of planted mistakes (at least 90%)
DIAGNOSIS_BAR = 0.9


@pytest.fixture(scope="module", params=[jnp.float64, pytest.param(jnp.float32, marks=pytest.mark.slow)],
                ids=["float64", "float32"])  # float32: the second `.ci/run` step (the suite's time budget)
def reports(request):
    return {name: fb.check_vjp(case.fn, *case.args, dtype=request.param, transforms=()) for name, case in CATALOGUE.items()}


def test_every_planted_mistake_fails_and_every_correct_rule_passes(reports):
    wrong = {name for name, case in CATALOGUE.items() if (reports[name].passed) != (case.kind is None)}
    assert wrong == set()
    assert sum(case.kind is None for case in CATALOGUE.values()) == 11 and len(CATALOGUE) == 47


def test_the_diagnosis_names_each_planted_kind(reports):
    planted = {name: case.kind for name, case in CATALOGUE.items() if case.kind}
    named = {name: diagnosis_word(reports[name].diagnosis) for name in planted}
    accuracy = sum(named[n] == k for n, k in planted.items()) / len(planted)
    assert accuracy >= DIAGNOSIS_BAR, {n: (k, reports[n].diagnosis) for n, k in planted.items() if named[n] != k}
    assert named == planted  # all 36 on this catalogue; the threshold above is what a new catalogue is held to


def test_the_evidence_follows_the_word(reports):
    assert reports["affine: db = mean"].diagnosis.startswith("scale x0.333333: hand / autodiff = 0.333333")  # m = 3
    assert "summed over the axes [0]" in reports["affine: db not summed"].diagnosis
    assert "tanh" in reports["tanh layer: tanh' missing"].diagnosis
    assert "args[1]" in reports["matmul: swapped"].diagnosis  # dA = the true dB


@settings(max_examples=6, deadline=None)
@given(fbst.broadcast_shapes(max_dims=2, max_side=4), fbst.float_dtypes(), fbst.seeds())
def test_a_bias_gradient_over_any_broadcast_is_summed_or_named(shapes, dtype, seed):
    x_shape, b_shape = shapes
    x, b = fbst.normal(jax.random.PRNGKey(seed), [x_shape, b_shape])

    def bias_rule(summed):
        @jax.custom_vjp
        def add(x, b):
            return x + b

        def bwd(_, g):
            if not summed:
                return g, g
            lead = len(g.shape) - len(b_shape)
            axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(b_shape) if s == 1 and g.shape[lead + i] != 1)
            return g, g.sum(axes).reshape(b_shape)

        add.defvjp(lambda x, b: (x + b, None), bwd)
        return add

    assert fb.check_vjp(bias_rule(True), x, b, dtype=dtype, transforms=()).passed
    if tuple(x_shape) != tuple(b_shape):  # something was broadcast: not summing it is a named mistake
        report = fb.check_vjp(bias_rule(False), x, b, dtype=dtype, transforms=())
        assert not report.passed and report.diagnosis.startswith("broadcast-sum")


@settings(max_examples=4, deadline=None)
@given(fbst.matmul_shapes(max_side=5, square=True), fbst.seeds())
def test_w_for_w_transpose_is_named_at_any_square_size(shapes, seed):
    m, k, n = shapes
    x, W, b = fbst.normal(jax.random.PRNGKey(seed), [(m, k), (k, n), (n,)])
    if k == 1:
        return  # a 1x1 W is its own transpose: no mistake to find
    report = fb.check_vjp(affine("dx = g W"), x, W, b, transforms=())
    assert not report.passed and report.diagnosis.startswith("transpose")
