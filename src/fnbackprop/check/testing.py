"""Use the checker in your own test suite: assertions whose message is the report table.

    from fnbackprop.testing import assert_vjp_correct, assert_layer_correct

    def test_my_logsumexp():
        assert_vjp_correct(my_logsumexp, jnp.ones((4, 5)))          # AssertionError: the failing rows

    def test_my_layer():
        assert_layer_correct(MyLayer(), in_shape=(8,))
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from .verdicts import Report
from .verify import check_layer
from .vjp import check_vjp

Array = jax.Array


def report_text(report: Report) -> str:
    """The report as a plain-text table: `str(report)`."""
    return str(report)


def _assert_passed(report: Report) -> Report:
    if not report.passed:
        raise AssertionError("\n" + report_text(report)
                             + (f"\n\ntraceback of the failing code:\n{report.traceback}" if report.traceback else ""))
    return report


def assert_vjp_correct(f: Callable, *args: Any, **options: Any) -> Report:
    """`fb.check_vjp(f, *args, **options)`, raising AssertionError with the table unless it passes."""
    return _assert_passed(check_vjp(f, *args, **options))


def assert_layer_correct(layer: Any, key: Array | None = None, x: Array | None = None, **options: Any) -> Report:
    """`fb.check_layer(layer, key, x, **options)` (key defaults to PRNGKey(0)), raising AssertionError
    with the table unless it passes."""
    return _assert_passed(check_layer(layer, jax.random.PRNGKey(0) if key is None else key, x, **options))
