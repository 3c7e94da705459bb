"""One command line: an option that does not apply is refused in one line (exit 2) before any work, the
data is only ever the data the user named, a run never overwrites another, and every option explains itself.

Each refusal is checked for its exit status, its one line naming the command and the option, and for what
did not happen: no run folder made, nothing trained."""

import json

import jax.numpy as jnp
import pytest

import fnbackprop
from fnbackprop import cli
from fnbackprop.cli.common import run_folder
from fnbackprop.cli.main import command_parsers
from fnbackprop.train import checkpoint


@pytest.fixture(autouse=True)
def away_from_the_data(tmp_path, monkeypatch):
    """No data where the defaults look: a refusal that failed could not start a real training run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FNBACKPROP_TEXT", raising=False)
    monkeypatch.delenv("FNBACKPROP_MNIST", raising=False)


def refused(argv, capfd) -> str:
    """Run `fnbackprop ARGV`, expecting exit 2 and exactly one line on stdout or stderr; that line."""
    assert cli.main(argv) == 2
    out, err = capfd.readouterr()
    said = out + err
    assert said.count("\n") == 1 and "Traceback" not in said, said
    return said


@pytest.mark.parametrize("argv,named", [
    (["--model", "gpt", "--epochs", "3"], "--epochs"),
    (["--model", "gpt", "--widths", "10"], "--widths"),
    (["--model", "gpt", "--devices", "2"], "--devices"),
    (["--model", "gpt", "--dataset", "mnist"], "--dataset"),
    (["--model", "gpt", "--optimizer=adam"], "--optimizer"),
    (["--n-layer", "2"], "--n-layer"),
    (["--preset", "shakespeare-char-gpu"], "--preset"),
    (["--no-bias"], "--bias"),
    (["--max-iters", "5"], "--max-iters"),
    (["--mesh", "data=2,model=4"], "--mesh"),
    (["--matmul-dtype", "bfloat16"], "--matmul-dtype"),
    (["--model", "lstm", "--sequence-parallel"], "--sequence-parallel"),
])
def test_an_option_of_the_other_model_is_refused(tmp_path, capfd, argv, named):
    out = tmp_path / "run"
    line = refused(["train", *argv, "--out", str(out)], capfd)
    assert line.startswith("fnbackprop train: error:") and named in line and "does not apply" in line
    assert "fnbackprop train --help" in line
    assert not out.exists()


@pytest.mark.parametrize("argv,said", [
    (["--sequence-parallel"], "--sequence-parallel needs --mesh"),
    (["--mesh", "data=2,modle=4"], "--mesh takes data=D,model=M"),
    (["--mesh", "data=0"], "--mesh takes data=D,model=M"),
    (["--matmul-dtype", "float16"], "matmul_dtype must be one of auto, float32, bfloat16, got 'float16'"),
])
def test_a_mesh_that_cannot_be_used_is_refused(tmp_path, capfd, argv, said):
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question\n" * 20)
    out = tmp_path / "run"
    line = refused(["train", "--model", "gpt", "--data-path", str(text), *argv, "--out", str(out)], capfd)
    assert said in line and not out.exists()


def test_the_old_text_option_points_at_data_path(tmp_path, capfd):
    line = refused(["train", "--model", "gpt", "--text", "x.txt", "--out", str(tmp_path / "run")], capfd)
    assert "--data-path" in line


@pytest.mark.parametrize("argv", [
    ["--model", "gpt", "--data-path", "no-such-fox.txt"],
    ["--data-path", "no/such/mnist"],
    ["--dataset", "mnist", "--data-path", "no/such/mnist"],
])
def test_a_data_path_that_does_not_exist_is_refused_never_replaced(tmp_path, capfd, monkeypatch, argv):
    """Even with a real text or MNIST where the defaults would look, the named path is the only one read."""
    (tmp_path / "fallback").mkdir()
    (tmp_path / "fallback" / "input.txt").write_text("to be or not to be " * 20)
    monkeypatch.setenv("FNBACKPROP_TEXT", str(tmp_path / "fallback"))
    out = tmp_path / "run"
    line = refused(["train", *argv, "--out", str(out)], capfd)
    assert "no/such" in line or "no-such-fox.txt" in line
    assert not out.exists()


def test_a_bundled_dataset_with_a_data_path_is_refused(tmp_path, capfd):
    line = refused(["train", "--dataset", "digits", "--data-path", str(tmp_path), "--out", str(tmp_path / "run")], capfd)
    assert "--data-path" in line and "digits" in line


def test_version_prints_the_package_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fnbackprop {fnbackprop.__version__}"


def test_sample_on_a_run_that_is_not_a_language_model_says_so(tmp_path, capfd):
    """A classifier's checkpoint (as `fnbackprop train` saves one), handed to `sample`."""
    checkpoint.save(tmp_path / "checkpoint.npz", {"W": jnp.zeros((2, 3))}, {"epoch": 1, "history": [],
                                                                            "config": {"dataset": "digits"}})
    line = refused(["sample", "--out", str(tmp_path)], capfd)
    assert line.startswith("fnbackprop sample: error:") and "not a language model" in line


def test_sample_on_a_folder_without_a_run_is_one_line(tmp_path, capfd):
    assert "no checkpoint.npz" in refused(["sample", "--out", str(tmp_path / "empty")], capfd)


def test_sample_refuses_a_data_path(tmp_path, capfd):
    assert "--data-path does not apply" in refused(["sample", "--out", str(tmp_path), "--data-path", "x.txt"], capfd)


@pytest.mark.parametrize("argv,named", [
    (["--conv-only", "--gpu"], "--gpu"),
    (["--gpt-only", "--data-path", "x"], "--data-path"),
    (["--memory", "--rounds", "3"], "--rounds"),
    (["--memory", "--conv-only"], "--conv-only"),
])
def test_bench_refuses_an_option_its_part_does_not_read(tmp_path, capfd, argv, named):
    line = refused(["bench", *argv, "--out", str(tmp_path / "b")], capfd)
    assert line.startswith("fnbackprop bench: error:") and named in line
    assert not (tmp_path / "b").exists()


def test_bench_refuses_a_data_path_that_does_not_exist(tmp_path, capfd):
    assert "no/such" in refused(["bench", "--data-path", "no/such/mnist", "--out", str(tmp_path / "b")], capfd)


@pytest.mark.parametrize("argv,named", [
    (["--shape", "3"], "--shape"),
    (["--args", "f64[3]"], "--args"),
    (["--derivations", "--only", "relu"], "--only"),
])
def test_check_refuses_an_option_of_another_mode(capfd, argv, named):
    line = refused(["check", *argv], capfd)
    assert line.startswith("fnbackprop check: error:") and named in line


def test_an_abbreviated_option_is_not_guessed(tmp_path, capfd):
    assert "unrecognized arguments: --epo" in refused(["train", "--epo", "3", "--out", str(tmp_path / "run")], capfd)


# ----- the run's folder ------------------------------------------------------------------------------------
def a_run_in(folder):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    return folder


def test_a_named_folder_holding_a_run_is_refused_unless_resumed_or_forced(tmp_path, capfd):
    run = a_run_in(tmp_path / "run")
    line = refused(["train", "--epochs", "1", "--out", str(run)], capfd)
    assert "already holds a run" in line and "--force" in line
    assert json.loads((run / "results.json").read_text()) == {}  # untouched
    assert run_folder(str(run), "unused", resume=False, force=True) == run
    assert run_folder(str(run), "unused", resume=True, force=False) == run


def test_the_default_folder_is_fresh_and_resume_takes_the_existing_one(tmp_path):
    assert str(run_folder(None, "runs/digits", resume=False, force=False)) == "runs/digits"
    a_run_in(tmp_path / "runs" / "digits")
    a_run_in(tmp_path / "runs" / "digits-2")
    assert str(run_folder(None, "runs/digits", resume=False, force=False)) == "runs/digits-3"
    assert str(run_folder(None, "runs/digits", resume=True, force=False)) == "runs/digits"


def test_resume_and_force_together_are_refused(tmp_path, capfd):
    assert "give one of them" in refused(["train", "--resume", "--force", "--out", str(tmp_path)], capfd)


# ----- help -----------------------------------------------------------------------------------------------------
def test_the_top_level_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    shown = capsys.readouterr().out
    for command in ("check", "train", "sample", "exercise", "bench"):
        assert f"\n    {command} " in shown


@pytest.mark.parametrize("command", ["check", "train", "sample", "bench", "exercise"])
def test_every_option_has_help_and_its_default_shown_once(command, capsys):
    parser = command_parsers(cli.build_parser())[command]
    assert parser.description
    for action in parser._actions:
        if action.help == "==SUPPRESS==":  # an old name, refused with a pointer
            continue
        assert action.help, f"{command} {action.option_strings}: no help"
        text = parser._get_formatter()._get_help_string(action)
        assert text.count("default") <= 1 and "(default: None)" not in text, text
    assert cli.main([command, "--help"]) == 0
    assert "(default: None)" not in capsys.readouterr().out


# ----- check --args: the precision the user wrote ----------------------------------------------------------
RULES = '''
import jax

@jax.custom_vjp
def square(x):
    return x * x

square.defvjp(lambda x: (x * x, x), lambda x, g: (2 * x * g,))

@jax.custom_vjp
def square_wrong(x):
    return x * x

square_wrong.defvjp(lambda x: (x * x, x), lambda x, g: (3 * x * g,))
'''


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "my_rules.py"
    path.write_text(RULES)
    return path


def test_float32_args_are_checked_in_float32(rules_file, capsys):
    """float32 arguments keep float32: the tolerance is float32's (not float64's 1e-10), a correct rule
    passes and a wrong one fails."""
    assert cli.main(["check", f"{rules_file}:square", "--args", "f32[4,5]", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tol"] > 1e-8 and report["passed"]
    assert cli.main(["check", f"{rules_file}:square_wrong", "--args", "f32[4,5]", "--json"]) == 1
    capsys.readouterr()
    assert cli.main(["check", f"{rules_file}:square", "--args", "f64[4,5]", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tol"] == 1e-10  # float64's, for float64 arguments


def test_mixed_float_dtypes_are_refused_not_cast(rules_file, capfd):
    assert "mixes float32, float64" in refused(["check", f"{rules_file}:square", "--args", "f64[3] f32[3]"], capfd)


@pytest.mark.parametrize("model", ["mlp", "gpt"])
def test_resuming_a_run_that_does_not_exist_is_one_line(tmp_path, capfd, model):
    text = tmp_path / "fox.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 5)
    argv = ["train", "--resume", "--out", str(tmp_path / "none")] + (["--model", "gpt", "--data-path", str(text)] if model == "gpt" else [])
    assert "nothing to resume" in refused(argv, capfd)
