"""`str(report)`: the plain-text table a user sees with `print(report)`, and one verdict line that states
each kind of mistake once."""

import jax

import fnbackprop as fb
from fnbackprop.check.mutations import MUTATIONS


def test_a_passing_report_prints_one_row_per_tensor_and_pass():
    net = fb.mlp([4, 3, 2])
    report = fb.check_network(net, jax.random.PRNGKey(0))
    lines = str(report).splitlines()
    assert lines[1].split()[:3] == ["tensor", "shape", "verdict"]
    rows = lines[2:2 + len(report.rows)]
    assert [line.split()[0] for line in rows] == [r.name.split()[0] for r in report.rows]
    assert not any(line.startswith("X") for line in rows)
    assert lines[2 + len(report.rows)] == f"PASS: every tensor of {report.subject} agrees"


def test_a_failing_report_marks_its_rows_and_names_the_mistake_once():
    """A missing 1/m scales every gradient by the batch size: twelve failing tensors, one kind of mistake."""
    report = fb.check_network(MUTATIONS["drop 1/m"](fb.mlp([4, 3, 3, 2])), jax.random.PRNGKey(0), batch=4)
    text = str(report)
    failing = [line for line in text.splitlines() if line.startswith("X ")]
    assert len(failing) == len(report.failing()) > 1
    verdict = next(line for line in text.splitlines() if line.startswith("FAIL"))
    assert verdict == report.verdict_line()
    assert verdict.count("scale x4") == 1 and verdict.count("backward wrong") == 1
    assert text.count("diagnosis:") == 1


def test_the_pytest_helpers_show_the_same_table():
    report = fb.check_network(fb.mlp([4, 3, 2]), jax.random.PRNGKey(0))
    assert fb.testing.report_text(report) == str(report)
