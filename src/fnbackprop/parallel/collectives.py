"""Megatron-LM's conjugate collectives, their adjoints derived and written by hand, for use inside `shard_map`.

Each is a `jax.custom_vjp` whose backward is the adjoint collective, so the whole backward of a
tensor-parallel layer is explicit (no autodiff of a collective anywhere). `axis` names the mesh axis
the model is split over ("model"). With tp the axis size and r a rank:

- **f** (`copy_to_model`), forward the identity: x, replicated, enters a computation each rank does
  differently, C = sum_r C_r(x). Backward: dC/dx = sum_r dC_r/dx, an all-reduce (psum). Forgetting it
  leaves each rank with only its share (the silent bug of a custom op on a replicated input).
- **g** (`reduce_from_model`), forward an all-reduce y = sum_r x_r of partial sums. Backward: dy/dx_r = I
  for every r, so dC/dx_r = dC/dy, the identity (the upstream gradient is already the same on every rank).
- **all-gather** along an axis (`all_gather`, sequence parallelism), forward y = [x_1; ...; x_tp]. Backward:
  rank r's x_r is the r-th block of y on *every* rank, whose upstream gradients differ; dC/dx_r = sum over
  ranks of block r of their dC/dy: a reduce-scatter.
- **reduce-scatter** (`reduce_scatter`), forward y_r = block r of sum_s x_s. Backward: dC/dx_s = [dC/dy_1;
  ...; dC/dy_tp] for every s: an all-gather. The two are each other's adjoints, as f and g are.

The dense layers built on them (rows are examples; W is (n_out, n_in) as everywhere in the package):

- **column-parallel**: rank r holds the rows W_r (n_out / tp, n_in) and b_r. y_r = f(x) W_r^T + b_r, its
  output split over the features. Backward: dW_r = dy_r^T x, db_r = sum_i dy_r, dx = psum_r(dy_r W_r).
- **row-parallel**: rank r holds the columns W_r (n_out, n_in / tp) and takes its feature shard x_r. y =
  g(sum_r x_r W_r^T) + b, the bias added once, after the reduction (added before it, it counts tp times).
  Backward: dy is replicated; dW_r = dy^T x_r, dx_r = dy W_r, db = sum_i dy on every rank (replicated, not
  summed over the ranks).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp

from ..layers.dense import dense_backward, dense_forward

Array = jax.Array


# ----- the collectives, each a custom_vjp whose backward is its conjugate ---------------------------------------
def identity(x: Array, axis: str, dim: int | None = None) -> Array:
    return x


def all_reduce(x: Array, axis: str, dim: int | None = None) -> Array:
    return jax.lax.psum(x, axis)


def gather_tiled(x: Array, axis: str, dim: int) -> Array:
    """Every rank's block concatenated along `dim`."""
    return jax.lax.all_gather(x, axis, axis=dim, tiled=True)


def scatter_tiled(x: Array, axis: str, dim: int) -> Array:
    """Block r (along `dim`) of the sum over ranks, on rank r."""
    return jax.lax.psum_scatter(x, axis, scatter_dimension=dim, tiled=True)


def _conjugate(forward: Callable, adjoint: Callable) -> Callable:
    """forward(x, axis, dim) as a custom_vjp whose backward is adjoint(dy, axis, dim)."""

    @partial(jax.custom_vjp, nondiff_argnums=(1, 2))
    def op(x: Array, axis: str, dim: int | None) -> Array:
        return forward(x, axis, dim)

    op.defvjp(lambda x, axis, dim: (forward(x, axis, dim), None), lambda axis, dim, _, dy: (adjoint(dy, axis, dim),))
    return op


_F, _G = _conjugate(identity, all_reduce), _conjugate(all_reduce, identity)
_GATHER, _SCATTER = _conjugate(gather_tiled, scatter_tiled), _conjugate(scatter_tiled, gather_tiled)


def copy_to_model(x: Array, axis: str) -> Array:
    """Megatron's f: the identity forward, an all-reduce over `axis` backward."""
    return _F(x, axis, None)


def reduce_from_model(x: Array, axis: str) -> Array:
    """Megatron's g: an all-reduce over `axis` forward, the identity backward."""
    return _G(x, axis, None)


def all_gather(x: Array, axis: str, dim: int) -> Array:
    """Every rank's shard concatenated along `dim` (forward); a reduce-scatter along `dim` backward."""
    return _GATHER(x, axis, dim)


def reduce_scatter(x: Array, axis: str, dim: int) -> Array:
    """Block r (along `dim`) of the sum over ranks, on rank r (forward); an all-gather along `dim` backward."""
    return _SCATTER(x, axis, dim)


# ----- the dense layers: `layers.dense`'s forward and backward, with the collective each split needs -------------
def column_parallel_forward(params: dict, x: Array) -> tuple[Array, Array]:
    """y_r = x W_r^T + b_r on this rank's rows of W (x replicated): (y_r, the cache x)."""
    return dense_forward(params, x)


def column_parallel_backward(params: dict, x: Array, dy: Array, axis: str) -> tuple[dict, Array]:
    """dW_r = dy_r^T x, db_r = sum_i dy_r (this rank's rows); dx = psum_r(dy_r W_r): f's backward, written out."""
    grads, dx = dense_backward(params, x, dy)
    return grads, jax.lax.psum(dx, axis)


def row_parallel_forward(params: dict, x: Array, axis: str) -> tuple[Array, Array]:
    """y = psum_r(x_r W_r^T) + b, the bias added once after g's all-reduce: (y, the cache x_r)."""
    y = jax.lax.psum(dense_forward({"W": params["W"]}, x)[0], axis)
    return (y + params["b"] if "b" in params else y), x


def row_parallel_backward(params: dict, x: Array, dy: Array) -> tuple[dict, Array]:
    """dy replicated (g's backward is the identity): dW_r = dy^T x_r, dx_r = dy W_r, db = sum_i dy (the same on
    every rank: the bias is one parameter, used once): dense's backward as it is."""
    return dense_backward(params, x, dy)


# ----- the vocabulary-parallel cross-entropy ---------------------------------------------------------------------
def vocab_parallel_cross_entropy(logits: Array, targets: Array, axis: str, vocab_size: int | None = None) -> tuple[Array, Array]:
    """The mean cross-entropy of logits split over the vocabulary: rank r holds the columns [r V_r, (r + 1) V_r)
    of z (..., V), and its gradient, with three all-reduces and no rank ever holding a whole row:

        m = pmax_r(max_j z_r,j)                 the row's max, for stability (any common shift is exact)
        s = psum_r(sum_j exp(z_r,j - m))        the softmax's denominator
        z_y = psum_r(z_r,y if y is in r's columns, else 0)      the target's logit
        C = mean_rows(log s + m - z_y)

    Backward, on this rank's columns only: dz_r = (exp(z_r - m) / s - onehot_r(y)) / N, N the rows: the
    softmax minus the one-hot, each rank keeping the part of the one-hot that falls in its columns.
    With `vocab_size`, columns from vocab_size on are padding (a vocabulary that the ranks do not divide,
    padded): they take no part in the max or the sum, and their gradient is 0. Returns (C, dz_r)."""
    local_v = logits.shape[-1]
    first = jax.lax.axis_index(axis) * local_v
    real = (first + jnp.arange(local_v)) < (first + local_v if vocab_size is None else vocab_size)
    m = jax.lax.pmax(jnp.max(jnp.where(real, jax.lax.stop_gradient(logits), -jnp.inf), axis=-1, keepdims=True), axis)
    e = jnp.where(real, jnp.exp(logits - m), 0)
    s = jax.lax.psum(jnp.sum(e, axis=-1, keepdims=True), axis)
    local = targets - first
    mine = (local >= 0) & (local < local_v)
    onehot = jax.nn.one_hot(jnp.where(mine, local, 0), local_v, dtype=logits.dtype) * mine[..., None]
    z_y = jax.lax.psum(jnp.sum(logits * onehot, axis=-1), axis)
    rows = targets.size
    loss = jnp.mean(jnp.log(s[..., 0]) + m[..., 0] - z_y)
    return loss, (e / s - onehot) / rows
