"""`fnbackprop bench --gpt-only`'s start-up timing: whole processes of `fnbackprop train --model gpt`, cold then warm."""

import pytest

from fnbackprop.bench.startup import measure_startup, startup_targets


def test_the_targets_are_three_seconds_warm_and_eight_cold():
    rows = startup_targets({"warm_first_iteration_s": 2.9, "cold_first_iteration_s": 8.2})
    assert [met for _, met, _ in rows] == [True, False]


@pytest.mark.slow
def test_a_warm_run_loads_what_the_cold_one_compiled():
    """One pair on a made-up text (no data needed): the cold run compiles every program (seconds), the warm one
    only loads them, so it reaches its first iteration sooner; both numbers are real start-ups (a few seconds)."""
    result = measure_startup(pairs=1)
    cold, warm = result["runs"]["cold"][0], result["runs"]["warm"][0]
    assert 0.5 < warm["first_iteration_s"] < cold["first_iteration_s"] < cold["whole_s"]
    assert cold["first_iteration_s"] - warm["first_iteration_s"] > 1.0  # compiling the chunk alone takes over a second
