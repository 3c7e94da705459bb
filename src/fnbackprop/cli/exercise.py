"""`fnbackprop exercise list | start NAME [--dir D] | check FILE [--hint]`: derive-it-yourself exercises."""

from __future__ import annotations

import argparse

from .common import console, error


def add_exercise_command(sub) -> None:
    exercise = sub.add_parser("exercise", help="derive-it-yourself exercises: list, start one, check your backward",
                              description="Write a layer's backward yourself and have it graded: each gradient pass or "
                                          "fail, and what kind of mistake a wrong one shows (never the solution).")
    actions = exercise.add_subparsers(dest="action", required=True, parser_class=type(exercise), metavar="ACTION",
                                      help="list the exercises, start one, or check your backward")
    actions.add_parser("list", help="the exercises")
    start = actions.add_parser("start", help="write NAME.py: the layer's init and forward, and a backward for you to fill in")
    start.add_argument("name", help="an exercise (`fnbackprop exercise list`)")
    start.add_argument("--dir", default=".", help="the folder to write NAME.py in")
    start.add_argument("--force", action="store_true", help="overwrite an existing NAME.py")
    check = actions.add_parser("check", help="grade FILE: its forward confirmed, then every gradient")
    check.add_argument("file", help="the exercise file (written by `start`)")
    check.add_argument("--hint", action="store_true", help="also show the next hint (one more each time)")
    exercise.set_defaults(func=run_exercise)


def run_exercise(args: argparse.Namespace) -> int:
    from ..exercises import EXERCISES, ExerciseError, grade, next_hint, start

    try:
        if args.action == "list":
            for name, ex in EXERCISES.items():
                console.print(f"{name:<22} {ex.title}", highlight=False, soft_wrap=True)
            console.print("Start one with `fnbackprop exercise start NAME`.", highlight=False)
            return 0
        if args.action == "start":
            path = start(args.name, args.dir, args.force)
            console.print(f"wrote {path}: fill in its backward, then run `fnbackprop exercise check {path}`", highlight=False,
                          soft_wrap=True)
            return 0
        result = grade(args.file)
        for line in result.lines:
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        if args.hint:
            console.print(next_hint(args.file), highlight=False, soft_wrap=True, markup=False)
        return 0 if result.passed else 1
    except ExerciseError as err:
        error("exercise", str(err))
        return 2
