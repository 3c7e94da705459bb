"""Hypothesis strategies for checking a gradient over many shapes and precisions (needs `hypothesis`).

    from hypothesis import given, settings
    from fnbackprop import strategies as fbst

    @settings(max_examples=10, deadline=None)      # each shape compiles once: keep the count small
    @given(fbst.matmul_shapes(), fbst.float_dtypes())
    def test_my_matmul_rule(shapes, dtype):
        (m, k, n), key = shapes, jax.random.PRNGKey(0)
        fb.testing.assert_vjp_correct(my_matmul, *fbst.normal(key, [(m, k), (k, n)]), dtype=dtype)

Values are drawn from a seed, not entry by entry: hypothesis shrinks shapes and seeds, and a normal
draw keeps the check away from the special points (zeros, ties) that hide mistakes.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

Array = jax.Array

#: every precision `check_vjp` judges, float64 first (hypothesis shrinks towards it)
FLOAT_DTYPES = (jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16)


def float_dtypes(low_precision: bool = True) -> st.SearchStrategy:
    """float64 and float32, and with `low_precision` bfloat16 and float16."""
    return st.sampled_from(FLOAT_DTYPES if low_precision else FLOAT_DTYPES[:2])


def shapes(min_dims: int = 1, max_dims: int = 3, min_side: int = 1, max_side: int = 6) -> st.SearchStrategy:
    """Array shapes, e.g. (3,), (1, 5), (2, 4, 6); sides of 1 included (broadcasting's edge case)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def matmul_shapes(max_side: int = 6, square: bool = False) -> st.SearchStrategy:
    """(m, k, n) for a (m, k) @ (k, n) product; `square` gives k = n (where W for W^T keeps the shape)."""
    side = st.integers(1, max_side)
    return st.tuples(side, side, side).map(lambda t: (t[0], t[1], t[1]) if square else t)


def broadcast_shapes(max_dims: int = 3, max_side: int = 6) -> st.SearchStrategy:
    """(x shape, b shape) where b broadcasts against x to x's shape, like a bias added to a batch."""
    return hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=1, max_dims=max_dims, max_side=max_side).map(
        lambda s: (s.result_shape, s.input_shapes[0]))


def seeds() -> st.SearchStrategy:
    return st.integers(0, 2**31 - 1)


def normal(key: Array, shapes: Sequence[tuple], dtype=jnp.float64) -> list[Array]:
    """One standard normal array per shape, from `key` (pair it with `seeds()` to let hypothesis pick)."""
    return [jax.random.normal(k, tuple(s), dtype) for k, s in zip(jax.random.split(key, len(shapes)), shapes)]


def arrays(shape: tuple | st.SearchStrategy, dtype=jnp.float64) -> st.SearchStrategy:
    """Standard normal arrays of `shape` (a shape or a strategy of shapes), drawn from a seed."""
    shape_strategy = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))
    return st.tuples(shape_strategy, seeds()).map(lambda t: normal(jax.random.PRNGKey(t[1]), [t[0]], dtype)[0])
