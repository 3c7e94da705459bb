"""The checker: one judge for every hand-written backward pass.

- `verify`: `check_layer`, `check_network`, `check_loss` (a layer, a network or a loss head against
  `jax.vjp` and float64 finite differences); `vjp`: `check_vjp` (any `jax.custom_vjp`/`custom_jvp` rule);
- `verdicts`, `numerics`, `projections`, `rules`: the rows and their verdicts, tolerances, the finite
  differences along directions, and the reading of a program's custom rules;
- `sharded`: `check_sharded` (a sharded value-and-grad against one device, naming the collectives' mistakes);
- `diagnosis`: the name of a mistake from its numbers; `mutations`: the planted-mistake catalogues;
- `battery`: the agreement battery over the built-in components (`fnbackprop check`); `audit`: every custom
  rule of a package checked (`fb.audit`, `fnbackprop audit`);
- `testing`, `strategies`: assertions and hypothesis strategies for a user's own test suite (also
  importable as `fnbackprop.testing` and `fnbackprop.strategies`).
"""

from .verdicts import Report as Report, TensorRow as TensorRow
from .verify import check_layer as check_layer, check_loss as check_loss, check_network as check_network
from .vjp import check_vjp as check_vjp
from .sharded import check_sharded as check_sharded
