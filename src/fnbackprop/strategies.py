"""`fnbackprop.strategies`: hypothesis strategies for gradient checks (they live in `fnbackprop.check.strategies`)."""

from .check.strategies import *  # noqa: F401,F403
