"""`fnbackprop.testing`: the checker's assertions for your own test suite (they live in `fnbackprop.check.testing`)."""

from .check.testing import *  # noqa: F401,F403
