"""The one version number (`fnbackprop.__version__`; pyproject.toml reads it from here)."""

__version__ = "0.2.0"
