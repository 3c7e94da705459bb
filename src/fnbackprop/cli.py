"""`fnbackprop` on the command line: check | train | bench."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_gpt import add_gpt_options, add_sample_command, run_train_gpt
from .cli_exercise import add_exercise_command

console = Console(width=None if sys.stdout.isatty() else 160)  # full tables in logs and pipes
#: progress, spinners and summaries when stdout must stay machine-readable (--json)
status_console = Console(stderr=True)


def _say(args: argparse.Namespace, text: str) -> None:
    """A summary line: to stdout with the table, to stderr when stdout carries JSON."""
    (status_console if getattr(args, "json", False) else console).print(text)


def _error(text: str, console_: Console | None = None) -> None:
    """A one-line error message (never wrapped, whatever the terminal's width)."""
    (console_ or console).print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)


def _format_err(value: float) -> str:
    return "-" if value != value else f"{value:.1e}"


def run_derivations(args: argparse.Namespace) -> int:
    """The derivation audit; 0 when every verdict is the expected one (known mistakes flagged)."""
    from .derivations import audit

    with status_console.status("auditing the source derivations (float64)...", spinner="dots"):
        rows = audit(args.seed)
    if args.json:
        print(json.dumps([{**r._asdict(), "as_expected": r.as_expected} for r in rows], indent=1))
    else:
        table = Table(title="source derivations, transcribed literally, checked against jax.grad (float64)")
        for col in ("source", "equation", "verdict", "max rel. err", "detail"):
            table.add_column(col, overflow="fold")
        for r in rows:
            verdict = ("[green]holds[/green]" if r.passed else "[yellow]flagged[/yellow]") + ("" if r.as_expected else " [red bold](UNEXPECTED)[/red bold]")
            table.add_row(escape(r.source), escape(r.equation), verdict, f"{r.max_rel_err:.1e}", escape(r.detail))
        console.print(table)
    unexpected = [r for r in rows if not r.as_expected]
    flagged = sum(not r.passed for r in rows)
    if unexpected:
        _say(args, f"[red]{len(unexpected)} verdicts differ from the audit's expectation[/red]")
        return 1
    _say(args, f"[green]all {len(rows)} verdicts as expected: {len(rows) - flagged} equations hold, "
               f"{flagged} printed mistakes flagged[/green]")
    return 0


class UsageError(Exception):
    """A mistake in the command line: exit status 2, a message, no trace."""


def load_target(spec: str, function: bool = False):
    """`module:attribute` or `path/to/file.py:attribute`; a zero-argument factory is called, unless
    `function` (a function to check with --args, taken as it is)."""
    import importlib
    import importlib.util

    if ":" not in spec:
        raise UsageError(f"expected module:attribute or file.py:attribute, got {spec!r}")
    where, attr = spec.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise UsageError(f"no such file: {where}")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.path.insert(0, str(path.resolve().parent))
            module_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(where)
    except UsageError:
        raise
    except ImportError as err:
        raise UsageError(f"cannot import {where!r}: {err}") from None
    except (Exception, SystemExit) as err:  # the user's module failed while importing
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        raise UsageError(f"importing {where!r} raised {type(err).__name__}: {first_line}") from None
    if not hasattr(module, attr):
        raise UsageError(f"{where!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if _custom_rule(obj) or (function and callable(obj) and not isinstance(obj, type)):
        return obj
    if isinstance(obj, type) or (not _checkable(obj) and callable(obj)):  # a class or a zero-argument factory
        try:
            obj = obj()
        except TypeError as err:
            raise UsageError(f"{spec} needs arguments to build ({err}); point at an instance instead") from None
    if not _checkable(obj):
        raise UsageError(f"{spec} is a {type(obj).__name__}, not a layer (init, forward, backward), a network, a loss head "
                         "or a jax.custom_vjp function")
    return obj


def _custom_rule(obj) -> bool:
    import jax

    return isinstance(obj, (jax.custom_vjp, jax.custom_jvp))


#: --args dtypes: the prefix of each spec, e.g. f64[4,8]
ARG_DTYPES = {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16", "i32": "int32", "i64": "int64",
              "bool": "bool"}


def parse_arg_specs(text: str, key) -> list:
    """Random arguments from "f64[4,8] f32[3] i32[4]<6 bool[2]": normal floats, integers in [0, bound)
    (bound 2 unless given after <), random booleans. A UsageError names a spec that does not parse."""
    import re

    import jax
    import jax.numpy as jnp

    specs = text.split()
    if not specs:
        raise UsageError("--args needs at least one spec, e.g. --args \"f64[4,8] i32[4]<6\"")
    out = []
    for spec, k in zip(specs, jax.random.split(key, len(specs))):
        match = re.fullmatch(rf"({'|'.join(ARG_DTYPES)})\[([0-9, ]*)\](?:<([0-9]+))?", spec)
        if not match:
            raise UsageError(f"cannot read the argument spec {spec!r}: expected DTYPE[SHAPE] with DTYPE one of "
                             f"{', '.join(ARG_DTYPES)}, e.g. f64[4,8], or i32[4]<6 for integers in [0, 6)")
        dtype, dims, bound = ARG_DTYPES[match[1]], match[2], match[3]
        shape = tuple(int(d) for d in dims.replace(" ", "").split(",") if d)
        if dtype == "bool":
            out.append(jax.random.bernoulli(k, 0.5, shape))
        elif dtype.startswith("int"):
            out.append(jax.random.randint(k, shape, 0, int(bound or 2), dtype=getattr(jnp, dtype)))
        else:
            out.append(jax.random.normal(k, shape, jnp.float32).astype(getattr(jnp, dtype)))
    return out


def _checkable(obj) -> bool:
    """A network, a loss head, or an instance with the layer protocol's three callables."""
    from .losses import Head
    from .network import Network

    return isinstance(obj, (Network, Head)) or (
        not isinstance(obj, type) and all(callable(getattr(obj, f, None)) for f in ("init", "forward", "backward")))


def print_report(report, show_traceback: bool = False) -> None:
    table = Table(title=f"{escape(report.subject)}: hand-coded backward vs jax.vjp vs finite differences")
    for col in ("tensor", "shape", "verdict", "rel err", "max abs", "worst at", "hand/auto", "auto vs fd", "kinks", "detail"):
        table.add_column(col, justify="left" if col in ("tensor", "verdict", "detail") else "right",
                         overflow="fold" if col == "detail" else "ellipsis")
    for r in report.rows:
        colour = "green" if r.ok else "red bold"
        table.add_row(escape(r.name), str(r.shape), f"[{colour}]{escape(r.verdict)}[/{colour}]", _format_err(r.rel_err),
                      _format_err(r.max_abs_err), str(r.worst_index), "-" if r.ratio != r.ratio else f"x{r.ratio:.3g}",
                      _format_err(r.fd_rel_err), str(r.kinks), escape("; ".join(t for t in (r.detail, r.diagnosis) if t)))
    console.print(table)
    console.print(f"eager vs jit: max rel. error {_format_err(report.jit_rel_err)}; tolerance {report.tol:g} (hand vs autodiff), "
                  f"{report.fd_tol:g} (autodiff vs finite differences)")
    if report.diagnosis:
        console.print(f"[red]diagnosis: {escape(report.diagnosis)}[/red]")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    for note in report.warnings:
        console.print(f"[yellow]warning: {escape(note)}[/yellow]")
    if report.traceback:
        if show_traceback:
            console.print(escape(report.traceback), highlight=False)
        else:
            console.print("(--traceback shows where your code raised)")


def run_check_target(args: argparse.Namespace) -> int:
    """Check a user's layer, network or loss head; 0 pass, 1 fail, 2 usage error."""
    import jax

    from .losses import Head
    from .network import Network
    from .verify import check_layer, check_loss, check_network

    try:
        obj = load_target(args.target, function=args.args is not None)
        key = jax.random.PRNGKey(args.seed)
        if _custom_rule(obj) or args.args is not None:
            if isinstance(obj, (Network, Head)) or not callable(obj):
                raise UsageError(f"{args.target} is not a function; --args checks jax.custom_vjp / custom_jvp functions "
                                 "and functions that call them")
            if args.args is None:
                raise UsageError("checking a custom_vjp function needs --args, e.g. --args \"f64[4,8] f64[8,3]\"")
            from .verify_vjp import check_vjp

            try:
                report = check_vjp(obj, *parse_arg_specs(args.args, jax.random.fold_in(key, 1)), key=key, fast=args.fast)
            except TypeError as err:  # a function that calls no custom rule: nothing to check
                raise UsageError(str(err)) from None
        elif isinstance(obj, Network):
            report = check_network(obj, key, batch=args.batch, fast=args.fast)
        elif isinstance(obj, Head):
            report = check_loss(obj, key, shape=(args.batch, *(args.shape or [3])))
        else:
            if not args.shape:
                raise UsageError("checking a layer needs --shape, its input shape without the batch axis (e.g. --shape 8)")
            report = check_layer(obj, key, in_shape=tuple(args.shape), batch=args.batch, fast=args.fast)
    except UsageError as err:
        _error(str(err), status_console)
        return 2
    if args.json:
        print(json.dumps(report.to_dict() | ({"traceback": report.traceback} if args.traceback else {}), indent=1, default=str))
    else:
        print_report(report, args.traceback)
    failing = report.failing()
    if report.passed:
        _say(args, f"[green]PASS: every tensor of {escape(report.subject)} agrees[/green]")
        return 0
    _say(args, "[red]FAIL: " + escape("; ".join(f"{r.name}: {r.verdict}" + (f" ({r.diagnosis or r.detail})" if r.diagnosis or r.detail else "")
                                               for r in failing)) + "[/red]")
    return 1


def run_check(args: argparse.Namespace) -> int:
    """The agreement battery: hand vs jax.grad vs finite differences, float64, a table; 1 on disagreement."""
    import jax

    with jax.enable_x64(True):  # float64 for the battery and the audit; a target's check sets its own precision
        if args.target:
            return run_check_target(args)
        if args.derivations:
            return run_derivations(args)
        return run_battery(args)


def run_battery(args: argparse.Namespace) -> int:
    """The agreement battery over the built-in components (float64); 1 when any disagrees."""
    import jax

    from .check import battery
    from .numerics import TOL_FINITE_DIFF, TOL_FLOAT64

    with status_console.status("running the agreement battery (float64)...", spinner="dots"):
        rows = battery(jax.random.PRNGKey(args.seed), only=args.only)
    if not rows:
        _say(args, f"[red]no component matches --only {escape(repr(args.only))}[/red]")
        return 2
    if args.json:
        print(json.dumps([{"component": r.component, "equation": r.equation, **r.agreement._asdict(), "passed": r.passed}
                          for r in rows], indent=1))
    else:
        table = Table(title="hand-coded backward (hand) vs jax.grad vs finite differences (fd): float64, max rel. error")
        for col in ("component", "equation", "hand/grad", "dZ,dA/grad", "hand/fd", "grad/fd", "verdict"):
            table.add_column(col, justify="left" if col in ("component", "equation") else "right")
        for r in rows:
            verdict = "[green]agree[/green]" if r.passed else "[red bold]DISAGREE[/red bold]"
            table.add_row(r.component, escape(r.equation), *map(_format_err, r.agreement), verdict)
        console.print(table)
        console.print(f"tolerances: {TOL_FLOAT64:g} against jax.grad, {TOL_FINITE_DIFF:g} against finite differences")
    failed = [r.component for r in rows if not r.passed]
    if failed:
        _say(args, f"[red]{len(failed)} of {len(rows)} disagree: {', '.join(failed)}[/red]")
        return 1
    _say(args, f"[green]all {len(rows)} components agree[/green]")
    return 0


DEFAULT_HEADS = {"classification": ("softmax", "cross_entropy"), "binary": ("sigmoid", "bce"), "regression": ("identity", "mse")}


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported on one line (exit status 2) instead of the usage text."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _ints(text: str) -> list[int]:
    """Comma-separated positive integers (widths, shapes)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every entry must be a positive integer, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _gradient_check(net, params, x, y) -> float:
    """Max relative error of the hand-coded gradient against jax.grad on one batch (any model with
    `value_and_grad` and `loss` taking (params, x, y): a network or a GPT)."""
    import jax

    from .numerics import rel_err

    return rel_err(jax.jit(net.value_and_grad)(params, x, y)[1], jax.jit(jax.grad(net.loss))(params, x, y))


def gradient_check_passes(net, params, x, y) -> bool:
    """Run `_gradient_check` before training and say how it went (float32 tolerance)."""
    from .numerics import TOL_FLOAT32

    err = _gradient_check(net, params, x, y)
    if err > TOL_FLOAT32:
        console.print(f"[red]gradient check failed: hand-coded vs jax.grad max relative error {err:.1e} > {TOL_FLOAT32:g}[/red]")
        return False
    console.print(f"gradient check: hand-coded backward agrees with jax.grad on one batch (max relative error {err:.1e}, float32)")
    return True


def training_progress(unit: str):
    """The progress bar of a training run: "epoch 3/30" or "iteration 500/2000", a description, the time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(unit), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console)


def run_train(args: argparse.Namespace) -> int:
    """Train an MLP; check the hand-coded gradient on one batch first; JSON, checkpoint and a plot."""
    if args.model == "gpt":
        return run_train_gpt(args)
    args.lr = 0.05 if args.lr is None else args.lr
    args.batch_size = 32 if args.batch_size is None else args.batch_size
    import jax
    from . import data as datasets
    from .network import mlp
    from .plot import plot_history
    from .checkpoint import CheckpointError
    from .train import TrainingDiverged, fit, initial_params, make_optimizer, make_schedule, resume_from

    try:
        ds = datasets.load(args.dataset, args.data_path)
    except (FileNotFoundError, ValueError, TypeError) as err:
        _error(str(err))
        return 2
    output, loss = DEFAULT_HEADS[ds.task]
    output, loss = args.output or output, args.loss or loss
    sizes = [ds.n_features, *args.widths, ds.n_outputs]
    hidden = args.activation if len(args.activation) > 1 else args.activation[0]
    try:
        if args.layers:
            from .architecture import layers_from_spec
            from .network import network

            net = network(layers_from_spec(args.layers, ds.n_outputs, datasets.IMAGE_SHAPES.get(args.dataset), ds.n_features),
                          (ds.n_features,),
                          output=output, loss=loss)
            described = " ".join(layer.name for layer in net.layers)
        else:
            net = mlp(sizes, hidden=hidden, output=output, loss=loss, init=args.init)
            described = f"MLP {sizes}, {hidden} hidden"
        steps = -(-len(ds.x_train) // args.batch_size)
        schedule = make_schedule(args.schedule, args.lr, steps, args.epochs, args.decay_rate, args.decay_epochs)
        optimizer = make_optimizer(args.optimizer, schedule, momentum=args.momentum, l2=args.l2, n_train=len(ds.x_train))
    except ValueError as err:
        _error(str(err))
        return 2
    try:  # a batch size that does not divide among the devices is refused by fit (make_epoch), exit 2
        mesh = None
        if args.devices > 1:
            from .parallel import ask_for_cpu_devices, make_mesh

            ask_for_cpu_devices(args.devices)  # a CPU's devices (a GPU's are what they are)
            mesh = make_mesh(args.devices)
    except ValueError as err:
        _error(str(err))
        return 2
    out = Path(args.out or f"runs/{args.dataset}-{args.grad_source}-seed{args.seed}")
    config = {k: v for k, v in vars(args).items() if k != "func"} | {"sizes": sizes, "output": output, "loss": loss, "out": str(out)}
    console.print(f"[bold]{args.dataset}[/bold]: {len(ds.x_train)} train / {len(ds.x_test)} test examples; "
                  f"{described}, {output} + {loss}; {args.optimizer} lr {args.lr}, batch {args.batch_size}"
                  + (f", data-parallel over {args.devices} {jax.devices()[0].platform} devices" if mesh else ""))

    key = jax.random.PRNGKey(args.seed)
    probe = initial_params(net, ds, key)  # the parameters fit starts from
    if args.resume:  # refuse a checkpoint that does not fit before any work, leaving it as it is
        try:
            _, done = resume_from(out, (probe, optimizer.init(probe)), config)
        except (FileNotFoundError, CheckpointError) as err:
            _error(str(err))
            return 2
        if len(done) >= args.epochs:
            _error(f"the checkpoint in {out} already holds {len(done)} epochs; ask for more with --epochs")
            return 2
    if not gradient_check_passes(net, probe, ds.x_train[: args.batch_size], ds.y_train[: args.batch_size]):
        return 1
    with training_progress("epoch") as progress:
        task = progress.add_task("compiling...", total=args.epochs)

        def show(record: dict) -> None:
            acc = f"  test acc {100 * record['test_accuracy']:.2f}%" if "test_accuracy" in record else ""
            progress.update(task, completed=record["epoch"], description=f"train cost {record['train_cost']:.4f}{acc}")

        try:
            result = fit(net, ds, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size, key=key,
                         grad_source=args.grad_source, out_dir=out, resume=args.resume, config=config, on_epoch=show,
                         mesh=mesh)
        except (TrainingDiverged, FileNotFoundError, ValueError) as err:
            progress.stop()
            console.print(f"[red]{escape(str(err))}[/red]")
            return 3 if isinstance(err, TrainingDiverged) else 2
    history = result.history
    plot_history(history, out / "curves.png", f"{args.dataset}: MLP {sizes}, {args.optimizer}, {args.grad_source} gradients")
    last = history[-1]
    summary = f"test cost {last['test_cost']:.4f}"
    if "test_accuracy" in last:
        summary = f"test accuracy {100 * last['test_accuracy']:.2f}% (best {100 * max(h['test_accuracy'] for h in history):.2f}%), " + summary
    console.print(f"done after {last['epoch']} epochs: {summary}")
    console.print(f"results: {out / 'results.json'}, plot: {out / 'curves.png'}, checkpoint: {out / 'checkpoint.npz'}")
    return 0


def _verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]missed[/red]"


def run_bench(args: argparse.Namespace) -> int:
    """The benchmark: tables on the terminal, JSON and a PNG plot in --out."""
    from .bench import run_benchmark, targets, torch_module, write_plot

    if torch_module() is None:
        console.print("PyTorch is not installed: its columns are skipped (pip install \".[torch]\" to add them)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (args.memory or args.gpt_only):  # the conv benchmark splits each batch across the cores
        from .bench_conv import one_device_per_core
        one_device_per_core()
    if args.memory:
        return _write_bench(args, out, _bench_memory(args, out))
    if args.gpt_only:
        return _write_bench(args, out, _bench_gpt(args, {}))
    if args.conv_only:
        return _write_bench(args, out, _bench_conv(args, {}))
    try:
        with status_console.status("benchmarking...", spinner="dots") as spinner:
            results = run_benchmark(args.quick, args.gpu, args.torch_compile, args.data_path, args.rounds,
                                    on_config=lambda name: spinner.update(f"benchmarking {name}..."))
    except RuntimeError as err:
        _error(str(err))
        return 2
    limit = results["matmul_limit"]
    console.print(f"matmul limit (float32 through JAX, best of 2048^2 and 4096^2): {limit['best_gflops']:.0f} GFLOP/s "
                  f"(numpy 4096^2: {limit['numpy_4096_gflops']:.0f}); {results['machine']['processor']}, "
                  f"{results['machine']['backend']}, {results['rounds']} interleaved rounds")
    table = Table(title="per SGD step (medians of interleaved rounds; compile time apart)")
    for col in ("configuration", "implementation", "ms / step", "IQR (ms)", "GFLOP/s", "% of limit", "peak MB", "compile s",
                "XLA dots/fusions"):
        table.add_column(col, justify="left" if col in ("configuration", "implementation") else "right")
    for c in results["configs"]:
        for impl, t in c["per_step_seconds"].items():
            mem = c["peak_bytes"].get(impl)
            comp = c["compile_seconds"].get(impl)
            xla = c["xla_step"].get(impl)
            table.add_row(c["config"]["name"], impl, f"{1e3 * t['median']:.3f}", f"{1e3 * t['q1']:.3f}-{1e3 * t['q3']:.3f}",
                          f"{t['gflops']:.1f}", f"{100 * t['fraction_of_limit']:.0f}%",
                          "-" if mem is None else f"{mem / 2**20:.1f}", "-" if comp is None else f"{comp:.2f}",
                          f"{xla['dots']}/{xla['kernels']}" if xla else "")
        table.add_row(c["config"]["name"], "[bold]hand / jax.grad[/bold]", f"{c['hand_over_autodiff']['median']:.3f}",
                      f"{c['hand_over_autodiff']['q1']:.3f}-{c['hand_over_autodiff']['q3']:.3f}", "", "", "", "", "",
                      end_section=True)
    console.print(table)
    epoch = results["nielsen_epoch"]
    if epoch:
        et = Table(title=f"one epoch of Nielsen's [784,30,10], batch 10, fresh shuffle; data: {epoch['data']}"
                         + (f"; baselines extrapolated from {epoch['extrapolated_from_examples']} examples"
                            if epoch["extrapolated_from_examples"] else ""))
        for col in ("implementation", "s / epoch (median)", "IQR (s)"):
            et.add_column(col)
        for impl, t in epoch["seconds_per_epoch"].items():
            et.add_row(impl, f"{t['median']:.3f}", f"{t['q1']:.3f}-{t['q3']:.3f}")
        console.print(et)
    _print_targets("targets (issue 8)", targets(results))
    suffix = "-quick" if args.quick else ""
    write_plot(results, out / f"bench{suffix}.png")
    console.print(f"plot: {out / f'bench{suffix}.png'}")
    return _write_bench(args, out, _bench_gpt(args, _bench_conv(args, results)))


def _print_targets(title: str, rows: list[tuple[str, bool, str]]) -> None:
    """A table of (target, met, measured) rows, each with its verdict."""
    table = Table(title=title)
    for col in ("target", "measured", "verdict"):
        table.add_column(col)
    for name, ok, measured in rows:
        table.add_row(name, measured, _verdict(ok))
    console.print(table)


def _print_op_profile(title: str, rows: list[dict]) -> None:
    """A `fnbackprop.bench.op_profile` as a table: operation, its result type and origin, ms per step."""
    table = Table(title=title)
    for col in ("operation", "result and origin", "ms per step"):
        table.add_column(col, justify="right" if col == "ms per step" else "left")
    for row in rows:
        table.add_row(row["op"], row["what"], f"{row['ms']:.2f}")
    console.print(table)


def _bench_conv(args: argparse.Namespace, results: dict) -> dict:
    """The conv network's step (`fnbackprop.bench_conv`): a table, the profile, the targets; `results` with "conv" added."""
    from .bench_conv import conv_targets, run_conv_benchmark

    with status_console.status("benchmarking the conv network's step...", spinner="dots"):
        conv = run_conv_benchmark(args.quick, args.rounds)
    split = f"; JAX steps data-parallel over {conv[0]['devices']} CPU devices, one per core" if conv[0]["devices"] > 1 else ""
    table = Table(title=f"Nielsen's two-conv-pool network, per SGD step (medians of interleaved rounds, 100 steps a call{split})")
    for col in ("batch", "implementation", "ms / step", "IQR (ms)", "s / 50k epoch"):
        table.add_column(col, justify="left" if col == "implementation" else "right")
    for r in conv:
        for name, t in r["ms_per_step"].items():
            table.add_row(str(r["batch"]), name, f"{t['median']:.2f}", f"{t['q1']:.2f}-{t['q3']:.2f}",
                          f"{r['seconds_per_epoch_50k'][name]:.0f}", end_section=name == list(r["ms_per_step"])[-1])
    console.print(table)
    for r in conv:
        pt = Table(title=f"where the hand-coded step's time goes, batch {r['batch']} (each layer jitted alone)")
        for col in ("layer", "forward ms", "backward ms"):
            pt.add_column(col, justify="left" if col == "layer" else "right")
        for row in r["profile"]:
            pt.add_row(row["layer"], f"{row['forward_ms']:.3f}", f"{row['backward_ms']:.3f}")
        console.print(pt)
        _print_op_profile(f"hand im2col on one device: the scanned step's costliest compiled operations, batch {r['batch']}",
                          r["op_profile"])
    _print_targets("targets (issue 14)", conv_targets(conv))
    return {**results, "conv": conv}


def _bench_gpt(args: argparse.Namespace, results: dict) -> dict:
    """The GPT's training step (`fnbackprop.bench_gpt`): a table, the profile, the targets; `results` with "gpt" added."""
    from .bench_gpt import gpt_targets, run_gpt_benchmark

    with status_console.status("benchmarking the GPT's step...", spinner="dots"):
        gpt = run_gpt_benchmark(args.quick, args.rounds)
    table = Table(title="GPT training step, AdamW (medians of interleaved rounds)")
    for col in ("size", "implementation", "ms / step", "IQR (ms)", "GFLOP / step", "% of matmul limit"):
        table.add_column(col, justify="left" if col in ("size", "implementation") else "right")
    for r in gpt:
        for name, t in r["ms_per_step"].items():
            table.add_row(r["size"], name, f"{t['median']:.1f}", f"{t['q1']:.1f}-{t['q3']:.1f}", f"{r['gflop_per_step']:.2f}",
                          f"{100 * r['fraction_of_matmul_limit'][name]:.0f}%", end_section=name == list(r["ms_per_step"])[-1])
    console.print(table)
    for r in gpt:
        for name, rows in r["profile"].items():
            _print_op_profile(f"{name}: the step's costliest compiled operations, {r['size']}", rows)
    _print_targets("targets (issue 15)", gpt_targets(gpt))
    return {**results, "gpt": gpt}


def _bench_memory(args: argparse.Namespace, out: Path) -> dict:
    """The memory section (`fnbackprop.bench_memory`): attention against T, the head, the longest context in 2 GiB."""
    from .bench_memory import plot_memory, run_memory_benchmark

    with status_console.status("measuring memory (compiling every step; a few minutes)...", spinner="dots"):
        results = run_memory_benchmark(args.quick)
    names = list(results["attention"][0]["peak_mib"])
    table = Table(title="attention step, batch 1, 2 heads, width 64: peak MiB (ms per step)")
    table.add_column("T", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for r in results["attention"]:
        table.add_row(f"{r['T']:,}", *(f"{r['peak_mib'][n]:.1f}" + (f" ({r['ms'][n]:.0f} ms)" if n in r["ms"] else "") for n in names))
    console.print(table)
    head = results["head"]
    ht = Table(title=f"cross-entropy head, N {head['N']:,} rows, V {head['V']:,}, d {head['d']}: peak MiB (ms per step)")
    for name in head["peak_mib"]:
        ht.add_column(name, justify="right")
    ht.add_row(*(f"{head['peak_mib'][n]:.1f}" + (f" ({head['ms'][n]:.0f} ms)" if n in head["ms"] else "") for n in head["peak_mib"]))
    ht.add_row(*(f"temporaries {head['temp_mib'][n]:.1f}" for n in head["peak_mib"]))
    console.print(ht)
    for name, check in head.get("process_peak", {}).items():
        console.print(f"  {name}: the process's resident set grew {check['measured_mib']:.0f} MiB during the step; XLA's plan: "
                      f"{check['xla_temp_plus_out_mib']:.0f} MiB of temporaries and outputs")
    step = results["gpt_step"]
    gt = Table(title="a whole GPT step, 4 x 128, context 1,024, batch 8: peak MiB (ms per step)")
    for name in step["peak_mib"]:
        gt.add_column(name, justify="right")
    gt.add_row(*(f"{step['peak_mib'][n]:.1f}" + (f" ({step['ms'][n]:.0f} ms)" if n in step["ms"] else "") for n in step["peak_mib"]))
    console.print(gt)
    console.print("longest context whose attention step fits 2 GiB: "
                  + ", ".join(f"{n} {t:,}" for n, t in results["longest_context_2GiB"].items()))
    _print_targets("targets (issue 16)", results["targets"])
    suffix = "-quick" if args.quick else ""
    plot_memory(results, out / f"bench-memory{suffix}.png")
    console.print(f"plot: {out / f'bench-memory{suffix}.png'}")
    return {"memory": results}


def _write_bench(args: argparse.Namespace, out: Path, results: dict) -> int:
    from .bench import write_json

    suffix = ("-quick" if args.quick else "") + ("-conv" if args.conv_only else "") + ("-gpt" if args.gpt_only else "") + \
        ("-memory" if args.memory else "")
    write_json(results, out / f"bench{suffix}.json")
    console.print(f"results: {out / f'bench{suffix}.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fnbackprop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check the hand-coded backward against jax.grad and finite differences",
                           description="With no target: the agreement battery over the built-in components. With "
                                       "module:attribute (or file.py:attribute): check your own layer, network or loss head, "
                                       "or a jax.custom_vjp function with --args.")
    check.add_argument("target", nargs="?", help="module:attribute or path/to/file.py:attribute of a layer, network or head")
    check.add_argument("--shape", type=_ints, default=None, help="a layer's input shape without the batch axis, e.g. 8")
    check.add_argument("--batch", type=positive_int, default=4, help="batch size of the random inputs")
    check.add_argument("--only", default=None, help="run only components whose name contains this text")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument("--derivations", action="store_true",
                       help="audit the source texts' equations (literal transcriptions) against jax.grad")
    check.add_argument("--seed", type=seed_int, default=0)
    check.add_argument("--traceback", action="store_true", help="show the traceback where checked code raised")
    check.add_argument("--fast", action="store_true",
                       help="finite differences along random directions, not entry by entry (for big models)")
    check.add_argument("--args", default=None,
                       help='a custom_vjp function\'s arguments, e.g. "f64[4,8] f64[8,3] i32[4]<6" (floats normal, '
                            'integers in [0, bound), default bound 2); floats are checked in float64')
    check.set_defaults(func=run_check)

    train = sub.add_parser("train", help="train an MLP or conv net (default: the bundled digits, hand-coded gradients), "
                                          "or with --model gpt a character-level GPT",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--model", default="mlp", choices=["mlp", "gpt"], help="mlp: --dataset etc.; gpt: the options below")
    train.add_argument("--dataset", default="digits", choices=["digits", "breast_cancer", "diabetes", "mnist"])
    train.add_argument("--data-path", default=None, help="MNIST: mnist.pkl.gz or a folder of IDX files (else $FNBACKPROP_MNIST)")
    train.add_argument("--widths", type=_ints, default=[64], help="hidden layer widths, comma-separated")
    train.add_argument("--layers", default=None,
                       help='any architecture instead of --widths/--activation, e.g. "conv(20,5) relu maxpool(2) dense(100) relu" '
                            "(see fnbackprop.architecture); the output layer is added")
    train.add_argument("--activation", type=_names, default=["relu"], help="hidden activation, or one per hidden layer")
    train.add_argument("--output", default=None, help="output activation (default: by task)")
    train.add_argument("--loss", default=None, help="loss (default: by task)")
    train.add_argument("--init", default="he", help="weight init: lecun, he, nielsen, nielsen_large")
    train.add_argument("--optimizer", default="momentum", help="sgd, momentum, nesterov, adam, rmsprop, adagrad")
    train.add_argument("--lr", type=in_range(float, 0, low_open=True), default=None, help="learning rate eta (MLP: 0.05)")
    train.add_argument("--momentum", type=in_range(float, 0, 1, high_open=True), default=0.9)
    train.add_argument("--schedule", default="constant", help="constant, exponential, step, cosine")
    train.add_argument("--decay-rate", type=in_range(float, 0, 1, low_open=True), default=0.5, help="exponential/step: factor per --decay-epochs")
    train.add_argument("--decay-epochs", type=in_range(float, 0, low_open=True), default=10)
    train.add_argument("--l2", type=in_range(float, 0), default=0.0, help="lambda of Dong's L2 rule W -= (eta lambda / n) W")
    train.add_argument("--batch-size", type=positive_int, default=None, help="MLP: 32")
    train.add_argument("--epochs", type=positive_int, default=30)
    train.add_argument("--seed", type=seed_int, default=0)
    train.add_argument("--grad-source", default="hand", choices=["hand", "autodiff"])
    train.add_argument("--out", default=None, help="output folder (default: runs/DATASET-SOURCE-seedN)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument("--devices", type=positive_int, default=1,
                       help="data-parallel over N devices (on a CPU, N devices are made: one per core is the useful count)")
    add_gpt_options(train)
    train.set_defaults(func=run_train)
    add_sample_command(sub)
    add_exercise_command(sub)

    bench = sub.add_parser("bench", help="time the hand-coded backward against jax.grad, PyTorch and numpy",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bench.add_argument("--quick", action="store_true", help="two configurations, few rounds: under a minute")
    bench.add_argument("--gpu", action="store_true", help="run the grid on the GPU (JAX, and torch with CUDA)")
    bench.add_argument("--torch-compile", action="store_true", help="also time torch.compile (slow to compile)")
    bench.add_argument("--rounds", type=positive_int, default=None, help="interleaved rounds (default 9, quick 3)")
    bench.add_argument("--data-path", default=None, help="MNIST for the epoch timing (else $FNBACKPROP_MNIST, ../shared/data)")
    bench.add_argument("--out", default="runs/bench", help="folder for bench.json and bench.png")
    bench.add_argument("--conv-only", action="store_true", help="only the conv network's step (bench-conv.json)")
    bench.add_argument("--gpt-only", action="store_true", help="only the GPT's step (bench-gpt.json)")
    bench.add_argument("--memory", action="store_true",
                       help="only the memory section: blockwise attention, the chunked head (bench-memory.json)")
    bench.set_defaults(func=run_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a usage error (2, one line already printed) or --help (0)
        return stop.code if isinstance(stop.code, int) else 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
