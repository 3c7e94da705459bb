"""Test settings: float32 by default, as users run; float64 where a test asks for it; lean hypothesis.

A module that compares against float64 references at 1e-10 sets `FLOAT64 = True` (every test and
module fixture in it then runs with jax_enable_x64); a single test asks for the `x64` fixture.
"""

import os
from pathlib import Path

import jax
import pytest
from hypothesis import HealthCheck, settings

#: XLA's LLVM backend without optimisation passes: compiles about 30% faster, the same operations in
#: the same order (no fast-math either way), so every tolerance stays as it is
QUICK_XLA_FLAG = "--xla_backend_optimization_level=0"


#: JAX's persistent compilation cache for the test run, inside the checkout (`.ci/run` starts without it)
COMPILE_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "jax-tests"


def pytest_configure(config):
    """The quick suite (every run but `-m slow`) compiles with QUICK_XLA_FLAG: JAX compiles are most of
    its time. The slow step keeps XLA's defaults, as users run, so both settings are tested in CI.
    Set before the first computation: XLA reads its flags when the CPU backend starts.

    Every compiled program also goes to JAX's persistent cache in COMPILE_CACHE, so a program that
    another test file (or the other worker) compiled already is read, not compiled again: the checks
    build new closures around the same networks, and XLA's programs are keyed by their text, flags
    and backend, so the cache never hands one program another's code."""
    if config.getoption("markexpr", "") != "slow" and QUICK_XLA_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + QUICK_XLA_FLAG).strip()
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(COMPILE_CACHE)  # the tests' child processes too
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", str(COMPILE_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

settings.register_profile(
    "fnbackprop",
    deadline=None,  # the first example of each shape pays for JAX compilation
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: CI stays reproducible
)
settings.load_profile("fnbackprop")


@pytest.fixture(scope="module", autouse=True)
def _module_precision(request):
    """float64 for the whole module (its module fixtures included) when it sets FLOAT64 = True."""
    if getattr(request.module, "FLOAT64", False):
        with jax.enable_x64(True):
            yield
    else:
        yield


@pytest.fixture
def x64():
    """float64 for one test."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
