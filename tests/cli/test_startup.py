"""Start-up of the command line: JAX's persistent compilation cache (where it lives, how to turn it off, a
cache chosen by the caller left alone), the gradient check that the GPT's run makes while its first chunk of
iterations runs (a failed one raises GradientCheckFailed: exit status 1, nothing saved; `tests/train/test_lm.py`
checks that train_lm stops there), and the process's start time."""

import jax
import jax.numpy as jnp
import pytest

from fnbackprop.cli import common


def test_the_cache_lives_in_the_users_cache_folder_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv(common.COMPILE_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert common.compile_cache_dir() == tmp_path / "xdg" / "fnbackprop" / "jax"
    monkeypatch.setenv(common.COMPILE_CACHE_ENV, str(tmp_path / "mine"))
    assert common.compile_cache_dir() == tmp_path / "mine"
    for off in ("off", "OFF", "0", "no"):
        monkeypatch.setenv(common.COMPILE_CACHE_ENV, off)
        assert common.compile_cache_dir() is None


def test_a_cache_the_caller_chose_is_left_alone(monkeypatch, tmp_path):
    """The test suite sets its own cache (conftest): the command line must not move it to the user's folder."""
    chosen = jax.config.jax_compilation_cache_dir
    assert chosen  # conftest's
    monkeypatch.setenv(common.COMPILE_CACHE_ENV, str(tmp_path / "elsewhere"))
    assert common.use_compile_cache() == str(chosen) and jax.config.jax_compilation_cache_dir == chosen
    assert not (tmp_path / "elsewhere").exists()


class Net:
    """A tiny model whose hand gradient is right, or off by a factor 2."""

    def __init__(self, factor):
        self.factor = factor

    def loss(self, w, x, y):
        return jnp.mean((x @ w - y) ** 2)

    def value_and_grad(self, w, x, y):
        value, grad = jax.value_and_grad(self.loss)(w, x, y)
        return value, self.factor * grad


@pytest.mark.parametrize("factor, passes", [(1.0, True), (2.0, False)])
def test_a_failing_gradient_check_stops_the_run(factor, passes, capsys):
    w, x, y = jnp.ones(3), jnp.arange(12.0).reshape(4, 3) / 10, jnp.ones(4)
    if passes:
        common.gradient_check_or_stop(Net(factor), w, x, y)
        assert "hand-coded backward agrees with jax.grad" in capsys.readouterr().out
    else:
        with pytest.raises(common.GradientCheckFailed):
            common.gradient_check_or_stop(Net(factor), w, x, y)
        assert "gradient check failed" in capsys.readouterr().out


def test_the_process_start_is_when_the_process_began():
    """A child process that waits 0.6 s before asking: its start lies 0.6 s (plus its own start-up) in the past,
    to /proc's 10 ms (a fallback to `now` would read 0)."""
    import subprocess
    import sys

    code = ("import time; time.sleep(0.6); from fnbackprop.cli.common import process_start; "
            "print(time.time() - process_start())")
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.6 <= age < 10
