"""`fnbackprop` on the command line: one module per command, the shared helpers in `common`."""

from .main import build_parser as build_parser, console as console, main as main
