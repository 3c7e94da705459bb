"""The `fnbackprop` command: the parser of its six commands, and the dispatch."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from typing import NoReturn

from .._version import __version__
from .audit import add_audit_command
from .bench import add_bench_command
from .check import add_check_command
from .common import OneLineParser, given_options, use_compile_cache
from .exercise import add_exercise_command
from .gpt import add_sample_command
from .train import add_train_command

DESCRIPTION = """Hand-derived backpropagation, compiled with JAX and checked against jax.grad.

`fnbackprop COMMAND --help` describes each command's options."""


def build_parser() -> OneLineParser:
    from argparse import RawDescriptionHelpFormatter

    parser = OneLineParser(prog="fnbackprop", description=DESCRIPTION, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fnbackprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    add_check_command(sub)
    add_audit_command(sub)
    add_train_command(sub)
    add_sample_command(sub)
    add_exercise_command(sub)
    add_bench_command(sub)
    return parser


def command_parsers(parser: OneLineParser) -> dict[str, OneLineParser]:
    """Each command's own parser, by name."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """Run `fnbackprop ARGV`; the exit status: 0 done, 1 a check failed, 2 a usage error (one line), 3 a
    training run diverged."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        command_parser = command_parsers(parser)[args.command]
        if unknown:  # said by the command, which knows its options
            command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as stop:  # a usage error (2, one line already printed), --help or --version (0)
        return stop.code if isinstance(stop.code, int) else 2
    args.given = given_options(command_parser, argv)
    if args.command in ("train", "sample", "bench"):  # the commands that compile programs worth keeping
        args.compile_cache = use_compile_cache()
    return args.func(args)


def console() -> NoReturn:
    """The `fnbackprop` command itself: `main()`, then the exit a normal one makes (the atexit handlers: JAX waits
    for pending effects, logging flushes, file locks are released; the output flushed), without the interpreter's
    teardown of JAX and XLA after it, which took 0.3-0.4 s of every run on 2 CPU cores. An exception that escapes
    `main()` (a bug) exits as Python exits, with its traceback."""
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (fnbackprop ... | head): nothing left to say
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
