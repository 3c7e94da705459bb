"""Bad input, before any work: one line, exit status 2, no traceback, and an earlier checkpoint left intact; the
installed command's exit keeps main()'s status and every character it said."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from fnbackprop import cli

BAD_TRAIN_OPTIONS = [
    (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    (["--batch-size", "-4"], "--batch-size: must be >= 1"),
    (["--batch-size", "2.5"], "--batch-size: expected an integer"),
    (["--epochs", "-1"], "--epochs: must be >= 1, got -1"),
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--widths", "64,0"], "--widths: every entry must be a positive integer"),
    (["--widths", "a,b"], "--widths: expected comma-separated integers"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--lr", "-0.1"], "--lr: must be > 0"),
    (["--lr", "nan"], "--lr: expected a finite number"),
    (["--lr", "inf"], "--lr: expected a finite number"),
    (["--momentum", "1"], "--momentum: must be >= 0 and < 1"),
    (["--momentum", "-0.5"], "--momentum: must be >= 0 and < 1"),
    (["--decay-rate", "0"], "--decay-rate: must be > 0 and <= 1"),
    (["--decay-epochs", "0"], "--decay-epochs: must be > 0"),
    (["--l2", "-1"], "--l2: must be >= 0"),
    (["--seed", "-3"], "--seed: must be >= 0"),
    (["--devices", "0"], "--devices: must be >= 1"),
]


@pytest.mark.parametrize("argv,message", BAD_TRAIN_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_numeric_options_are_refused_before_any_work(tmp_path, capfd, argv, message):
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), *argv]) == 2
    stdout, stderr = capfd.readouterr()
    assert message in stderr and stderr.count("\n") == 1  # one line
    assert "Traceback" not in stdout + stderr and stdout == ""  # nothing drawn, nothing compiled
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [(["check", "--batch", "0"], "--batch: must be >= 1"),
                                          (["check", "x.py:L", "--shape", "0"], "--shape: every entry must be a positive"),
                                          (["bench", "--rounds", "0"], "--rounds: must be >= 1")])
def test_bad_numeric_options_of_the_other_commands(capfd, argv, message):
    assert cli.main(argv) == 2
    _, stderr = capfd.readouterr()
    assert message in stderr and stderr.count("\n") == 1


def test_more_devices_than_exist_is_a_one_line_error(tmp_path, capfd):
    """Once JAX's CPU backend has started its device count is fixed (before that, `train --devices N`
    makes N CPU devices: tests/parallel/test_parallel.py)."""
    import jax

    jax.devices()
    assert cli.main(["train", "--devices", "64", "--out", str(tmp_path / "run")]) == 2
    assert "asked for 64 devices" in capfd.readouterr().out


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A two-epoch run of width 16 with its checkpoint, kept as the pristine bytes to compare against."""
    out = tmp_path_factory.mktemp("saved") / "run"
    assert cli.main(["train", "--widths", "16", "--epochs", "2", "--out", str(out)]) == 0
    return out, (out / "checkpoint.npz").read_bytes()


@pytest.fixture
def run_copy(saved_run, tmp_path):
    out, _ = saved_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    return copy


@pytest.mark.parametrize("argv,message", [
    (["--widths", "32"], "was saved with sizes=[64, 16, 10], widths=[16]; this run asks for sizes=[64, 32, 10], widths=[32]"),
    (["--widths", "16", "--optimizer", "adam"], "optimizer='momentum'; this run asks for optimizer='adam'"),
    (["--widths", "16", "--activation", "tanh"], "activation=['relu']"),
    (["--widths", "16", "--dataset", "breast_cancer"], "dataset='digits'"),
    (["--widths", "16", "--epochs", "2"], "already holds 2 epochs"),
])
def test_resume_refuses_a_checkpoint_of_another_run_and_keeps_it(saved_run, run_copy, capfd, argv, message):
    _, pristine = saved_run
    argv = ["train", "--out", str(run_copy), "--resume", *argv]
    if "--epochs" not in argv:
        argv += ["--epochs", "3"]
    assert cli.main(argv) == 2
    stdout, stderr = capfd.readouterr()
    assert message in stdout and "Traceback" not in stdout + stderr
    assert (run_copy / "checkpoint.npz").read_bytes() == pristine
    assert [e["epoch"] for e in json.loads((run_copy / "results.json").read_text())["epochs"]] == [1, 2]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_checkpoint_is_a_clear_error_and_is_left_as_it_is(saved_run, run_copy, capfd, damage):
    _, pristine = saved_run
    broken = {"truncated": pristine[: len(pristine) // 2], "garbage": b"not a checkpoint\n", "empty": b""}[damage]
    (run_copy / "checkpoint.npz").write_bytes(broken)
    assert cli.main(["train", "--widths", "16", "--epochs", "3", "--out", str(run_copy), "--resume"]) == 2
    stdout, stderr = capfd.readouterr()
    assert "cannot be read" in stdout and "truncated or corrupt" in stdout and "Traceback" not in stdout + stderr
    assert (run_copy / "checkpoint.npz").read_bytes() == broken


def test_a_checkpoint_with_other_shapes_is_refused_by_the_loader(saved_run, tmp_path):
    """The configuration aside (a Python caller may give none), every array's shape and dtype must fit."""
    import jax
    import numpy as np

    import optax

    from fnbackprop.train import checkpoint
    from fnbackprop.models.network import mlp
    from fnbackprop.train.epochs import make_optimizer

    out, _ = saved_run
    optimizer = make_optimizer("momentum", optax.constant_schedule(0.05))
    for sizes, dtype, message in [([64, 32, 10], np.float32, r"\[0\]\[0\]\['W'\] is float32\[16, 64\] in the checkpoint, "
                                                             r"float32\[32, 64\] in this model"),
                                  ([64, 16, 10], np.float16, r"is float32\[16, 64\] in the checkpoint, float16\[16, 64\]"),
                                  ([64, 16, 16, 10], np.float32, r"\[0\]\[1\]\['W'\] is float32\[10, 16\] in the checkpoint, "
                                                                 r"float32\[16, 16\]")]:
        params = mlp(sizes).init(jax.random.PRNGKey(0), dtype)
        with pytest.raises(checkpoint.CheckpointError, match=message):
            checkpoint.load(out / "checkpoint.npz", (params, optimizer.init(params)))


def test_resume_with_the_same_options_continues(saved_run, run_copy, capfd):
    assert cli.main(["train", "--widths", "16", "--epochs", "3", "--out", str(run_copy), "--resume"]) == 0
    assert [e["epoch"] for e in json.loads((run_copy / "results.json").read_text())["epochs"]] == [1, 2, 3]


@pytest.mark.parametrize("content,target,message", [
    (None, "{d}/missing.py:Layer", "no such file"),
    ("raise RuntimeError('boom at import')", "{d}/user.py:Layer", "importing"),
    ("import sys\nsys.exit(3)", "{d}/user.py:Layer", "SystemExit"),
    ("Layer = 3", "{d}/user.py:Layer", "not a layer"),
    ("x = 1", "{d}/user.py:Layer", "has no attribute 'Layer'"),
    ("def Layer(a, b):\n    return a", "{d}/user.py:Layer", "needs arguments"),
])
def test_check_target_that_cannot_be_loaded_is_a_one_line_error(tmp_path, capfd, content, target, message):
    if content is not None:
        (tmp_path / "user.py").write_text(content)
    assert cli.main(["check", target.format(d=tmp_path), "--shape", "3"]) == 2
    stdout, stderr = capfd.readouterr()
    assert message in stderr and stderr.count("\n") == 1 and "Traceback" not in stdout + stderr


def as_installed(*argv: str, exit_by: str = "console", cwd=None) -> subprocess.CompletedProcess:
    """`fnbackprop ARGV` in a subprocess, ending as the installed command does (`fnbackprop.cli.console`) or as a
    plain Python program does (sys.exit(main()), the interpreter's teardown included); stdout block-buffered, as
    on a pipe from a user's shell."""
    ending = "console()" if exit_by == "console" else "sys.exit(main())"
    code = f"import sys; sys.argv = ['fnbackprop', *{list(argv)!r}]; from fnbackprop.cli import console, main; {ending}"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=buffered, cwd=cwd)


RULE = """import jax, jax.numpy as jnp

@jax.custom_vjp
def sine(x):
    return jnp.sin(x)

sine.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))
"""


@pytest.mark.parametrize("argv,status", [pytest.param(["train", "--epochs", "0"], 2, marks=pytest.mark.slow),
                                         (["check", "rule.py:sine", "--args", "f64[3]", "--json"], 0)])
def test_the_command_exits_with_mains_status_and_all_of_its_output(argv, status, tmp_path):
    """console() skips the interpreter's teardown: the exit status and every character said must be what the plain
    exit gives (the JSON report goes through print(), which a pipe buffers: without console()'s flush it is lost)."""
    (tmp_path / "rule.py").write_text(RULE)
    fast, plain = as_installed(*argv, cwd=tmp_path), as_installed(*argv, exit_by="plain", cwd=tmp_path)
    assert fast.returncode == plain.returncode == status, (fast.stderr, plain.stderr)
    assert (fast.stdout, fast.stderr) == (plain.stdout, plain.stderr)
    assert (fast.stdout + fast.stderr).strip()
