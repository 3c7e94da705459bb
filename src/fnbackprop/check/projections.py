"""Fast mode: finite differences along random directions (u^T J v) instead of entry by entry.

Entry-wise finite differences cost two evaluations of the scalar f = <F(x), u> per entry: a model of
a million parameters needs two million. One projection costs four evaluations for all entries at
once. For a direction v of standard normal entries on a support S (all inputs, or one leaf),

    D(h) = (f(x + h v) - f(x - h v)) / 2h = <grad f, v> + O(h^2),

and D is compared with <g, v> for the gradient g under test. If g - grad f = e on S, then <e, v> is
N(0, ||e_S||_2^2); the error of one projection is |<g, v> - D(h)| / ||grad f_S||_2, and the largest
over k projections falls below t ||e_S|| / ||grad f_S|| with probability about (0.8 t)^k: at k = 32,
an error whose norm is 10x the tolerance goes unseen with probability below 1e-20.

A kink of f between x - hv and x + hv (ReLU units cross 0 when every entry moves) changes D at first
order in its position; it is detected as D(h) != D(h / 4) beyond the rounding and truncation levels,
and that direction is dropped (`projection_error` returns how many were used and dropped; with none
left the error is NaN, taken as a disagreement: every leaf then gets LEAF_PROJECTIONS directions of its own). Entry-wise FD, which sees every kink entry by
entry, runs only inside the leaves that fail (`fnbackprop.check.verify.judge(..., projections=k)`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .verdicts import FD_BATCH_FLOATS, FD_STEP, ROUNDING_UNITS, SMALL_STEP

Array = jax.Array

#: random directions over all inputs in fast mode
PROJECTIONS = 32
#: directions inside each leaf being localised
LEAF_PROJECTIONS = 8
#: entries probed one by one (largest disagreement first) in a leaf being localised
LOCALISE_ENTRIES = 64

FAST_NOTE = (f"fast mode: finite differences along {PROJECTIONS} random directions of all inputs at once; entry-wise "
             f"({LOCALISE_ENTRIES} entries) only inside leaves where hand != autodiff, along {LEAF_PROJECTIONS} directions "
             "per leaf only if autodiff and finite differences disagree; hand vs autodiff at every entry")


class Projections(NamedTuple):
    """Directional finite differences of f on supports [lo, hi) of the flattened inputs."""

    support: np.ndarray  # (P, 2): [lo, hi) of each direction
    quotient: np.ndarray  # (P,): D(h), the central quotient along the direction
    quotient_small: np.ndarray  # (P,): D(h / SMALL_STEP)
    dots: np.ndarray  # (G, P): <g, v> for each gradient g given
    noise: np.ndarray  # (P,): eps max|f| / h, the rounding unit of D(h)


def leaf_supports(tree: Any) -> list[tuple[int, int]]:
    """[lo, hi) of each leaf of `tree` in its flattened vector (`ravel_pytree`'s order)."""
    ends = np.cumsum([0] + [int(jnp.size(leaf)) for leaf in jax.tree_util.tree_leaves(tree)])
    return list(zip(ends[:-1].tolist(), ends[1:].tolist()))


def projected_differences(f: Callable[[Any], Array], tree: Any, key: Array, grads: list, supports: list[tuple[int, int]]) -> Projections:
    """D(h), D(h / SMALL_STEP) and <g, v> for one random direction v per entry of `supports`.

    `tree` is the point (float64 leaves), `grads` gradients with the leaves of `tree`. The step is
    h = FD_STEP max(1, rms of x on the support). All 4 P evaluations of f run in one compiled
    `lax.map`, the directions drawn inside it (P full-size vectors are never held at once)."""
    flat, unravel = ravel_pytree(tree)
    n = flat.size
    gflat = jnp.stack([ravel_pytree(jax.tree_util.tree_leaves(g))[0].astype(jnp.float64) for g in grads])
    support = np.asarray(supports, np.int64).reshape(-1, 2)
    x = np.asarray(flat, np.float64)
    h = np.array([FD_STEP * max(1.0, float(np.sqrt(np.mean(x[lo:hi] ** 2)))) if hi > lo else FD_STEP for lo, hi in support])
    keys = jax.random.split(key, len(support))
    batch = max(1, FD_BATCH_FLOATS // (4 * max(n, 1)))

    @jax.jit
    def run(flat, gflat, support, keys, h):
        def one(args):
            (lo, hi), k, step = args
            i = jnp.arange(n)
            v = jnp.where((i >= lo) & (i < hi), jax.random.normal(k, (n,), flat.dtype), 0.0)
            steps = jnp.stack([step, -step, step / SMALL_STEP, -step / SMALL_STEP])
            return jax.vmap(lambda s: f(unravel(flat + s * v)))(steps), gflat @ v

        return f(unravel(flat)), jax.lax.map(one, (support, keys, h), batch_size=batch)

    f0, (values, dots) = run(flat, gflat, jnp.asarray(support), keys, jnp.asarray(h))
    values = np.asarray(values, np.float64)
    level = np.maximum(np.max(np.abs(values), axis=1), abs(float(f0)))
    return Projections(support, (values[:, 0] - values[:, 1]) / (2 * h),
                       SMALL_STEP * (values[:, 2] - values[:, 3]) / (2 * h), np.asarray(dots, np.float64).T,
                       float(jnp.finfo(jnp.float64).eps) * level / h)


def projection_error(sample: Projections, which: int, scale: np.ndarray, fd_tol: float) -> tuple[float, int, int]:
    """(largest |<g, v> - D(h)| / scale over the smooth directions, directions used, directions dropped as kinked).

    `scale` (P,): ||grad f||_2 on each direction's support. A direction is smooth when D(h) and
    D(h / SMALL_STEP) agree to fd_tol x scale plus the rounding level of the smaller step."""
    scale = np.maximum(scale, np.finfo(np.float64).tiny)
    smooth = np.abs(sample.quotient - sample.quotient_small) <= fd_tol * scale + ROUNDING_UNITS * SMALL_STEP * sample.noise
    if not np.all(np.isfinite(sample.quotient)) or not np.all(np.isfinite(sample.dots[which])):
        return float("inf"), int(smooth.sum()), int((~smooth).sum())
    errors = np.abs(sample.dots[which] - sample.quotient) / scale
    used = errors[smooth]
    return (float(np.max(used)) if used.size else float("nan")), int(used.size), int((~smooth).sum())


def support_norms(grad: list, supports: np.ndarray) -> np.ndarray:
    """||g||_2 over each support [lo, hi) of the flattened leaves of `grad`."""
    flat = np.asarray(ravel_pytree([jnp.asarray(g, jnp.float64) for g in grad])[0])
    squares = np.concatenate([[0.0], np.cumsum(flat ** 2)])
    return np.sqrt(np.maximum(squares[supports[:, 1]] - squares[supports[:, 0]], 0.0))
