"""Error measures and float64 central finite differences: the yardsticks every check uses.

The relative error of two arrays is symmetric and norm-wise,

    rel(a, b) = max_i |a_i - b_i| / max(max_i |a_i|, max_i |b_i|)

so it is never scaled by array size, never blows up on one near-zero entry, and reads 2 for a sign
flip. Of pytrees, it is the maximum over leaves. A NaN or an infinity in either argument makes the
error infinite: no comparison with a non-finite number can pass (`max(worst, nan)` and `nan > 0` are
the quiet ways such a value used to read as "no error").
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

Array = jax.Array

#: hand vs autodiff in float64: the two differ only by rounding (sums taken in another order).
TOL_FLOAT64 = 1e-10
#: hand vs autodiff in float32: about 100 ulps of float32 (eps = 1.2e-7), for depth-5, width-64 nets.
TOL_FLOAT32 = 2e-5
#: autodiff vs central differences in float64: truncation h^2 ~ 1e-11 plus rounding eps/h ~ 1e-11,
#: amplified by the curvature of sigmoid/tanh/softmax nets; 1e-6 leaves margin, a wrong factor does not pass.
TOL_FINITE_DIFF = 1e-6


def leaf_rel_err(x: Any, y: Any, floor: float = 0.0) -> float:
    """||x - y||_inf / max(||x||_inf, ||y||_inf, floor) of two arrays; 0 when both are zero; infinite
    when the shapes differ or either array holds a NaN or an infinity."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or not np.isfinite(floor):
        return float("inf")
    scale = max(np.max(np.abs(x), initial=0.0), np.max(np.abs(y), initial=0.0), floor)
    return float(np.max(np.abs(x - y), initial=0.0) / scale) if scale > 0 else 0.0


def rel_err(a: Any, b: Any, floor: float = 0.0) -> float:
    """max over leaves of `leaf_rel_err`: ||a - b||_inf / max(||a||_inf, ||b||_inf, floor).

    `floor` keeps a leaf whose true value is 0 (pure rounding noise on both sides) from reading as
    a large relative error; see `noise_floor`. Different tree structures, shapes, or any non-finite
    entry give an infinite error.
    """
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    if len(leaves_a) != len(leaves_b):
        return float("inf")
    return max((leaf_rel_err(x, y, floor) for x, y in zip(leaves_a, leaves_b)), default=0.0)


def first_non_finite(x: Any) -> tuple | None:
    """The index of the first NaN or infinity in x (row-major order), or None when all are finite."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return None
    bad = np.flatnonzero(~np.isfinite(x))
    return tuple(int(i) for i in np.unravel_index(bad[0], x.shape)) if bad.size else None


def noise_floor(reference: Any, dtype: Any, tol: float) -> float:
    """10 eps / tol times the largest |entry| of `reference`: below it, rounding noise of the largest
    gradient could read as a relative error above `tol`, so smaller tensors are judged against it.
    (float64 at 1e-10: 2.2e-5 of the largest gradient; float32 at 2e-5: 6e-2.)"""
    maxima = [float(np.max(np.abs(np.asarray(leaf, np.float64)), initial=0.0)) for leaf in jax.tree_util.tree_leaves(reference)]
    if not all(np.isfinite(maxima)):
        return 0.0  # a non-finite reference fails on its own; it must not lift the floor over the others
    largest = max(maxima, default=0.0)
    return 10 * float(jnp.finfo(dtype).eps) / tol * largest


def finite_difference_grad(f: Callable[[Any], Array], params: Any, rel_step: float = 6e-6) -> Any:
    """Central differences (f(p + h e_i) - f(p - h e_i)) / 2h for every entry, in float64.

    The step is chosen per entry's scale: h_i = rel_step * max(1, |p_i|), near eps^(1/3), which
    balances truncation (h^2) against rounding (eps/h). All 2n evaluations run in one vmapped call.
    """
    flat, unravel = ravel_pytree(params)
    if flat.dtype != jnp.float64:
        raise TypeError(f"finite differences need float64 (jax_enable_x64 and float64 params), got {flat.dtype}")
    h = rel_step * jnp.maximum(1.0, jnp.abs(flat))
    basis = jnp.eye(flat.size, dtype=flat.dtype) * h[:, None]
    at = jax.vmap(lambda d: f(unravel(flat + d)))
    return unravel((at(basis) - at(-basis)) / (2 * h))
