"""The benchmark's pieces: FLOP count, and baselines that compute the same step as the engine."""

import jax.numpy as jnp
import pytest

from fnbackprop.bench import (Config, interleaved, jax_steps, numpy_params, numpy_step_per_example,
                              numpy_step_vectorised, random_batches, summary, torch_module, torch_steps)
from fnbackprop.numerics import rel_err

SIGMOID = Config("sigmoid", (7, 5, 3), "sigmoid", "sigmoid", "quadratic", 6)
RELU = Config("relu", (7, 6, 5, 4), "relu", "softmax", "cross_entropy", 6)

# float32 steps from different summation orders: a few ulps of the step, far below a wrong term
STEP_TOL = 1e-5


def test_matmul_flops_counted_by_hand():
    # [3, 4, 2], m = 5: forward 2*5*(3*4 + 4*2) = 200, dW the same 200, dA_prev only for layer 2: 2*5*4*2 = 80
    assert Config("t", (3, 4, 2), "relu", "softmax", "cross_entropy", 5).matmul_flops == 480
    # Nielsen's network at batch 10: 6*10*(23,520 + 300) - 2*10*23,520 = 1,429,200 - 470,400
    assert Config("n", (784, 30, 10), "sigmoid", "sigmoid", "quadratic", 10).matmul_flops == 958_800


def jax_params_from(np_params):
    return [{"W": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in np_params]


@pytest.mark.parametrize("config", [SIGMOID, RELU], ids=lambda c: c.name)
@pytest.mark.parametrize("step", [numpy_step_per_example, numpy_step_vectorised], ids=["per_example", "vectorised"])
def test_numpy_baselines_take_the_engines_step(config, step):
    np_params = numpy_params(config, seed=1)
    xs, ys = random_batches(config, 1, seed=2)
    for i, (w, b) in enumerate(np_params):  # non-zero biases, so a bias bug shows
        b[...] = 0.1 * (i + 1)
    expected = jax_steps(config, "autodiff")(jax_params_from(np_params), xs, ys)
    got = step(config, [(w.copy(), b.copy()) for w, b in np_params], xs[0], ys[0])
    assert rel_err(jax_params_from(got), expected) <= STEP_TOL
    assert rel_err(jax_params_from(np_params), expected) > 100 * STEP_TOL  # the step moved the parameters


@pytest.mark.skipif(torch_module() is None, reason="PyTorch not installed (optional extra: pip install '.[torch]')")
@pytest.mark.parametrize("config", [SIGMOID, RELU], ids=lambda c: c.name)
def test_torch_baseline_takes_the_engines_step(config):
    torch = torch_module()
    run, model = torch_steps(config)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    start = [(l.weight.detach().numpy().copy(), l.bias.detach().numpy().copy()) for l in linears]
    xs, ys = random_batches(config, 2, seed=3)
    run(torch.from_numpy(xs), torch.from_numpy(ys))
    got = [{"W": jnp.asarray(l.weight.detach().numpy()), "b": jnp.asarray(l.bias.detach().numpy())} for l in linears]
    expected = jax_steps(config, "hand")(jax_params_from(start), xs, ys)
    assert rel_err(got, expected) <= STEP_TOL


def test_interleaved_calls_every_contender_once_per_round_in_rotated_order():
    calls = []
    times = interleaved({k: (lambda k=k: calls.append(k)) for k in "abc"}, rounds=4, pause=0)
    assert "".join(calls) == "abc" "bca" "cab" "abc"  # rotated, so no contender always follows the same one
    assert [len(v) for v in times.values()] == [4, 4, 4]
    s = summary([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (3.0, 1.0, 100.0, 5)


def _per_step(median, fraction=0.5):
    return {"median": median, "fraction_of_limit": fraction}


def test_targets_are_judged_from_the_measured_medians():
    from fnbackprop.cli import bench_targets

    wide = {"config": {"name": "wide [784,1024,1024,10] b1024", "sizes": [784, 1024, 1024, 10], "batch": 1024},
            "hand_over_autodiff": {"median": 1.02},
            "per_step_seconds": {"jax hand": _per_step(0.9, 0.86), "torch eager": _per_step(1.0)}}
    small = {"config": {"name": "nielsen", "sizes": [784, 30, 10], "batch": 10}, "hand_over_autodiff": {"median": 0.97},
             "per_step_seconds": {"jax hand": _per_step(1e-4, 0.2)}}
    epoch = {"seconds_per_epoch": {"jax hand": {"median": 0.2}, "torch eager": {"median": 1.9},
                                   "numpy per-example": {"median": 3.0}, "numpy vectorised": {"median": 0.5}}}
    verdicts = {name: ok for name, ok, _ in bench_targets({"configs": [small, wide], "nielsen_epoch": epoch})}
    assert verdicts == {
        "hand / jax.grad <= 1.0: nielsen": True,
        "hand / jax.grad <= 1.0: wide [784,1024,1024,10] b1024": False,  # 1.02
        "hand >= 85% of the matmul limit: wide [784,1024,1024,10] b1024": True,  # 86%
        "hand no slower than torch eager: wide [784,1024,1024,10] b1024": True,  # 0.9 s vs 1.0 s
        "Nielsen epoch <= 0.15 s (batch 10, fresh shuffle)": False,  # 0.2 s
        "Nielsen epoch >= 10x faster than torch eager": False,  # 9.5x
        "Nielsen epoch >= 10x faster than numpy per-example": True,  # 15x
        "Nielsen epoch >= 2x faster than numpy vectorised": True,  # 2.5x
    }


def test_bench_gpu_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    from fnbackprop.cli import main

    assert main(["bench", "--gpu", "--out", str(tmp_path)]) == 2
    assert "JAX sees no GPU" in capsys.readouterr().out
