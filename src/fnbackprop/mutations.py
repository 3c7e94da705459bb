"""The planted-mistake catalogues, importable as `fnbackprop.mutations`: this name is the module
`fnbackprop.check.mutations` itself (the network, layer, GPT, recurrent and sharded catalogues)."""

import sys

from .check import mutations as _mutations

sys.modules[__name__] = _mutations
