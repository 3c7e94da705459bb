"""`fnbackprop train`: the README's main command, end to end on the bundled digits."""

import json

import pytest

from fnbackprop import cli


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return cli.main(["train", "--out", str(out)]), out


def test_default_train_reaches_95_percent_and_writes_results(default_run, capsys):
    code, out = default_run
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["epochs"]) == 30 and results["config"]["grad_source"] == "hand"
    assert {"n_layer", "n_head", "preset", "text", "max_iters", "dropout"}.isdisjoint(results["config"])  # the GPT's options
    assert results["epochs"][-1]["test_accuracy"] >= 0.95
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoint.npz").is_file()


def test_resume_continues_a_run(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "2", "--out", str(tmp_path)]) == 0
    assert cli.main(["train", "--epochs", "3", "--out", str(tmp_path), "--resume"]) == 0
    assert [e["epoch"] for e in json.loads((tmp_path / "results.json").read_text())["epochs"]] == [1, 2, 3]
    assert "gradient check: hand-coded backward agrees with jax.grad" in capsys.readouterr().out


def test_divergence_exits_3_with_a_message(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "2", "--lr", "1e9", "--out", str(tmp_path)]) == 3
    assert "training diverged in epoch 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--dataset", "mnist", "--data-path", "/no/such/file"], "MNIST not found at the path /no/such/file"),
        (["--activation", "relu9"], "unknown activation 'relu9'"),
        (["--optimizer", "sgdx"], "unknown optimizer 'sgdx'"),
        (["--loss", "bce"], "needs output activation 'sigmoid'"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path, capsys, argv, message):
    assert cli.main(["train", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().out.replace("\n", " ")
