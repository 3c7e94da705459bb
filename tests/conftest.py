"""Test settings: float64 enabled (float32 arrays stay float32), a PRNG key fixture, lean hypothesis."""

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

settings.register_profile(
    "fnbackprop",
    deadline=None,  # the first example of each shape pays for JAX compilation
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: CI stays reproducible
)
settings.load_profile("fnbackprop")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
