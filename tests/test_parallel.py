"""Data parallelism on 8 simulated CPU devices (in a subprocess, so the rest of the suite keeps one)."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def results():
    worker = Path(__file__).with_name("data_parallel_worker.py")
    done = subprocess.run([sys.executable, str(worker)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_eight_devices_were_simulated(results):
    assert results["devices"] == 8


@pytest.mark.parametrize("form", ["jit_sharded", "shard_map"])
def test_data_parallel_hand_gradients_equal_single_device_jax_grad(results, form):
    assert results[f"{form}_grad_rel_err"] <= 1e-12  # float64: rounding from the reordered sums only
    assert results[f"{form}_cost_rel_err"] <= 1e-12
    assert results[f"{form}_step_rel_err"] <= 1e-12  # one optax step


def test_uneven_batches_are_refused_clearly(results):
    assert "60 examples does not divide evenly among 8 devices" in results["uneven_error"]


def test_a_short_training_run_ends_at_the_same_parameters(results):
    """float32, 2 epochs of digits (45 steps each, the last partial batch of 29 on the jit path)."""
    assert results["train_params_rel_err"] <= 1e-5
    assert results["train_accuracy"]["1"] == results["train_accuracy"]["8"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_loopback_train_data_parallel_with_jax_distributed():
    """Multi-host on one machine: jax.distributed over loopback, CPU collectives (gloo), one device each."""
    worker, port = Path(__file__).with_name("multihost_worker.py"), str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(worker), str(i), port], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    for out, _ in outputs:
        result = json.loads(out.strip().splitlines()[-1])
        assert result["processes"] == 2 and result["devices"] == 2
        assert result["grad_rel_err"] <= 1e-12 and result["cost_rel_err"] <= 1e-12  # float64
        assert result["train_params_rel_err"] <= 1e-5  # one float32 epoch of digits across both hosts
