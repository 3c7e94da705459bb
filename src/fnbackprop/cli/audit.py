"""`fnbackprop audit MODULE [MODULE ...]`: every custom rule of an installed package, checked."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from .common import console, error, seed_int


def add_audit_command(sub) -> None:
    audit = sub.add_parser("audit", help="check every custom_jvp / custom_vjp rule of installed modules",
                           description="Find every jax.custom_jvp and jax.custom_vjp rule reachable from each MODULE's public "
                                       "names, and every public function that calls one, and check each with check_vjp at "
                                       "a random point and at the special points where conventions live (zeros, ties, the "
                                       "edges of a domain). Exit status: 0 every rule passes, 1 one fails, 2 usage error.")
    audit.add_argument("modules", nargs="+", metavar="MODULE", help="importable modules, e.g. jax.nn jax.scipy.special optax")
    audit.add_argument("--specs", default=None,
                       help='a TOML file of argument specs for functions that need a domain, integers or other shapes: '
                            'a [specs] table of "qualified.name" = "f64[4]>0 f64[4](0,1) i32[4]<6" (see fb.audit)')
    audit.add_argument("--json", action="store_true", help="print the rows as JSON")
    audit.add_argument("--seed", type=seed_int, default=0, help="the random points")
    audit.set_defaults(func=run_audit)


def read_specs_file(path: str) -> dict[str, str]:
    """The [specs] table of a TOML file, each spec read once to refuse a bad one (ValueError, one line)."""
    import tomllib

    from ..check.audit import read_specs

    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise ValueError(f"no specs file {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not TOML: {err}") from None
    specs = table.get("specs")
    if not isinstance(specs, dict) or not all(isinstance(v, str) for v in specs.values()):
        raise ValueError(f'{path} needs a [specs] table of "qualified.name" = "f64[4] ..." strings')
    for name, text in specs.items():
        try:
            read_specs(text)
        except ValueError as err:
            raise ValueError(f"{path}, {name}: {err}") from None
    return specs


def run_audit(args: argparse.Namespace) -> int:
    import importlib

    import jax
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ..check.audit import audit

    try:
        specs = read_specs_file(args.specs) if args.specs else {}
        modules = []
        for name in args.modules:
            try:
                modules.append(importlib.import_module(name))
            except Exception as err:  # noqa: BLE001 (any import failure is the user's to read, in one line)
                raise ValueError(f"cannot import {name}: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}") from None
    except ValueError as err:
        error("audit", str(err))
        return 2
    with Progress(TextColumn("rule"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("finding the rules...", total=None)

        def show(row, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=f"{row.name}: {row.verdict}")

        with contextlib.redirect_stdout(sys.stderr):  # what the audited code prints (debug callbacks) is not our output
            rows = audit(*modules, specs=specs, key=jax.random.PRNGKey(args.seed), on_row=show)
    failed = any(r.verdict == "fail" for r in rows)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
        return 1 if failed else 0
    table = Table(title=f"custom rules of {', '.join(args.modules)}: check_vjp at a random point, zeros, ties and domain edges")
    for col in ("rule", "kind", "verdict", "worst error", "reference", "points", "diagnosis or detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        colour = {"pass": "green", "fail": "red"}.get(r.verdict, "yellow")
        table.add_row(r.name, r.kind, f"[{colour}]{r.verdict}[/{colour}]", "-" if r.worst_error != r.worst_error else f"{r.worst_error:.1e}",
                      r.reference or "-", ", ".join(r.points) or "-", r.diagnosis or r.detail or "")
    console.print(table)
    counts = {v: sum(r.verdict == v for r in rows) for v in ("pass", "fail", "skipped")}
    console.print(f"{len(rows)} rules and callers: {counts['pass']} pass, {counts['fail']} fail, {counts['skipped']} skipped")
    return 1 if failed else 0
