"""The measurements the experiment scripts make, checked on small random problems (no MNIST needed)."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from ch5_unstable_gradients import hidden_speeds, spec  # noqa: E402
from hand_vs_autodiff import global_rel_diff  # noqa: E402
from optimizers import epochs_to  # noqa: E402

from _common import build, spread  # noqa: E402


def test_speed_of_learning_is_the_norm_of_jax_grad_wrt_each_hidden_bias(x64):
    """||dC/db[l]|| from the hand-coded dZ equals the norm of jax.grad's dC/db[l] (float64: 1e-10)."""
    net = build({**spec(3, 0, 1), "sizes": [12, 6, 6, 6, 10]})
    params = net.init(jax.random.PRNGKey(0), jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (40, 12), jnp.float64)
    y = jnp.arange(40) % 10
    grads = jax.grad(net.loss)(params, x, y)
    expected = np.array([np.linalg.norm(g["b"]) for g in grads[:-1]])
    speeds = jax.jit(lambda p: hidden_speeds(net, p, x, y))(params)  # one compile: faster than op by op
    np.testing.assert_allclose(speeds, expected, rtol=1e-10)


def test_global_relative_difference():
    a = [{"W": jnp.array([3.0, 0.0]), "b": jnp.array([0.0])}]
    b = [{"W": jnp.array([3.0, 4.0]), "b": jnp.array([0.0])}]
    assert float(global_rel_diff(a, b)) == np.float32(0.8)  # ||(0, -4, 0)|| / ||(3, 4, 0)||
    assert float(global_rel_diff(b, b)) == 0.0


def test_epochs_to_target_and_spread():
    assert epochs_to([90.0, 96.9, 97.0, 98.0], 97.0) == 3
    assert epochs_to([90.0, 96.9], 97.0) is None
    s = spread([95.0, 96.0, 97.0])
    assert (s["mean"], s["std"], s["min"], s["max"], s["n"]) == (96.0, 1.0, 95.0, 97.0, 3)
