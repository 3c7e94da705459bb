"""`fnbackprop` on the command line: check | train."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

console = Console()


def _format_err(value: float) -> str:
    return "-" if value != value else f"{value:.1e}"


def run_check(args: argparse.Namespace) -> int:
    """The agreement battery: hand vs jax.grad vs finite differences, float64, a table; 1 on disagreement."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from .check import battery
    from .numerics import TOL_FINITE_DIFF, TOL_FLOAT64

    with console.status("running the agreement battery (float64)...", spinner="dots"):
        rows = battery(jax.random.PRNGKey(args.seed), only=args.only)
    if not rows:
        console.print(f"[red]no component matches --only {args.only!r}[/red]")
        return 2
    if args.json:
        print(json.dumps([{"component": r.component, **r.agreement._asdict(), "passed": r.passed} for r in rows], indent=1))
    else:
        table = Table(title="hand-coded backward (hand) vs jax.grad vs finite differences (fd): float64, max rel. error")
        for col in ("component", "hand/grad", "dZ,dA/grad", "hand/fd", "grad/fd", "verdict"):
            table.add_column(col, justify="left" if col == "component" else "right")
        for r in rows:
            verdict = "[green]agree[/green]" if r.passed else "[red bold]DISAGREE[/red bold]"
            table.add_row(r.component, *map(_format_err, r.agreement), verdict)
        console.print(table)
        console.print(f"tolerances: {TOL_FLOAT64:g} against jax.grad, {TOL_FINITE_DIFF:g} against finite differences")
    failed = [r.component for r in rows if not r.passed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(rows)} disagree: {', '.join(failed)}[/red]")
        return 1
    console.print(f"[green]all {len(rows)} components agree[/green]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fnbackprop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check the hand-coded backward against jax.grad and finite differences")
    check.add_argument("--only", default=None, help="run only components whose name contains this text")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=run_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
