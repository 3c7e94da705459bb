"""`fnbackprop check`: the agreement battery, the derivation audit, or a user's own layer, network, loss
head or custom rule."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..check.verdicts import format_err
from .common import UsageError, console, error, int_list, not_applicable, positive_int, say, seed_int, status_console


def run_derivations(args: argparse.Namespace) -> int:
    """The derivation audit; 0 when every verdict is the expected one (known mistakes flagged)."""
    from ..derivations import audit

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
        say(args, f"[red]{len(unexpected)} verdicts differ from the audit's expectation[/red]")
        return 1
    say(args, f"[green]all {len(rows)} verdicts as expected: {len(rows) - flagged} equations hold, "
               f"{flagged} printed mistakes flagged[/green]")
    return 0


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
            if module_spec is None or module_spec.loader is None:
                raise UsageError(f"cannot load {where} as a Python module")
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
    from ..losses import Head
    from ..models.network import Network

    return isinstance(obj, (Network, Head)) or (
        not isinstance(obj, type) and all(callable(getattr(obj, f, None)) for f in ("init", "forward", "backward")))


def print_report(report, show_traceback: bool = False) -> None:
    table = Table(title=f"{escape(report.subject)}: hand-coded backward vs jax.vjp vs finite differences")
    for col in ("tensor", "shape", "verdict", "rel err", "max abs", "worst at", "hand/auto", "auto vs fd", "kinks", "detail"):
        table.add_column(col, justify="left" if col in ("tensor", "verdict", "detail") else "right",
                         overflow="fold" if col == "detail" else "ellipsis")
    for r in report.rows:
        colour = "green" if r.ok else "red bold"
        table.add_row(escape(r.name), str(r.shape), f"[{colour}]{escape(r.verdict)}[/{colour}]", format_err(r.rel_err),
                      format_err(r.max_abs_err), str(r.worst_index), "-" if r.ratio != r.ratio else f"x{r.ratio:.3g}",
                      format_err(r.fd_rel_err), str(r.kinks), escape("; ".join(t for t in (r.detail, r.diagnosis) if t)))
    console.print(table)
    console.print(f"eager vs jit: max rel. error {format_err(report.jit_rel_err)}; tolerance {report.tol:g} (hand vs autodiff), "
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


def float_dtype(arrays: list):
    """The one floating dtype of the --args arrays, the precision the rule is checked in (float64 when
    none is floating); a UsageError when they mix several, rather than casting any of them."""
    import jax.numpy as jnp

    dtypes = sorted({str(a.dtype) for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)})
    if len(dtypes) > 1:
        raise UsageError(f"--args mixes {', '.join(dtypes)}: a rule is checked in one precision, so give every float "
                         "argument the same dtype")
    return jnp.dtype(dtypes[0]) if dtypes else jnp.dtype("float64")


#: the options each kind of target takes, beyond --json, --seed and --traceback
TARGET_OPTIONS = {"layer": ("shape", "batch", "fast"), "network": ("batch", "fast"), "loss head": ("shape", "batch"),
                  "custom rule": ("args", "fast")}


def target_kind(obj, with_args: bool) -> str:
    from ..losses import Head
    from ..models.network import Network

    if isinstance(obj, Network):
        return "network"
    if isinstance(obj, Head):
        return "loss head"
    return "custom rule" if _custom_rule(obj) or with_args else "layer"


def run_check_target(args: argparse.Namespace) -> int:
    """Check a user's layer, network, loss head or custom rule; 0 pass, 1 fail, 2 usage error."""
    import jax

    from ..check.verify import check_layer, check_loss, check_network

    try:
        obj = load_target(args.target, function=args.args is not None)
        kind = target_kind(obj, args.args is not None)
        takes = {"json", "seed", "traceback", *TARGET_OPTIONS[kind]}
        wrong = not_applicable(args.given, set(args.given) - takes, f"to a {kind} ({args.target})")
        if wrong:
            raise UsageError(wrong)
        key = jax.random.PRNGKey(args.seed)
        if kind == "custom rule":
            if not callable(obj):
                raise UsageError(f"{args.target} is not a function; --args checks jax.custom_vjp / custom_jvp functions "
                                 "and functions that call them")
            if args.args is None:
                raise UsageError("checking a custom_vjp function needs --args, e.g. --args \"f64[4,8] f64[8,3]\"")
            from ..check.vjp import check_vjp

            arrays = parse_arg_specs(args.args, jax.random.fold_in(key, 1))
            try:
                report = check_vjp(obj, *arrays, key=key, fast=args.fast, dtype=float_dtype(arrays))
            except TypeError as err:  # a function that calls no custom rule: nothing to check
                raise UsageError(str(err)) from None
        elif kind == "network":
            report = check_network(obj, key, batch=args.batch, fast=args.fast)
        elif kind == "loss head":
            report = check_loss(obj, key, shape=(args.batch, *(args.shape or [3])))
        else:
            if not args.shape:
                raise UsageError("checking a layer needs --shape, its input shape without the batch axis (e.g. --shape 8)")
            report = check_layer(obj, key, in_shape=tuple(args.shape), batch=args.batch, fast=args.fast)
    except UsageError as err:
        error("check", str(err), status_console)
        return 2
    if args.json:
        print(json.dumps(report.to_dict() | ({"traceback": report.traceback} if args.traceback else {}), indent=1, default=str))
    else:
        print_report(report, args.traceback)
    colour = "green" if report.passed else "red"
    say(args, f"[{colour}]{escape(report.verdict_line())}[/{colour}]")
    return 0 if report.passed else 1


def run_check(args: argparse.Namespace) -> int:
    """The agreement battery, the derivation audit, or a target; options of another mode are refused."""
    import jax

    if args.target:  # the target's own options are judged once its kind is known (run_check_target)
        wrong = not_applicable(args.given, ("only", "derivations"), f"to a target ({args.target})")
    elif args.derivations:
        wrong = not_applicable(args.given, args.given - {"json", "seed", "derivations"}, "to --derivations")
    else:
        wrong = not_applicable(args.given, args.given - {"json", "seed", "only"},
                               "to the agreement battery (they are for a target: module:attribute)")
    if wrong:
        error("check", wrong)
        return 2
    with jax.enable_x64(True):  # float64 for the battery and the audit; a target's check sets its own precision
        if args.target:
            return run_check_target(args)
        if args.derivations:
            return run_derivations(args)
        return run_battery(args)


def run_battery(args: argparse.Namespace) -> int:
    """The agreement battery over the built-in components (float64); 1 when any disagrees."""
    import jax

    from ..check.battery import battery
    from ..check.numerics import TOL_FINITE_DIFF, TOL_FLOAT64

    with status_console.status("running the agreement battery (float64)...", spinner="dots"):
        rows = battery(jax.random.PRNGKey(args.seed), only=args.only)
    if not rows:
        say(args, f"[red]no component matches --only {escape(repr(args.only))}[/red]")
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
            table.add_row(r.component, escape(r.equation), *map(format_err, r.agreement), verdict)
        console.print(table)
        console.print(f"tolerances: {TOL_FLOAT64:g} against jax.grad, {TOL_FINITE_DIFF:g} against finite differences")
    failed = [r.component for r in rows if not r.passed]
    if failed:
        say(args, f"[red]{len(failed)} of {len(rows)} disagree: {', '.join(failed)}[/red]")
        return 1
    say(args, f"[green]all {len(rows)} components agree[/green]")
    return 0




def add_check_command(sub) -> None:
    check = sub.add_parser("check", help="check a backward pass against jax.grad and finite differences",
                           description="With no target: the agreement battery over the built-in components (float64). With "
                                       "--derivations: the source texts' equations audited. With module:attribute (or "
                                       "file.py:attribute): check your own layer (--shape), network, loss head, or a "
                                       "jax.custom_vjp / custom_jvp function (--args). Exit status: 0 pass, 1 fail, 2 usage error.")
    check.add_argument("target", nargs="?", help="module:attribute or path/to/file.py:attribute of a layer, network, loss head "
                                                 "or custom rule")
    check.add_argument("--shape", type=int_list, default=None, help="a layer's input shape without the batch axis, e.g. 8 or 4,4,3")
    check.add_argument("--batch", type=positive_int, default=4, help="batch size of the random inputs")
    check.add_argument("--args", default=None,
                       help='a custom rule\'s arguments, e.g. "f64[4,8] f64[8,3] i32[4]<6" (floats normal, integers in '
                            '[0, bound), default bound 2); the rule is checked in the precision of its float arguments '
                            '(one dtype for all of them)')
    check.add_argument("--fast", action="store_true",
                       help="finite differences along random directions, not entry by entry (for big models)")
    check.add_argument("--only", default=None, help="the battery: only components whose name contains this text")
    check.add_argument("--derivations", action="store_true",
                       help="audit the source texts' equations (literal transcriptions) against jax.grad")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument("--seed", type=seed_int, default=0, help="the random inputs and parameters")
    check.add_argument("--traceback", action="store_true", help="show the traceback where the checked code raised")
    check.set_defaults(func=run_check)
