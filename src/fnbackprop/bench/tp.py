"""Tensor parallelism's communication, counted from the step's HLO (`fnbackprop bench --tp`).

The hand-written split (`fnbackprop.parallel.tensor_parallel`) of the CPU preset's GPT on a 2 x 4 (data x model)
mesh, with and without sequence parallelism, and the same model under `jax.jit` with the same parameters'
shardings, where GSPMD chooses the collectives itself. For each, every collective in the step's HLO: its kind,
the mesh axis its groups run along, and the bytes each device sends (by the ring algorithms, `hlo_collectives`). Read twice: as the program
is written (HLO before XLA's passes, one line per collective the code calls) and as compiled (after XLA's
passes, which may combine several into one).

Megatron's analysis (Korthikanti et al. 2022, "Reducing activation recomputation", section 4.2.2), per
transformer block of a batch of b sequences of s positions and width h split over t ranks: 2 all-reduces of
the (b, s, h) activations forward (after the attention's and the MLP's row-parallel layers, g) and 2 backward
(before the column-parallel layers, f's adjoint); with sequence parallelism each all-reduce becomes an
all-gather and a reduce-scatter of the same buffer: 4 all-gathers and 4 reduce-scatters per block, the same
bytes sent (a ring all-reduce is a reduce-scatter followed by an all-gather). Beyond the blocks, the hand split has one more of each at the vocabulary-parallel embedding (forward)
and at the tied head (backward), and small ones: the cross-entropy's max, denominator and target logit
(b x s numbers each), the replicated parameters' gradients under sequence parallelism, the average over "data".
On simulated CPU devices times mean little; the counts and bytes are exact.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_BYTES = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s64": 8, "pred": 1, "s8": 1, "u8": 1}
_LINE = re.compile(r"=\s*(?P<shape>\([^()]*\)|[a-z0-9]+\[[0-9,]*\](?:\{[0-9,]*\})?)\s+(?P<kind>" + "|".join(KINDS)
                   + r")(?:-start)?\((?P<rest>.*)$")
_ARRAY = re.compile(r"([a-z0-9]+)\[([0-9,]*)\]")


def _arrays(shape: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(dtype, tuple(int(d) for d in dims.split(",") if d)) for dtype, dims in _ARRAY.findall(shape)]


def _groups(rest: str) -> list[list[int]]:
    """The replica groups of one collective: {{0,1},{2,3}} or the iota form [G,S]<=[dims]T(perm)."""
    explicit = re.search(r"replica_groups=\{(\{[0-9,]*\}(?:,\{[0-9,]*\})*)\}", rest)
    if explicit:
        return [[int(i) for i in g.split(",") if i] for g in re.findall(r"\{([0-9,]*)\}", explicit.group(1))]
    pairs = re.search(r"source_target_pairs=\{(\{[0-9,]*\}(?:,\{[0-9,]*\})*)\}", rest)
    if pairs:  # a collective-permute: each (source, target) pair exchanges along the axes it spans
        return [[int(i) for i in g.split(",") if i] for g in re.findall(r"\{([0-9,]*)\}", pairs.group(1))]
    named = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", rest)
    if named:  # XLA's mesh form: mesh['axis_0'=2,'axis_1'=4] {'axis_1'}: groups along the axes in braces
        axes = re.findall(r"'([^']+)'=([0-9]+)", named.group(1))
        chosen = [i for i, (name, _) in enumerate(axes) if f"'{name}'" in named.group(2)]
        ids = np.arange(int(np.prod([int(n) for _, n in axes]))).reshape([int(n) for _, n in axes])
        rest_axes = [i for i in range(len(axes)) if i not in chosen]
        size = int(np.prod([int(axes[i][1]) for i in chosen]))
        return [[int(i) for i in row] for row in ids.transpose(rest_axes + chosen).reshape(-1, size)]
    iota = re.search(r"replica_groups=\[([0-9,]+)\]<=\[([0-9,]+)\](?:T\(([0-9,]+)\))?", rest)
    if iota:
        shape = [int(d) for d in iota.group(1).split(",")]
        ids = np.arange(int(np.prod([int(d) for d in iota.group(2).split(",")]))).reshape([int(d) for d in iota.group(2).split(",")])
        if iota.group(3):
            ids = ids.transpose([int(p) for p in iota.group(3).split(",")])
        return [[int(i) for i in row] for row in ids.reshape(shape)]
    return []


def _axis(groups: list[list[int]], mesh_shape: dict) -> str:
    """The mesh axes a collective's groups run along (devices numbered in the mesh's row-major order)."""
    names, sizes = list(mesh_shape), list(mesh_shape.values())
    if not groups or len(groups[0]) <= 1:
        return "none"
    coords = [np.array(np.unravel_index(g, sizes)) for g in groups]  # (n_axes, group size) each
    varying = [n for i, n in enumerate(names) if any(len(set(c[i])) > 1 for c in coords)]
    return "+".join(varying)


def hlo_collectives(hlo: str, mesh_shape: dict) -> list[dict]:
    """Every collective in an HLO module's text: kind, axis, result shapes, group size g, the buffer it reduces
    or gathers (`buffer_bytes`), and the bytes each device sends by the ring algorithms (`bytes`): an
    all-reduce 2 (g - 1) / g of its buffer (a reduce-scatter then an all-gather), an all-gather, a
    reduce-scatter or an all-to-all (g - 1) / g, a collective-permute all of it."""
    found = []
    for line in hlo.splitlines():
        match = _LINE.search(line)
        if not match or "-done(" in line:
            continue
        kind, groups = match.group("kind"), _groups(match.group("rest"))
        arrays = _arrays(match.group("shape"))
        size = len(groups[0]) if groups else 1
        result_bytes = sum(_BYTES.get(dtype, 4) * int(np.prod(dims)) for dtype, dims in arrays)
        buffer = result_bytes * size if kind == "reduce-scatter" else result_bytes
        share = (size - 1) / size if size > 1 else 0.0
        sent = buffer if kind == "collective-permute" else (2 if kind == "all-reduce" else 1) * share * buffer
        found.append({"kind": kind, "axis": _axis(groups, mesh_shape), "shapes": [list(dims) for _, dims in arrays],
                      "buffer_bytes": int(buffer), "bytes": int(round(sent)), "group": size})
    return found


def summarise(collectives: list[dict], activation_bytes: int) -> dict:
    """Counts and bytes by (kind, axis), and the count of activation-sized ones ((b, s, h) buffers) by kind."""
    by: Counter = Counter()
    moved: Counter = Counter()
    for c in collectives:
        by[f"{c['kind']} over {c['axis']}"] += 1
        moved[f"{c['kind']} over {c['axis']}"] += c["bytes"]
    activations = Counter(c["kind"] for c in collectives if c["axis"] == "model" and c["buffer_bytes"] == activation_bytes)
    return {"count": dict(by), "bytes": dict(moved), "activation_sized_on_model": dict(activations),
            "total_bytes": int(sum(c["bytes"] for c in collectives))}


def megatron(n_layer: int, activation_bytes: int, sequence_parallel: bool) -> dict:
    """Megatron's per-step count for n_layer blocks (forward and backward), plus the embedding's and the head's one
    each that a vocabulary-parallel, tied GPT adds."""
    per_block = {"all-gather": 4, "reduce-scatter": 4} if sequence_parallel else {"all-reduce": 4}
    ends = {"all-gather": 2, "reduce-scatter": 2} if sequence_parallel else {"all-reduce": 2}
    return {"per_block": per_block, "per_step": {k: n_layer * v + ends[k] for k, v in per_block.items()},
            "activation_bytes": int(activation_bytes)}


def measure_tp_communication(data: int = 2, model_size: int = 4) -> dict:
    """The CPU preset's GPT (4 x 128, context 64, batch 12, vocabulary 65: padded to 68) on a data x model mesh:
    the hand split's collectives with and without sequence parallelism, as written and as compiled, beside
    Megatron's count; and GSPMD's for the same model and parameters' shardings."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from ..models.gpt import gpt
    from ..parallel import make_mesh, tensor_parallel

    model = gpt(65, 64, 4, 4, 128)
    batch, T = 12, 64
    mesh = make_mesh(data=data, model=model_size)
    shape = {"data": data, "model": model_size}
    params = model.init(jax.random.PRNGKey(0))
    idx = jnp.zeros((batch, T), jnp.int32)
    activation_bytes = 4 * (batch // data) * T * model.n_embd
    out: dict[str, Any] = {"model": "gpt 4 x 128, context 64, vocabulary 65, batch 12, float32", "mesh": shape, "hand": {}}
    for sp in (False, True):
        split = tensor_parallel(model, mesh, sequence_parallel=sp)
        lowered = split._compiled["hand"].lower(split.shard(params), idx, idx, None)
        written = hlo_collectives(lowered.as_text(dialect="hlo"), shape)
        compiled = hlo_collectives(lowered.compile().as_text() or "", shape)
        out["hand"]["sequence parallel" if sp else "tensor parallel"] = {
            "as_written": summarise(written, activation_bytes), "as_compiled": summarise(compiled, activation_bytes),
            "megatron": megatron(model.n_layer, activation_bytes, sp)}
    specs = tensor_parallel(model, mesh).specs(params)
    specs["wte"] = P()  # 65 rows: GSPMD cannot split them over 4 without the padding the hand split adds
    shardings = jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), specs)
    batch_sharding = NamedSharding(mesh, P("data", None))
    step = jax.jit(jax.value_and_grad(model.loss), in_shardings=(shardings, batch_sharding, batch_sharding))
    compiled = hlo_collectives(step.lower(params, idx, idx).compile().as_text() or "", shape)
    out["gspmd"] = {"as_compiled": summarise(compiled, activation_bytes),
                    "note": "the single-device forward and jax.grad under jax.jit, parameters sharded as the hand split "
                            "shards them (wte replicated), the batch over data; XLA's SPMD partitioner picks the collectives"}
    return out
