"""What every command shares: the consoles, one-line errors, argparse types, the pre-training gradient
check and the progress display."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console(width=None if sys.stdout.isatty() else 160)  # full tables in logs and pipes
#: progress, spinners and summaries when stdout must stay machine-readable (--json)
status_console = Console(stderr=True)


def say(args: argparse.Namespace, text: str) -> None:
    """A summary line: to stdout with the table, to stderr when stdout carries JSON."""
    (status_console if getattr(args, "json", False) else console).print(text)


def error(command: str, text: str, console_: Console | None = None) -> None:
    """A one-line error message of `fnbackprop COMMAND`, pointing at its help (never wrapped, whatever the
    terminal's width)."""
    (console_ or console).print(f"fnbackprop {command}: [red]error:[/red] {escape(text)} (see fnbackprop {command} --help)",
                                soft_wrap=True, highlight=False)


#: where the command line keeps JAX's compiled programs between runs: a directory, or "off"
COMPILE_CACHE_ENV = "FNBACKPROP_COMPILE_CACHE"


def compile_cache_dir() -> Path | None:
    """$FNBACKPROP_COMPILE_CACHE (a directory, or "off"), else $XDG_CACHE_HOME/fnbackprop/jax (~/.cache/...)."""
    import os

    given = os.environ.get(COMPILE_CACHE_ENV, "")
    if given.lower() in ("off", "0", "no", "false"):
        return None
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fnbackprop" / "jax"


def use_compile_cache() -> str:
    """Keep every program the command compiles in JAX's persistent compilation cache (`compile_cache_dir`), so
    that a second run of the same shapes compiles nothing; left as it is when the caller (a test suite,
    $JAX_COMPILATION_CACHE_DIR) chose a cache already. Returns where it is, or why there is none."""
    import jax

    chosen = getattr(jax.config, "jax_compilation_cache_dir")  # (a flag JAX's type stubs do not list)
    if chosen:
        return str(chosen)
    folder = compile_cache_dir()
    if folder is None:
        return f"off (${COMPILE_CACHE_ENV}=off)"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"off (cannot make {folder}: {err.strerror})"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(folder)


def process_start() -> float:
    """When this process started, on time.time()'s clock: its age from /proc/self/stat and /proc/uptime (Linux,
    to 10 ms), else now."""
    import os
    import time

    try:
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - started)
    except (OSError, ValueError, IndexError):
        return time.time()


class UsageError(Exception):
    """A mistake in the command line: exit status 2, a message, no trace."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported on one line (exit status 2) instead of the usage text, and
    no abbreviated options (an option is either given by its name or not given: see `given_options`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default shown once, at the end of its help, unless the help already says it or there is
    none to show (an unset option, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        shown = not unset and action.option_strings != []
        if shown and "default" not in text and "preset" not in text:
            value = ",".join(map(str, action.default)) if isinstance(action.default, list) else action.default
            text += f" (default: {value})"
        return text.replace("%", "%%")


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the options written on the command line `argv` (`--name` or `--name=value`;
    abbreviations are refused by `OneLineParser`), whatever their values: what the user asked for."""
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(token == option or token.startswith(option + "=") for token in argv):
                given.add(action.dest)
    return given


def not_applicable(given: set[str], names: set[str] | tuple[str, ...], reason: str) -> str | None:
    """The one-line refusal of the options in `names` that were given, or None when none was."""
    wrong = sorted(n for n in given if n in names)
    if not wrong:
        return None
    listed = ", ".join("--" + n.replace("_", "-") for n in wrong)
    return f"{listed} {'does' if len(wrong) == 1 else 'do'} not apply {reason}"


def _number(kind: type, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def in_range(kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False):
    """An argparse type: a number of `kind` in [low, high] (an open end where asked), else a one-line error."""
    def parse(text: str):
        value = _number(kind, text)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "" if low is None else (f"> {low}" if low_open else f">= {low}")
            right = "" if high is None else (f"< {high}" if high_open else f"<= {high}")
            raise argparse.ArgumentTypeError(f"must be {' and '.join(t for t in (left, right) if t)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = in_range(int, 1)
seed_int = in_range(int, 0, 2**32 - 1)


def int_list(text: str) -> list[int]:
    """Comma-separated positive integers (widths, shapes)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every entry must be a positive integer, got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def gradient_error(net, params, x, y) -> float:
    """Max relative error of the hand-coded gradient against jax.grad on one batch (any model with
    `value_and_grad` and `loss` taking (params, x, y): a network or a GPT)."""
    import jax

    from ..check.numerics import rel_err

    return rel_err(jax.jit(net.value_and_grad)(params, x, y)[1], jax.jit(jax.grad(net.loss))(params, x, y))


def gradient_check_passes(net, params, x, y) -> bool:
    """Run `gradient_error` before training and say how it went (float32 tolerance)."""
    from ..check.numerics import TOL_FLOAT32

    err = gradient_error(net, params, x, y)
    if err > TOL_FLOAT32:
        console.print(f"[red]gradient check failed: hand-coded vs jax.grad max relative error {err:.1e} > {TOL_FLOAT32:g}[/red]")
        return False
    console.print(f"gradient check: hand-coded backward agrees with jax.grad on one batch (max relative error {err:.1e}, float32)")
    return True


class GradientCheckFailed(Exception):
    """The pre-training gradient check failed (its message printed): exit status 1."""


def gradient_check_or_stop(net, params, x, y) -> None:
    """`gradient_check_passes`, raising GradientCheckFailed when it fails. The language models run it once their
    first chunk of iterations is on its way (`train_lm(check_meanwhile=...)`): it traces and compiles while
    that chunk runs, off the path to the first iteration, and stops the run before anything is saved."""
    if not gradient_check_passes(net, params, x, y):
        raise GradientCheckFailed()


def training_progress(unit: str):
    """The progress display of a training run: "epoch 3/30" or "iteration 500/2000", a description, the time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(unit), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console)


def verdict_text(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]missed[/red]"




def run_folder(out: str | None, default: str, *, resume: bool, force: bool) -> Path:
    """The folder a training run writes to. `out` as given: refused when it already holds a run, unless
    `resume` (continue it) or `force` (overwrite it). No `out`: `default`, or with `resume` the existing
    `default`; otherwise the first of default, default-2, default-3, ... that holds no run yet."""
    if resume and force:
        raise UsageError("--resume continues the run in --out and --force overwrites it: give one of them")
    if out is not None:
        folder = Path(out)
        if holds_run(folder) and not (resume or force):
            raise UsageError(f"{folder} already holds a run: --resume continues it, --force overwrites it, "
                             "or give another --out")
        return folder
    folder = Path(default)
    if resume or force:
        return folder
    n = 2
    while holds_run(folder):
        folder, n = Path(f"{default}-{n}"), n + 1
    return folder


def holds_run(folder: Path) -> bool:
    """A folder with a run's results or checkpoint in it."""
    return any((folder / name).exists() for name in ("results.json", "checkpoint.npz", "loss.png", "curves.png"))
