"""Tensor and sequence parallelism for the GPT: Megatron-LM's layout on a (data x model) mesh, the whole
backward written by hand with explicit collectives (no jax.grad inside).

    mesh = fnbackprop.parallel.make_mesh(data=2, model=4)        # axes ("data", "model")
    tp = fb.tensor_parallel(model, mesh, sequence_parallel=False)
    loss, grads = tp.value_and_grad(tp.shard(params), idx, targets)   # grads in the sharded layout
    full = tp.gather(grads)                                        # the single-device pytree of model.init

**The layout** (tp the size of "model", r a rank; the batch split over "data"):

- c_attn (3C x C) column-parallel with the heads split: rank r holds the q, k and v rows of heads
  [r nh/tp, (r + 1) nh/tp), stored one rank after another (`shard` reorders the rows; `gather` puts them
  back), so each rank runs causal attention on its own heads, unchanged; c_proj (C x C) row-parallel.
- c_fc (4C x C) column-parallel, c_proj (C x 4C) row-parallel; the row-parallel biases are replicated and
  added once, after the reduction (added before it they would count tp times).
- wte (V x C) split over the vocabulary: the embedding looks up the tokens of its rows (0 elsewhere) and the
  partial embeddings are summed over "model"; the tied head's logits z_r = h_f wte_r^T are column-parallel,
  and the loss is the vocabulary-parallel cross-entropy (`collectives.vocab_parallel_cross_entropy`: the
  all-reduced max and denominator). A vocabulary that tp does not divide is padded with zero rows, which
  take no part in the softmax and get gradient 0; `gather` drops them.
- wpe and the layer norms replicated.

**The collectives at the edges of each parallel region** (`Boundaries`), forward and adjoint:

    without sequence parallelism             with sequence parallelism (the stream split over positions)
    enter: f, identity  | adjoint: psum      enter: all-gather along T   | adjoint: reduce-scatter along T
    leave: g, psum      | adjoint: identity  leave: reduce-scatter on T  | adjoint: all-gather along T
    replicated parameters' gradients: as     replicated parameters' gradients: psum over "model" (each rank
    computed (every rank sees the whole      saw its own positions only)
    stream)

"enter" takes a layer norm's output to a column-parallel layer's input, "leave" a row-parallel layer's
partial sums back to the residual stream (the embedding's partial sums leave the same way; the head's input
enters). Each pair is adjoint: <enter(x), y> = <x, enter_adjoint(y)> summed over ranks (the derivations are
in `collectives`). Last, every gradient is averaged over "data" (each data rank saw m / data sequences).

**Dropout**: each rank draws the one-device masks from the key (the model's own key split) and keeps its
slice (its sequences, its heads, its positions), so a mask is the same per position whatever the mesh.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..layers import activation, layer_norm
from ..layers.attention import _dropout_scale, attention_backward, attention_forward
from ..layers.dense import dense_backward, dense_forward
from ..models.gpt import GPT
from .collectives import all_reduce, gather_tiled, identity, scatter_tiled, vocab_parallel_cross_entropy

Array = jax.Array
Params = Any
DATA, MODEL = "data", "model"


def _identity(a: Array) -> Array:
    return identity(a, MODEL)


def _gather_positions(a: Array) -> Array:
    return gather_tiled(a, MODEL, 1)


def _scatter_positions(a: Array) -> Array:
    return scatter_tiled(a, MODEL, 1)


def _all_reduce(a: Array) -> Array:
    return all_reduce(a, MODEL)


class Boundaries(NamedTuple):
    """The collectives where the residual stream meets the parallel layers, each with its adjoint (the hand
    backward calls the adjoints; autodiff of the sharded forward transposes `enter` and `leave` itself)."""

    enter: Callable  # a layer norm's output -> the whole input of a column-parallel layer
    enter_adjoint: Callable
    leave: Callable  # a row-parallel layer's (or the embedding's) partial sums -> the residual stream
    leave_adjoint: Callable
    sync: Callable  # a replicated parameter's gradient as this rank computed it -> the gradient
    bias_sync: Callable  # the same for the row-parallel layers' biases


TENSOR_PARALLEL = Boundaries(_identity, _all_reduce, _all_reduce, _identity, _identity, _identity)
SEQUENCE_PARALLEL = Boundaries(_gather_positions, _scatter_positions, _scatter_positions, _gather_positions,
                               _all_reduce, _all_reduce)


class Masks(NamedTuple):
    """This rank's slices of the one-device dropout scales (mask / (1 - rate)), or 1.0 without dropout."""

    embedding: Any
    blocks: list  # (attention P, attention output, mlp output) per block


def _names(path: tuple) -> list:
    return [getattr(k, "key", getattr(k, "idx", None)) for k in path]


def _spec(path: tuple) -> P:
    """Where a parameter lives: split over "model" by rows (column-parallel, the vocabulary), by columns
    (row-parallel), or replicated. Read from the path's end, so that a tree holding parameter-shaped trees
    (an optimizer's state: Adam's moments) is laid out like the parameters."""
    names = _names(path)
    if names[-1:] == ["wte"]:
        return P(MODEL, None)
    if len(names) >= 2 and names[-2] in ("c_attn", "c_fc"):
        return P(MODEL, None) if names[-1] == "W" else P(MODEL)
    if len(names) >= 2 and names[-2] == "c_proj" and names[-1] == "W":
        return P(None, MODEL)
    return P()


@dataclass(frozen=True)
class TensorParallel:
    """A GPT split Megatron's way over the "model" axis of a (data x model) mesh (see the module's
    docstring). `boundaries` defaults to the collectives of the chosen mode; `fnbackprop.mutations` plants
    mistakes by replacing one of them."""

    model: GPT
    mesh: Mesh
    sequence_parallel: bool = False
    boundaries: Boundaries | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, GPT):
            raise TypeError(f"tensor_parallel splits a fnbackprop GPT (fb.gpt(...)), got {type(self.model).__name__}")
        if not isinstance(self.mesh, Mesh) or tuple(self.mesh.axis_names) != (DATA, MODEL):
            names = getattr(self.mesh, "axis_names", None)
            raise ValueError(f"tensor_parallel needs a mesh with axes ('data', 'model'), got {names}: "
                             "fnbackprop.parallel.make_mesh(data=..., model=...)")
        tp, model = self.tp, self.model
        if model.n_head % tp:
            raise ValueError(f"tensor_parallel: model={tp} must divide n_head={model.n_head} (each rank holds whole heads)")
        for name in ("attention_block", "head_chunk"):
            if getattr(model, name) is not None:
                raise ValueError(f"tensor_parallel: {name} is not supported (each rank already holds 1/{tp} of the "
                                 "attention and of the logits): build the GPT without it")
        if model.recompute_gelu or model.recompute_norm:
            raise ValueError("tensor_parallel: recompute_gelu/recompute_norm are not supported: build the GPT without them")

    # ----- sizes ------------------------------------------------------------------------------------------------
    @property
    def tp(self) -> int:
        return int(self.mesh.shape[MODEL])

    @property
    def dp(self) -> int:
        return int(self.mesh.shape[DATA])

    @property
    def padded_vocab(self) -> int:
        """The vocabulary rounded up to a multiple of tp (the rows of the sharded wte)."""
        return -(-self.model.vocab_size // self.tp) * self.tp

    @property
    def collectives(self) -> Boundaries:
        return self.boundaries or (SEQUENCE_PARALLEL if self.sequence_parallel else TENSOR_PARALLEL)

    def with_boundaries(self, **changes: Callable) -> TensorParallel:
        """This split with some of its collectives replaced (how `fnbackprop.mutations` plants a mistake)."""
        return replace(self, boundaries=self.collectives._replace(**changes))

    # ----- the layout ----------------------------------------------------------------------------------------------
    def specs(self, params: Params) -> Params:
        """The PartitionSpec of every parameter (the pytree of `params`)."""
        return jax.tree_util.tree_map_with_path(lambda path, _: _spec(path), params)

    def _to_sharded(self, path: tuple, a: Array) -> Array:
        names = _names(path)
        if names[-1:] == ["wte"]:
            return jnp.pad(a, ((0, self.padded_vocab - a.shape[0]), (0, 0)))
        if "c_attn" in names:  # rows [q; k; v] -> [q_0 k_0 v_0; q_1 k_1 v_1; ...], rank r's heads together
            return a.reshape(3, self.tp, -1, *a.shape[1:]).swapaxes(0, 1).reshape(a.shape)
        return a

    def _from_sharded(self, path: tuple, a: Array) -> Array:
        names = _names(path)
        if names[-1:] == ["wte"]:
            return a[: self.model.vocab_size]
        if "c_attn" in names:
            return a.reshape(self.tp, 3, -1, *a.shape[1:]).swapaxes(0, 1).reshape(a.shape)
        return a

    def shard(self, params: Params) -> Params:
        """The parameters of `model.init` in the sharded layout, placed on the mesh (or any tree holding
        parameter-shaped trees, such as an optimizer's state)."""
        specs = self.specs(params)
        return jax.tree_util.tree_map_with_path(
            lambda path, a, spec: jax.device_put(self._to_sharded(path, jnp.asarray(a)), NamedSharding(self.mesh, spec)),
            params, specs)

    def gather(self, sharded: Params) -> Params:
        """The single-device pytree (of `model.init`'s structure) of sharded parameters or gradients."""
        return jax.tree_util.tree_map_with_path(lambda path, a: self._from_sharded(path, jnp.asarray(_fetch(a))), sharded)

    # ----- the inputs --------------------------------------------------------------------------------------------
    def _check_inputs(self, idx: Array, targets: Array | None) -> None:
        self.model._check_idx(jnp.asarray(idx))
        if targets is not None:
            self.model._check_targets(jnp.asarray(targets), jnp.asarray(idx))
        self.check_shape(*np.shape(idx))

    def check_shape(self, m: int, T: int) -> None:
        """ValueError unless "data" divides the batch of m sequences (and, with sequence parallelism, "model"
        divides the T positions)."""
        if m % self.dp:
            raise ValueError(f"tensor_parallel: data={self.dp} must divide the batch of {m} sequences")
        if self.sequence_parallel and T % self.tp:
            raise ValueError(f"tensor_parallel: with sequence parallelism model={self.tp} must divide the sequence "
                             f"of {T} positions")

    def _masks(self, key: Array | None, m: int, T: int, dtype: Any) -> Masks:
        """This rank's slices of the masks one device would draw from `key` for a batch of dp * m sequences."""
        model = self.model
        k_emb, k_blocks = model._keys(key)
        if k_emb is None:
            return Masks(1.0, [(1.0, 1.0, 1.0)] * model.n_layer)
        B, C, H, rate = self.dp * m, model.n_embd, model.n_head, model.dropout
        d, r = jax.lax.axis_index(DATA), jax.lax.axis_index(MODEL)
        T_local = T // self.tp if self.sequence_parallel else T

        def stream(k: Array) -> Array:  # (B, T, C) -> my sequences (and, with sequence parallelism, my positions)
            a = jax.lax.dynamic_slice_in_dim(jnp.asarray(_dropout_scale(k, rate, (B, T, C), dtype)), d * m, m, axis=0)
            return jax.lax.dynamic_slice_in_dim(a, r * T_local, T_local, axis=1) if self.sequence_parallel else a

        def probs(k: Array) -> Array:  # (B, H, T, T) -> my sequences, my heads
            a = jax.lax.dynamic_slice_in_dim(jnp.asarray(_dropout_scale(k, rate, (B, H, T, T), dtype)), d * m, m, axis=0)
            return jax.lax.dynamic_slice_in_dim(a, r * (H // self.tp), H // self.tp, axis=1)

        blocks = []
        for k_attn, k_mlp in k_blocks:
            k_att, k_out = jax.random.split(k_attn)  # as attention_forward splits its key
            blocks.append((probs(k_att), stream(k_out), stream(k_mlp)))
        return Masks(stream(k_emb), blocks)

    # ----- forward: run by every rank on its shard ------------------------------------------------------------------
    def _positions(self, wpe: Array, T: int) -> Array:
        """wpe's rows for this rank's positions: all T, or its T / tp with sequence parallelism."""
        if not self.sequence_parallel:
            return wpe[:T]
        n = T // self.tp
        return jax.lax.dynamic_slice_in_dim(wpe, jax.lax.axis_index(MODEL) * n, n, axis=0)

    def _forward(self, p: Params, idx: Array, key: Array | None) -> tuple[Array, Array, dict]:
        """(the head's input h_f, whole on every rank, its logits z_r over this rank's vocabulary, the caches)."""
        model, b = self.model, self.collectives
        ln, gelu = layer_norm(bias=model.bias), activation("gelu")
        m, T = idx.shape
        masks = self._masks(key, m, T, p["wpe"].dtype)
        V_local = p["wte"].shape[0]
        local = idx - jax.lax.axis_index(MODEL) * V_local
        mine = (local >= 0) & (local < V_local)
        local = jnp.where(mine, local, 0)
        x = (b.leave(jnp.where(mine[..., None], p["wte"][local], 0)) + self._positions(p["wpe"], T)) * masks.embedding
        blocks = []
        for q, (att_s, out_s, mlp_s) in zip(p["h"], masks.blocks):
            h1, c_ln1 = ln.forward(q["ln_1"], x)
            a, c_attn = attention_forward(_local_attention(q["attn"]), b.enter(h1), model.n_head // self.tp, scales=(att_s, 1.0),
                                          dtype=model.matmul_dtype)
            x = x + _plus_bias(b.leave(a), q["attn"]["c_proj"]) * out_s
            h2, c_ln2 = ln.forward(q["ln_2"], x)
            f, c_fc = dense_forward(q["mlp"]["c_fc"], b.enter(h2), model.matmul_dtype)
            g, c_gelu = gelu.forward({}, f)
            y, c_proj = dense_forward({"W": q["mlp"]["c_proj"]["W"]}, g, model.matmul_dtype)
            x = x + _plus_bias(b.leave(y), q["mlp"]["c_proj"]) * mlp_s
            blocks.append((c_ln1, c_attn, c_ln2, c_fc, c_gelu, c_proj, (att_s, out_s, mlp_s)))
        h_f, c_lnf = ln.forward(p["ln_f"], x)
        h_f = b.enter(h_f)
        caches = {"local": local, "mine": mine, "embedding": masks.embedding, "h": blocks, "ln_f": c_lnf}
        return h_f, h_f @ p["wte"].T, caches

    def _local_loss(self, p: Params, idx: Array, targets: Array, key: Array | None) -> Array:
        """The mean cross-entropy over the whole batch (the sharded forward, differentiable by jax.grad)."""
        _, logits, _ = self._forward(p, idx, key)
        loss, _ = vocab_parallel_cross_entropy(logits, targets, MODEL, self.model.vocab_size)
        return jax.lax.pmean(loss, DATA)

    # ----- backward: the forward's steps in reverse, with each collective's adjoint ----------------------------------
    def _local_value_and_grad(self, p: Params, idx: Array, targets: Array, key: Array | None) -> tuple[Array, Params]:
        """(C, this rank's gradients) by hand: dz_r from the vocabulary-parallel cross-entropy, then the head,
        ln_f, the blocks from last to first, the embedding; each "enter" undone by its adjoint (the all-reduce
        of f, the reduce-scatter of an all-gather), each "leave" by its (g's identity, an all-gather); the
        replicated parameters' gradients synchronised; last, everything averaged over "data"."""
        model, b = self.model, self.collectives
        ln, gelu = layer_norm(bias=model.bias), activation("gelu")
        h_f, logits, caches = self._forward(p, idx, key)
        loss, dz = vocab_parallel_cross_entropy(logits, targets, MODEL, model.vocab_size)
        C = model.n_embd
        dwte = dz.reshape(-1, dz.shape[-1]).T @ h_f.reshape(-1, C)  # the head's share of dC/dwte_r
        g_lnf, dx = ln.backward(p["ln_f"], caches["ln_f"], b.enter_adjoint(dz @ p["wte"]))
        g_blocks = []
        for q, (c_ln1, c_attn, c_ln2, c_fc, c_gelu, c_proj, (_, out_s, mlp_s)) in zip(reversed(p["h"]), reversed(caches["h"])):
            dy = dx * mlp_s  # x <- x + dropout(g(gelu(c_fc(enter(ln_2(x)))) W_r^T) + b)
            g_proj, dg = dense_backward({"W": q["mlp"]["c_proj"]["W"]}, c_proj, b.leave_adjoint(dy), model.matmul_dtype)
            g_proj = {**g_proj, **_bias_grad(q["mlp"]["c_proj"], dy, b.bias_sync)}
            _, df = gelu.backward({}, c_gelu, dg)
            g_fc, dh = dense_backward(q["mlp"]["c_fc"], c_fc, df, model.matmul_dtype)
            g_ln2, dh = ln.backward(q["ln_2"], c_ln2, b.enter_adjoint(dh))
            dx = dx + dh
            da = dx * out_s  # x <- x + dropout(g(attention_r(enter(ln_1(x)))) + b)
            g_attn, dh, _ = attention_backward(_local_attention(q["attn"]), c_attn, b.leave_adjoint(da), dtype=model.matmul_dtype)
            g_attn["c_proj"] = {**g_attn["c_proj"], **_bias_grad(q["attn"]["c_proj"], da, b.bias_sync)}
            g_ln1, dh = ln.backward(q["ln_1"], c_ln1, b.enter_adjoint(dh))
            dx = dx + dh
            g_blocks.append({"ln_1": _synced(g_ln1, b), "attn": g_attn, "ln_2": _synced(g_ln2, b), "mlp": {"c_fc": g_fc, "c_proj": g_proj}})
        dx = dx * caches["embedding"]
        de = b.leave_adjoint(dx)  # the partial embeddings' gradient: the stream's, whole on every rank
        dwte = dwte + jnp.zeros_like(p["wte"]).at[caches["local"].reshape(-1)].add(
            jnp.where(caches["mine"][..., None], de, 0).reshape(-1, C))
        dwpe = b.sync(self._positions_adjoint(p["wpe"], jnp.sum(dx, axis=0)))
        grads = {"wte": dwte, "wpe": dwpe, "h": g_blocks[::-1], "ln_f": _synced(g_lnf, b)}
        return jax.lax.pmean(loss, DATA), jax.tree_util.tree_map(lambda g: jax.lax.pmean(g, DATA), grads)

    def _positions_adjoint(self, wpe: Array, dpos: Array) -> Array:
        """dC/dwpe from the gradient of this rank's positions' rows (0 for the rows it did not use)."""
        if not self.sequence_parallel:
            return jnp.zeros_like(wpe).at[: dpos.shape[0]].set(dpos)
        return jax.lax.dynamic_update_slice_in_dim(jnp.zeros_like(wpe), dpos, jax.lax.axis_index(MODEL) * dpos.shape[0], axis=0)

    # ----- the public functions ---------------------------------------------------------------------------------------
    def _mapped(self, body: Callable, sharded: Params, idx: Array, targets: Array, key: Array | None, out_grads: bool,
                check_vma: bool) -> Any:
        specs = self.specs(sharded)
        args: tuple = (sharded, idx, targets)
        in_specs: tuple = (specs, P(DATA, None), P(DATA, None))
        if key is not None:
            args, in_specs = (*args, key), (*in_specs, P())
        out_specs = (P(), specs) if out_grads else P()
        run = jax.shard_map(lambda *a: body(*a[:3], a[3] if len(a) > 3 else None), mesh=self.mesh, in_specs=in_specs,
                            out_specs=out_specs, check_vma=check_vma)
        return run(*args)

    @functools.cached_property
    def _compiled(self) -> dict:
        return {"hand": jax.jit(lambda s, i, t, k: self._mapped(self._local_value_and_grad, s, i, t, k, True, False)),
                "autodiff": jax.jit(lambda s, i, t, k: self._mapped(
                    lambda p, a, b, key: jax.value_and_grad(self._local_loss)(p, a, b, key), s, i, t, k, True, True)),
                "loss": jax.jit(lambda s, i, t, k: self._mapped(self._local_loss, s, i, t, k, False, True))}

    def value_and_grad(self, sharded: Params, idx: Array, targets: Array, key: Array | None = None) -> tuple[Array, Params]:
        """(C, dC/dparams in the sharded layout) by the hand-written backward; `key` for dropout, as `model.loss`."""
        self._check_inputs(idx, targets)
        return self._compiled["hand"](sharded, jnp.asarray(idx), jnp.asarray(targets), key)

    def autodiff_value_and_grad(self, sharded: Params, idx: Array, targets: Array, key: Array | None = None) -> tuple[Array, Params]:
        """(C, dC/dparams) by jax.grad through the sharded forward, inside shard_map with check_vma on (JAX
        transposes each collective itself): the second reference the hand backward is held to."""
        self._check_inputs(idx, targets)
        return self._compiled["autodiff"](sharded, jnp.asarray(idx), jnp.asarray(targets), key)

    def loss(self, sharded: Params, idx: Array, targets: Array, key: Array | None = None) -> Array:
        """C, the mean cross-entropy, by the sharded forward."""
        self._check_inputs(idx, targets)
        return self._compiled["loss"](sharded, jnp.asarray(idx), jnp.asarray(targets), key)


def _fetch(a: Any) -> np.ndarray:
    """The whole of a (global) array on this host: from the other processes' devices too, on a mesh spanning several."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(jax.device_get(a))


def _local_attention(p: dict) -> dict:
    """A rank's attention parameters for `attention_forward`: its c_attn rows and c_proj columns, without
    c_proj's bias, which is added once, after the reduction."""
    return {"c_attn": p["c_attn"], "c_proj": {"W": p["c_proj"]["W"]}}


def _plus_bias(y: Array, p: dict) -> Array:
    return y + p["b"] if "b" in p else y


def _bias_grad(p: dict, dy: Array, sync: Callable) -> dict:
    """db = sum over rows of dy, for a row-parallel layer whose bias was added after the reduction."""
    return {"b": sync(jnp.sum(dy.reshape(-1, dy.shape[-1]), axis=0))} if "b" in p else {}


def _synced(grads: dict, b: Boundaries) -> dict:
    return {name: b.sync(g) for name, g in grads.items()}


def tensor_parallel(model: GPT, mesh: Mesh, sequence_parallel: bool = False) -> TensorParallel:
    """`model` split over the "model" axis of `mesh` (`TensorParallel`), with sequence parallelism if asked."""
    return TensorParallel(model, mesh, sequence_parallel)
