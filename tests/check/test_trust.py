"""A checker that cannot be fooled: non-finite numbers, kinks, special parameter values, failing user code.

Every planted mistake here is a user layer written in this file, not taken from the package, and
each is paired with a correct twin that must pass, so a check that fails everything cannot pass this
file either.
"""

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnbackprop as fb
from fnbackprop import cli
from fnbackprop.check.battery import Agreement
from fnbackprop.layers import dense
from fnbackprop.check.numerics import leaf_rel_err, noise_floor, rel_err
from fnbackprop.check.verdicts import FDSample, compare_tensor
from fnbackprop.check.verify import move_off_special_values

FLOAT64 = True  # conftest: the whole module runs with jax_enable_x64

NAN, INF = float("nan"), float("inf")


def no_params(key, in_shape):
    return {}


def elementwise(name, fn, derivative):
    """A parameter-free layer y = fn(x) whose backward is dy * derivative(x)."""
    return fb.Layer(no_params, lambda p, x: (fn(x), x), lambda p, x, dy: ({}, dy * derivative(x)), name)


def tanh_with_bad_entry(value, at=(0, 1)):
    return elementwise("tanh", jnp.tanh, lambda x: (1 - jnp.tanh(x) ** 2).at[at].set(value))


# ----- every error measure treats a non-finite number as an infinite error -------------------------------
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("side", ["first", "second", "both"])
def test_rel_err_is_infinite_for_any_non_finite_entry(bad, side):
    clean = np.array([1.0, 2.0, 3.0])
    dirty = clean.copy()
    dirty[1] = bad
    a, b = (dirty, clean) if side == "first" else (clean, dirty) if side == "second" else (dirty, dirty)
    assert leaf_rel_err(a, b) == INF
    assert rel_err({"x": clean, "y": a}, {"x": clean, "y": b}) == INF  # a later leaf cannot hide behind a clean one
    assert rel_err([a, clean], [b, clean]) == INF  # nor an earlier one


def test_rel_err_with_a_non_finite_floor_or_mismatched_trees_is_infinite():
    x = np.ones(3)
    assert leaf_rel_err(x, x, floor=NAN) == INF
    assert rel_err([x], [x, x]) == INF and rel_err(x, np.ones(4)) == INF
    assert rel_err(x, x) == 0.0 and rel_err(np.zeros(3), np.zeros(3)) == 0.0  # the clean cases are unchanged


def test_a_non_finite_reference_does_not_lift_the_noise_floor_of_the_others():
    assert noise_floor([np.array([NAN]), np.array([1.0])], jnp.float64, 1e-10) == 0.0
    assert noise_floor([np.array([2.0])], jnp.float64, 1e-10) == pytest.approx(10 * 2.220446e-16 / 1e-10 * 2.0)


def test_an_agreement_with_a_nan_error_does_not_pass():
    assert not Agreement(NAN, 0.0, 0.0, 0.0).passed()
    assert not Agreement(0.0, 0.0, 0.0, NAN).passed()
    assert Agreement(0.0, 0.0, 0.0, 0.0).passed()


@pytest.mark.parametrize("bad", [NAN, INF])
def test_autodiff_non_finite_where_the_function_is_finite_leaves_the_judgement_to_finite_differences(bad):
    """A differentiation convention: autodiff NaN or inf at (1, 1), the finite differences finite there. A rule
    value between their one-sided slopes (4.9 and 5.1 around the central 5) passes as `convention`; one
    outside them (6) is `backward wrong`; a rule non-finite itself stays `non-finite` (the test above)."""
    auto = np.arange(1.0, 7.0).reshape(2, 3)
    slopes = np.tile(auto.reshape(-1), (4, 1))
    slopes[[0, 2], 4], slopes[[1, 3], 4] = 5.1, 4.9  # a kink at entry (1, 1): slopes 4.9 on one side, 5.1 on the other
    sample = FDSample(np.arange(6), slopes, np.zeros(6))
    broken = auto.copy()
    broken[1, 1] = bad
    for value, verdict in ((5.0, "convention"), (4.95, "convention"), (6.0, "backward wrong")):
        hand = auto.copy()
        hand[1, 1] = value
        row = compare_tensor("t", hand, broken, 1e-10, jitted=hand, sample=sample)
        assert row.verdict == verdict and "(1, 1)" in row.detail, row
        assert row.ok == (verdict == "convention")


@pytest.mark.parametrize("where", ["hand", "jitted", "autodiff", "finite differences"])
@pytest.mark.parametrize("bad", [NAN, INF])
def test_compare_tensor_fails_a_non_finite_entry_in_any_argument_and_names_it(where, bad):
    """Non-finite autodiff fails too where the finite differences cannot judge: here entry (1, 1) is not
    among those they probed."""
    auto = np.arange(1.0, 7.0).reshape(2, 3)
    arrays = {"hand": auto.copy(), "jitted": auto.copy(), "autodiff": auto.copy()}
    slopes = np.tile(auto.reshape(-1), (4, 1))
    if where == "finite differences":
        slopes[1, 4] = bad
    else:
        arrays[where][1, 1] = bad
    probed = np.arange(6) if where != "autodiff" else np.array([0, 1, 2, 3, 5])
    sample = FDSample(probed, slopes[:, probed], np.zeros(probed.size))
    row = compare_tensor("t", arrays["hand"], arrays["autodiff"], 1e-10, jitted=arrays["jitted"], sample=sample)
    assert row.verdict == "non-finite" and not row.ok
    names = {"hand": "hand gradient is", "jitted": "under jax.jit", "autodiff": "autodiff", "finite differences": "finite differences"}
    assert "(1, 1)" in row.detail and names[where] in row.detail


# ----- the same through check_layer and the CLI -------------------------------------------------------------
@pytest.mark.parametrize("bad", [NAN, INF])
def test_a_layer_whose_backward_returns_a_non_finite_entry_fails(key, bad):
    report = fb.check_layer(tanh_with_bad_entry(bad), key, in_shape=(5,))
    (row,) = report.failing()
    assert not report.passed and row.name == "dx" and row.verdict == "non-finite" and "(0, 1)" in row.detail


def test_a_forward_that_is_not_finite_next_to_the_point_fails_in_the_finite_differences(key):
    # y = x for x >= 0, NaN below: finite at x = 0, but f(x - h) is NaN, so nothing there can be judged
    layer = elementwise("half-line", lambda x: jnp.where(x >= 0, x, jnp.nan), lambda x: jnp.ones_like(x))
    report = fb.check_layer(layer, key, jnp.array([[0.0, 1.0, 2.0]]))
    assert not report.passed and report.rows[0].verdict == "non-finite" and "finite differences" in report.rows[0].detail


def test_a_backward_that_is_not_finite_only_under_jit_fails(key):
    def derivative(x):  # NaN in the traced (jitted) call only
        return jnp.full_like(x, jnp.nan) if isinstance(x, jax.core.Tracer) else 1 - jnp.tanh(x) ** 2

    report = fb.check_layer(elementwise("tanh", jnp.tanh, derivative), key, in_shape=(4,))
    assert not report.passed and report.rows[0].verdict == "non-finite" and "jax.jit" in report.rows[0].detail


# ----- kinks: excused only within the one-sided slopes ----------------------------------------------------
AT_KINKS = jnp.array([[0.0, 1.0, -2.0, 0.0], [0.5, 0.0, 0.0, -1.0]])


def relu_with_value_at_zero(value, scale=1.0):
    return elementwise(f"relu(0)={value}", lambda x: scale * jax.nn.relu(x),
                       lambda x: scale * jnp.where(x > 0, 1.0, jnp.where(x == 0, value, 0.0)))


@pytest.mark.parametrize("value", [-1000.0, 2.0, -0.5])
def test_a_value_at_the_kink_outside_the_one_sided_slopes_is_wrong(key, value):
    report = fb.check_layer(relu_with_value_at_zero(value), key, AT_KINKS)
    (row,) = report.rows
    assert not report.passed and row.verdict == "backward wrong" and "outside the one-sided slopes" in row.detail


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_any_value_between_the_one_sided_slopes_is_a_possible_derivative(key, value):
    report = fb.check_layer(relu_with_value_at_zero(value), key, AT_KINKS)
    assert report.passed and report.rows[0].verdict == "kink" and report.rows[0].kinks == 4


def test_kinks_are_found_on_gradients_of_any_scale(key):
    """A slope jump of 1e-5 on gradients of 1e-5: still a kink, and a wrong value there still wrong."""
    good = fb.check_layer(relu_with_value_at_zero(1.0, scale=1e-5), key, AT_KINKS)
    assert good.passed and good.rows[0].kinks == 4
    bad = fb.check_layer(relu_with_value_at_zero(3.0, scale=1e-5), key, AT_KINKS)
    assert not bad.passed and bad.rows[0].verdict == "backward wrong"


def test_a_kink_close_to_the_point_but_not_at_it_is_no_excuse_and_no_failure(key):
    x = jnp.array([[3e-6, -3e-6]])  # both within the step h = 6e-6 of ReLU's kink, neither on it
    relu = elementwise("relu", jax.nn.relu, lambda x: (x > 0).astype(x.dtype))
    assert fb.check_layer(relu, key, x).passed
    wrong_sign = elementwise("relu", jax.nn.relu, lambda x: (x < 0).astype(x.dtype))  # wrong at exactly these entries
    (row,) = fb.check_layer(wrong_sign, key, x).rows
    assert row.verdict == "backward wrong" and "kink" not in row.detail and row.kinks == 0


# ----- special parameter values: moved off when the checker draws them -------------------------------------
class Gate(NamedTuple):
    """y = (x + t) * s, initialised at s = 1, t = 0: values at which forgotten factors do not show."""

    forget: str = ""

    def init(self, key, in_shape):
        return {"s": jnp.ones(in_shape), "t": jnp.zeros(in_shape)}

    def forward(self, params, x):
        return (x + params["t"]) * params["s"], x

    def backward(self, params, x, dy):
        s = 1.0 if self.forget == "s in dx" else params["s"]
        dt = jnp.sum(dy, 0) if self.forget == "s in dt" else jnp.sum(dy * params["s"], 0)
        ds = jnp.sum(dy * x, 0) if self.forget == "t in ds" else jnp.sum(dy * (x + params["t"]), 0)
        return {"s": ds, "t": dt}, dy * s


@pytest.mark.parametrize("forget", ["s in dx", "s in dt", "t in ds"])
def test_a_factor_hidden_by_an_initial_one_or_zero_is_found(key, forget):
    assert fb.check_layer(Gate(), key, in_shape=(5,)).passed
    report = fb.check_layer(Gate(forget), key, in_shape=(5,))
    assert not report.passed and "moved off special values" in report.notes[0]
    # at the initial values themselves the mistake is invisible: that is what moving them prevents
    at_init = fb.check_layer(Gate(forget), key, in_shape=(5,), params=Gate().init(key, (5,)))
    assert at_init.passed and at_init.notes == ()


def test_moving_off_special_values_keeps_signs_and_breaks_ties(key):
    moved = move_off_special_values(key, {"one": jnp.ones(50), "zero": jnp.zeros(50), "w": jnp.linspace(-1, 1, 50),
                                          "count": jnp.arange(3)})
    assert 0.5 <= float(moved["one"].min()) and float(moved["one"].max()) <= 1.5
    assert len(np.unique(moved["one"])) == 50 and len(np.unique(moved["zero"])) == 50
    assert float(jnp.max(jnp.abs(moved["zero"]))) <= 0.5 and float(jnp.max(jnp.abs(moved["zero"]))) > 0.1
    assert float(jnp.max(jnp.abs(moved["w"] - jnp.linspace(-1, 1, 50)))) <= 0.5 * float(jnp.std(jnp.linspace(-1, 1, 50)))
    assert moved["count"].dtype == jnp.arange(3).dtype and (moved["count"] == jnp.arange(3)).all()  # integers untouched


# ----- user code that fails is a finding --------------------------------------------------------------------
class Scale(NamedTuple):
    """y = x * s; `mode` plants one way for user code to fail."""

    mode: str = ""

    def init(self, key, in_shape):
        if self.mode == "init raises":
            raise KeyError("no such init")
        return {"s": 1 + jax.random.normal(key, in_shape)}

    def forward(self, params, x):
        if self.mode == "forward raises":
            return x @ params["s"].reshape(3, 1), x
        return x * params["s"], x

    def backward(self, params, x, dy):
        ds, dx = jnp.sum(dy * x, 0), dy * params["s"]
        return {
            "backward raises": lambda: 1 / 0,
            "shapes that do not combine": lambda: ({"s": dy @ x}, dx),
            "missing leaf": lambda: ({}, dx),
            "extra leaf": lambda: ({"s": ds, "t": ds}, dx),
            "not a pair": lambda: dx,
            "not an array": lambda: ({"s": "ds"}, dx),
            "dx a list": lambda: ({"s": ds}, [dx]),
            "wrong shape": lambda: ({"s": ds[:2]}, dx),
            "wrong dtype": lambda: ({"s": ds.astype(jnp.float32)}, dx),
        }.get(self.mode, lambda: ({"s": ds}, dx))()


@pytest.mark.parametrize("mode,verdict,words", [
    ("init raises", "raised", "KeyError"),
    ("forward raises", "raised", "TypeError"),
    ("backward raises", "raised", "ZeroDivisionError"),
    ("shapes that do not combine", "raised", "TypeError"),
    ("missing leaf", "structure mismatch", "expected the structure {'s': float64[5]}"),
    ("extra leaf", "structure mismatch", "'t'"),
    ("not a pair", "structure mismatch", "must return a pair (dparams, dx)"),
    ("not an array", "structure mismatch", "not arrays"),
    ("dx a list", "structure mismatch", "dx is [float64[4, 5]]"),
    ("wrong shape", "shape/dtype mismatch", "hand is float64[2], expected float64[5]"),
    ("wrong dtype", "shape/dtype mismatch", "hand is float32[5], expected float64[5]"),
])
def test_user_code_that_fails_becomes_a_failing_report(key, mode, verdict, words):
    assert fb.check_layer(Scale(), key, in_shape=(5,)).passed  # the control
    report = fb.check_layer(Scale(mode), key, in_shape=(5,))
    assert not report.passed
    (row,) = report.failing()
    assert row.verdict == verdict and words in row.detail, row


def test_a_raising_layer_inside_a_network_and_a_raising_head_are_reports_too(key):
    net = fb.network([dense(5), Scale("backward raises"), dense(3)], (4,))
    report = fb.check_network(net, key)
    assert not report.passed and report.rows[0].verdict == "raised" and "ZeroDivisionError" in report.rows[0].detail
    assert "ZeroDivisionError" in report.traceback

    class BrokenHead(fb.Head):
        def backward(self, z, y):
            raise NotImplementedError("derive me")

    head = BrokenHead(fb.ACTIVATIONS["identity"], fb.LOSSES["mse"])
    report = fb.check_loss(head, key)
    assert not report.passed and report.rows[0].verdict == "raised" and "derive me" in report.rows[0].detail


THIS_FILE = __file__


@pytest.mark.parametrize("target,shape", [("Scale", "5"), ("GATE_FORGETS_S", "5"), ("TANH_WITH_NAN", "4"),
                                          ("RAISES", "5"), ("WRONG_SHAPES", "5")])
def test_cli_fails_every_planted_layer_with_exit_1_and_no_traceback(capfd, target, shape):
    expected = 0 if target == "Scale" else 1
    assert cli.main(["check", f"{THIS_FILE}:{target}", "--shape", shape]) == expected
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert ("PASS" if expected == 0 else "FAIL") in out


def test_cli_traceback_flag_shows_where_the_user_code_raised(capfd):
    assert cli.main(["check", f"{THIS_FILE}:RAISES", "--shape", "5", "--traceback"]) == 1
    assert "Traceback" in capfd.readouterr().out
    assert cli.main(["check", f"{THIS_FILE}:RAISES", "--shape", "5", "--json"]) == 1
    report = json.loads(capfd.readouterr().out)
    assert report["rows"][0]["verdict"] == "raised" and not report["passed"]


GATE_FORGETS_S = Gate("s in dx")
TANH_WITH_NAN = tanh_with_bad_entry(NAN)
RAISES = Scale("backward raises")
WRONG_SHAPES = Scale("shapes that do not combine")



# ----- the diagnosis of a failing tensor ------------------------------------------------------------------
def test_diagnosis_names_each_kind_of_mistake():
    from fnbackprop.check.diagnosis import diagnose

    rng = np.random.default_rng(0)
    true, other = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    dy, y = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    cases = {
        "scale x8": 8 * true, "sign": -true, "transpose": true.T, "zero": np.zeros((3, 3)),
        "swapped": other, "non-finite": np.where(np.eye(3) > 0, np.nan, true),
        "missing-derivative": dy, "activation-for-derivative": dy * y, "unknown": true + rng.normal(size=(3, 3)),
    }
    for kind, hand in cases.items():
        assert diagnose(hand, true, {"params['b']": other}, (dy, y)).startswith(kind), kind
    assert diagnose(np.tile(true[None], (4, 1, 1)) / 4, true).startswith("broadcast-sum")  # (4, 3, 3) summed is true
    assert diagnose(true * (1 + 1e-3), true).startswith("scale x1.001")  # a small factor is still a factor


def test_a_tuple_of_gradients_for_a_list_of_parameters_is_the_same_structure(key):
    class ListParams(NamedTuple):
        def init(self, key, in_shape):
            return [jnp.ones(in_shape), jnp.zeros(in_shape)]

        def forward(self, params, x):
            return x * params[0] + params[1], x

        def backward(self, params, x, dy):
            return (jnp.sum(dy * x, 0), jnp.sum(dy, 0)), dy * params[0]

    assert fb.check_layer(ListParams(), key, in_shape=(3,)).passed
