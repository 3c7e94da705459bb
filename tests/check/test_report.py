"""`str(report)`: the plain-text table a user sees with `print(report)`, and one verdict line that states
each kind of mistake once. Reports are built by hand here (no compile); `test_vjp.py` reads the same
table off a real failing rule."""

import pytest

from fnbackprop.check.verdicts import Report, TensorRow


def row(name: str, verdict: str = "ok", diagnosis: str = "", detail: str = "") -> TensorRow:
    return TensorRow(name, (4, 3), True, 0.0, 0.0 if verdict == "ok" else 0.75, (0, 0), 1.0 if verdict == "ok" else 4.0,
                     float("nan"), 0, verdict, 0.0, detail, diagnosis)


SCALE = "scale x4: hand / autodiff = 4 +- 0 over {} entries"


def test_a_passing_report_prints_a_header_one_row_per_tensor_and_pass():
    report = Report("my layer", [row("params['W']"), row("dx")], 0.0, 1e-10, 1e-6, [], ("checked at drawn parameters",))
    lines = str(report).splitlines()
    assert lines[1].split() == ["tensor", "shape", "verdict", "rel", "err", "hand/auto", "detail"]
    assert [line.split()[0] for line in lines[2:4]] == ["params['W']", "dx"]
    assert lines[4] == "PASS: every tensor of my layer agrees"
    assert lines[5] == "note: checked at drawn parameters" and len(lines) == 6


def test_a_failing_report_marks_its_rows_and_names_each_kind_of_mistake_once():
    """A missing 1/m scales every tensor: four failing rows whose diagnoses differ only in their evidence."""
    rows = [row(name, "backward wrong", SCALE.format(n), f"hand {n} vs autodiff") for n, name in
            enumerate(["params['W']", "params['b']", "dx", "upstream of layer 1"], start=1)] + [row("extra", "ok")]
    report = Report("net", rows, 0.0, 1e-10, 1e-6, [])
    text = str(report)
    assert [line.split()[1] for line in text.splitlines() if line.startswith("X ")] == ["params['W']", "params['b']", "dx",
                                                                                       "upstream"]
    verdict = report.verdict_line()
    assert verdict in text.splitlines()
    assert verdict.startswith("FAIL: params['W'], params['b'], dx, upstream of layer 1: backward wrong")
    assert verdict.count("scale x4") == 1 and verdict.endswith(SCALE.format(1))
    assert text.count("diagnosis") == 1


def test_two_kinds_of_mistake_are_each_named_with_their_tensors():
    rows = [row("params['W']", "backward wrong", "transpose: hand = autodiff^T"),
            row("dx", "non-finite", "", "NaN at (0, 1)"), row("params['b']", "backward wrong", SCALE.format(2))]
    verdict = Report("net", rows, 0.0, 1e-10, 1e-6, []).verdict_line()
    assert verdict == ("FAIL: params['W'], params['b']: backward wrong; dx: non-finite | diagnosis: "
                       "transpose: hand = autodiff^T (params['W']); " + SCALE.format(2) + " (params['b'])")


def test_the_pytest_helpers_fail_with_the_table():
    from fnbackprop.check.testing import _assert_passed

    report = Report("net", [row("dx", "backward wrong", SCALE.format(1))], 0.0, 1e-10, 1e-6, ["float32 at float64's tolerance"])
    with pytest.raises(AssertionError) as raised:
        _assert_passed(report)
    assert str(raised.value).strip() == str(report)
    assert str(report).splitlines()[-1] == "warning: float32 at float64's tolerance"
    passing = Report("net", [row("dx")], 0.0, 1e-10, 1e-6, [])
    assert _assert_passed(passing) is passing
