"""`check_sharded`: a sharded value-and-grad function against its single-device reference, per tensor, and
the classic mistakes of a tensor-parallel backward named from what the devices hold.

    report = fb.check_sharded(tp, params, idx, targets)      # tp = fb.tensor_parallel(model, mesh, ...)
    report = fb.check_sharded(value_and_grad, params, *args, reference=loss, shard=..., gather=..., mesh=mesh)

The sharded function runs on `shard(params)`; its gradients are gathered (`gather`) and compared, tensor by
tensor, with `jax.value_and_grad(reference)(params, *args)` on one device. A parameter the layout replicates
is held by every device, so its copies are read one by one (`jax.Array.addressable_shards`): they must agree
(a gathered array shows only one of them). Each tensor's row gets one of these patterns:

- `ok`: the copies agree and equal the reference (to `tol`);
- `counted tp times`: the copies agree and equal tp x the reference (a replicated term reduced over the group
  as if it were a partial sum: a row-parallel bias's gradient all-reduced, torchtitan #2106);
- `not all-reduced`: the copies agree and equal 1/tp of the reference (one rank's share taken as the whole);
- `not synchronised`: the copies differ across the group and their sum (or, over "data", their mean) is the
  reference: each device kept the gradient of its own share (layer-norm weights under sequence parallelism,
  Megatron-LM #1446, gpt-neox #1257);
- `wrong`: none of these.

The report names one mistake from the rows, in backward order (the head first, the embedding last):

1. every failing row shows the same one of the three patterns, and nothing else is wrong: that pattern
   (the mistake is on those parameters' own gradients, so it does not spread);
2. otherwise the mistake sits on an activation's gradient and spreads to everything before it in the
   forward. At the first failing row:
   - `counted tp times`: **adjoint swapped**: a reduction's adjoint reduced again (g's identity taken as f's
     all-reduce), and, the reduction missing where it belongs, the rows before it differ per device;
   - copies that differ per device somewhere among the failing rows, without sequence parallelism:
     **not all-reduced**: a replicated input's gradient never all-reduced (Megatron's f without its
     backward all-reduce, jax-finufft #226), each device continuing with its own share;
   - with sequence parallelism, the first failing row a replicated parameter (a layer norm, just before an
     all-gather): **adjoint swapped**: the all-gather's adjoint (a reduce-scatter along the sequence) taken as
     something else, so the gradient leaving the block on each rank is not the sum over ranks;
   - anything else: the row's own diagnosis (`fnbackprop.check.diagnosis`: sign, scale, ...).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from .diagnosis import diagnose
from .numerics import TOL_FLOAT32, TOL_FLOAT64, leaf_rel_err
from .verdicts import Report, TensorRow, best_fit_ratio

PATTERNS = ("ok", "counted tp times", "not all-reduced", "not synchronised", "wrong")


class ShardedReport(Report):
    """A `Report` whose rows compare the gathered sharded gradients with one device's."""

    def ratio_header(self) -> str:
        return "sharded/one"

    def title(self) -> str:
        return f"{self.subject}: sharded gradients gathered vs one device's jax.grad (tolerance {self.tol:g})"


class Pattern(NamedTuple):
    """What one tensor's devices hold (`classify`)."""

    kind: str  # one of PATTERNS
    evidence: str
    replicated: bool = False  # the layout gives every device the whole tensor
    copies_differ: bool = False  # and the devices' copies disagree


def _replicated(a: Any) -> bool:
    spec = getattr(getattr(a, "sharding", None), "spec", None)
    return spec is not None and all(s is None for s in spec)


def device_copies(a: Any, mesh: Any, axis: str) -> list[np.ndarray]:
    """The copies of a fully replicated array held along `axis` of `mesh` (at the first position of every
    other axis), in the order of the axis; [] for an array split over the mesh."""
    if not _replicated(a):
        return []
    names = list(mesh.axis_names)
    k = names.index(axis)
    coords = {d: c for c, d in np.ndenumerate(mesh.devices)}
    held = {coords[s.device][k]: np.asarray(s.data) for s in a.addressable_shards
            if all(c == 0 for i, c in enumerate(coords[s.device]) if i != k)}
    return [held[i] for i in sorted(held)]


def classify(gathered: np.ndarray, reference: np.ndarray, copies: dict[str, list], tp: int, tol: float,
             replicated: bool = False) -> Pattern:
    """What one tensor's devices hold: `copies` are the per-device copies along each mesh axis (empty for a split
    tensor), tp the size of the axis the model is split over."""
    for axis, held in copies.items():
        if len(held) > 1 and max(leaf_rel_err(c, held[0]) for c in held[1:]) > tol:
            total = np.sum(held, axis=0) if axis != "data" else np.mean(held, axis=0)
            how = "sum" if axis != "data" else "mean"
            if leaf_rel_err(total, reference) <= tol:
                return Pattern("not synchronised", f"the copies differ across the {len(held)} devices of {axis!r}; their "
                                                   f"{how} is the true gradient", replicated, True)
            return Pattern("wrong", f"the copies differ across the {len(held)} devices of {axis!r} (their {how} is not the "
                                    "true gradient either)", replicated, True)
    if leaf_rel_err(gathered, reference) <= tol:
        return Pattern("ok", "", replicated)
    if tp > 1 and leaf_rel_err(gathered, tp * reference) <= tol:
        return Pattern("counted tp times", f"= {tp} x the true gradient", replicated)
    if tp > 1 and leaf_rel_err(gathered, reference / tp) <= tol:
        return Pattern("not all-reduced", f"= 1/{tp} of the true gradient", replicated)
    return Pattern("wrong", "", replicated)


def name_mistake(patterns: list[Pattern], sequence_parallel: bool) -> str:
    """The mistake named from the tensors' patterns, in backward order; '' when none is named (see the module's
    docstring)."""
    failing = [p for p in patterns if p.kind != "ok"]
    if not failing:
        return ""
    kinds = {p.kind for p in failing}
    if len(kinds) == 1 and kinds <= {"counted tp times", "not all-reduced", "not synchronised"}:
        return failing[0].kind
    if failing[0].kind == "counted tp times":
        return "adjoint swapped"
    if sequence_parallel and failing[0].replicated:
        return "adjoint swapped"
    if not sequence_parallel and any(p.copies_differ for p in failing):
        return "not all-reduced"
    return ""


EXPLAIN = {
    "counted tp times": "a replicated term reduced over the group as if it were a partial sum",
    "not all-reduced": "a replicated input's gradient never all-reduced: each device continued with its own share",
    "not synchronised": "replicated parameters' gradients not synchronised across the group",
    "adjoint swapped": "a collective's adjoint swapped (g's taken as f's, or the all-gather's not a reduce-scatter)",
}


def _named(tree: Any) -> dict[str, Any]:
    """The leaves of a pytree by their paths, `h.0.attn.c_attn.W`."""
    return {jax.tree_util.keystr(p, simple=True, separator="."): a for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_sharded(sharded: Any, params: Any, *args: Any, reference: Callable | None = None, shard: Callable | None = None,
                  gather: Callable | None = None, mesh: Any = None, axis: str = "model", sequence_parallel: bool = False,
                  order: list[str] | None = None, tol: float | None = None) -> ShardedReport:
    """Check `sharded` (a `fnbackprop.parallel.TensorParallel`, or any function (sharded params, *args) ->
    (loss, sharded grads)) against one device's `jax.value_and_grad(reference)(params, *args)`.

    For a function give `reference` (the single-device loss), `shard` (params -> the sharded layout), `gather`
    (sharded -> the single-device pytree) and `mesh`; `axis` is the mesh axis the model is split over, and
    `order` the tensors' names in backward order (the pytree's order reversed by default). A
    `TensorParallel` brings all of these. `tol`: 1e-10 in float64, 2e-5 in float32 (sums in another order)."""
    if _is_split(sharded):  # a fnbackprop.parallel.TensorParallel (read by its attributes: check sits below parallel)
        tp_object = sharded
        reference = reference or tp_object.model.loss
        shard, gather, mesh = tp_object.shard, tp_object.gather, tp_object.mesh
        sequence_parallel = tp_object.sequence_parallel
        value_and_grad = tp_object.value_and_grad
        order = order or gpt_backward_order(tp_object.model.n_layer, tp_object.model.bias)
        subject = (f"tensor-parallel GPT on a {tp_object.dp} x {tp_object.tp} mesh (data x model)"
                   + (", sequence parallel" if sequence_parallel else ""))
    else:
        if reference is None or shard is None or gather is None or mesh is None:
            raise ValueError("check_sharded: give reference=, shard=, gather= and mesh= with a function "
                             "(a fnbackprop.parallel.TensorParallel brings its own)")
        value_and_grad, subject = sharded, getattr(sharded, "__name__", "sharded function")
    if axis not in mesh.axis_names:
        raise ValueError(f"check_sharded: the mesh has no axis {axis!r} (it has {tuple(mesh.axis_names)})")
    leaves = jax.tree_util.tree_leaves(params)
    tol = tol if tol is not None else (TOL_FLOAT64 if all(np.asarray(a).dtype == np.float64 for a in leaves) else TOL_FLOAT32)
    tp = int(mesh.shape[axis])

    ref_loss, ref_grads = jax.value_and_grad(reference)(params, *args)
    loss, grads = value_and_grad(shard(params), *args)
    full = gather(grads)

    named_ref = {n: np.asarray(a) for n, a in _named(ref_grads).items()}
    named_full = {n: np.asarray(a) for n, a in _named(full).items()}
    named_sharded = _named(grads)
    if set(named_ref) != set(named_full):
        raise ValueError(f"check_sharded: the gathered gradients' tensors {sorted(named_full)} are not the reference's {sorted(named_ref)}")
    names = [n for n in (order or list(named_ref)[::-1]) if n in named_ref]
    names += [n for n in named_ref if n not in names]

    patterns: list[Pattern] = []
    rows = []
    for name in names:
        g, r, a = named_full[name], named_ref[name], named_sharded[name]
        copies = {ax: device_copies(a, mesh, ax) for ax in mesh.axis_names}
        if g.shape != r.shape:
            patterns.append(Pattern("wrong", "shape"))
            rows.append(TensorRow(name, g.shape, False, float("inf"), float("inf"), (), float("nan"), float("nan"), 0,
                                  "shape/dtype mismatch", detail=f"gathered {g.shape}, one device {r.shape}"))
            continue
        pattern = classify(g, r, copies, tp, tol, _replicated(a))
        patterns.append(pattern)
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g - r)), g.shape)) if g.size else ()
        rows.append(TensorRow(name, g.shape, True, float(np.max(np.abs(g - r))) if g.size else 0.0, leaf_rel_err(g, r), worst,
                              best_fit_ratio(g, r), float("nan"), 0, "ok" if pattern.kind == "ok" else "backward wrong",
                              detail=pattern.evidence or ("" if pattern.kind == "ok" else f"worst at {worst}")))
    named = name_mistake(patterns, sequence_parallel)
    rows = [row if row.ok else row._replace(diagnosis=f"{named}: {row.detail}" if named else
                                            diagnose(named_full[row.name], named_ref[row.name]))
            for row in rows]
    warnings = []
    loss_err = abs(float(loss) - float(ref_loss)) / max(abs(float(ref_loss)), 1e-30)
    if loss_err > tol:
        warnings.append(f"the sharded loss {float(loss):.10g} is not one device's {float(ref_loss):.10g}: the forward "
                        "itself differs (e.g. a replicated bias added to every partial sum, counted tp times)")
        rows.insert(0, TensorRow("loss", (), True, abs(float(loss) - float(ref_loss)), loss_err, (), float("nan"), float("nan"), 0,
                                 "backward wrong", detail="the sharded forward's loss differs from one device's",
                                 diagnosis="forward: the sharded forward computes another function"))
    notes = (f"named mistake: {named} ({EXPLAIN[named]})",) if named else ()
    return ShardedReport(subject, rows, float("nan"), tol, float("nan"), warnings, notes)


def _is_split(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("model", "mesh", "shard", "gather", "value_and_grad", "sequence_parallel"))


def gpt_backward_order(n_layer: int, bias: bool) -> list[str]:
    """A GPT's parameters in the order the backward reaches them: the head's wte use and ln_f, the blocks from
    the last (mlp c_proj, c_fc, ln_2, attention c_proj, c_attn, ln_1), then wpe (and wte again)."""
    ln = ["gamma", "beta"] if bias else ["gamma"]
    lin = ["W", "b"] if bias else ["W"]
    names = [f"ln_f.{k}" for k in ln]
    for i in reversed(range(n_layer)):
        h = f"h.{i}"
        names += [f"{h}.mlp.c_proj.{k}" for k in lin] + [f"{h}.mlp.c_fc.{k}" for k in lin] + [f"{h}.ln_2.{k}" for k in ln]
        names += [f"{h}.attn.c_proj.{k}" for k in lin] + [f"{h}.attn.c_attn.{k}" for k in lin] + [f"{h}.ln_1.{k}" for k in ln]
    return names + ["wpe", "wte"]
