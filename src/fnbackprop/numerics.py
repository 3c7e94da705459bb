"""Error measures and float64 central finite differences: the yardsticks every check uses.

The relative error of two arrays is symmetric and norm-wise,

    rel(a, b) = max_i |a_i - b_i| / max(max_i |a_i|, max_i |b_i|)

so it is never scaled by array size, never blows up on one near-zero entry, and reads 2 for a sign
flip. Of pytrees, it is the maximum over leaves.
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


def rel_err(a: Any, b: Any, floor: float = 0.0) -> float:
    """max over leaves of ||a - b||_inf / max(||a||_inf, ||b||_inf, floor); 0 when both are zero.

    `floor` keeps a leaf whose true value is 0 (pure rounding noise on both sides) from reading as
    a large relative error; see `noise_floor`.
    """
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return float("inf")
        scale = max(np.max(np.abs(x), initial=0.0), np.max(np.abs(y), initial=0.0), floor)
        if scale > 0:
            worst = max(worst, float(np.max(np.abs(x - y)) / scale))
    return worst


def noise_floor(reference: Any, dtype: Any, tol: float) -> float:
    """10 eps / tol times the largest |entry| of `reference`: below it, rounding noise of the largest
    gradient could read as a relative error above `tol`, so smaller tensors are judged against it.
    (float64 at 1e-10: 2.2e-5 of the largest gradient; float32 at 2e-5: 6e-2.)"""
    largest = max((float(np.max(np.abs(np.asarray(leaf)), initial=0.0)) for leaf in jax.tree_util.tree_leaves(reference)), default=0.0)
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
