"""Verify a hand-written backward pass, tensor by tensor, against two independent references.

    report = fb.check_layer(my_layer, key, in_shape=(8,))      # or x=..., params=...
    report.passed, report.failing()                             # rows name the wrong tensor
    fb.check_network(net, key, x, y); fb.check_loss(head, key, z, y)

For every tensor (each parameter leaf by its pytree path, dx, and for networks each layer's upstream
gradient) three gradients of the same scalar are compared:

- **hand**: the user's `backward`, run eagerly and under `jax.jit` (the two must agree);
- **autodiff**: `jax.vjp` of the forward with the same upstream cotangent, in float64;
- **finite differences**: float64 central differences, the step scaled per entry.

Verdicts tell the cases apart: hand != autodiff while autodiff == finite differences means *the
backward is wrong*; autodiff != finite differences means the references themselves disagree (a
precision problem, or a broken finite-difference routine). Entries where the function has a kink
(one-sided slopes differ, as where a ReLU mask changes between x+h and x-h) are reported as kinks,
not failures. Errors are never scaled by array size: `rel` is max|a-b| / max(max|a|, max|b|, floor), the floor
being the rounding noise of the largest gradient in the check (a tensor whose true gradient is 0,
like a bias before batch norm, is otherwise pure noise on both sides), and
`ratio` is the least-squares fit hand ~ ratio x autodiff (a missing 1/m reads "x m", a sign flip "x -1").
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .check import sample_targets
from .layers import Layer, forward_with_key
from .losses import Head
from .network import Network
from .numerics import TOL_FINITE_DIFF, TOL_FLOAT32, TOL_FLOAT64, noise_floor, rel_err

Array = jax.Array

#: most entries of one tensor perturbed by finite differences (a random subset beyond that)
MAX_FD_ENTRIES = 512
#: a second difference this large, relative to the gradient's scale, marks a kink
KINK_TOL = 1e-3
#: the finite-difference step, relative to max(1, |entry|)
FD_STEP = 6e-6


class TensorRow(NamedTuple):
    name: str
    shape: tuple
    shape_ok: bool
    max_abs_err: float
    rel_err: float  # hand vs autodiff
    worst_index: tuple
    ratio: float  # least-squares hand / autodiff
    fd_rel_err: float  # autodiff vs finite differences, over the non-kink entries checked (nan: not checked)
    kinks: int
    verdict: str  # "ok" | "kink" | "backward wrong" | "references disagree" | "shape/dtype mismatch"

    @property
    def ok(self) -> bool:
        return self.verdict in ("ok", "kink")


class Report(NamedTuple):
    subject: str
    rows: list
    jit_rel_err: float
    tol: float
    fd_tol: float
    warnings: list

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows) and self.jit_rel_err <= self.tol

    def failing(self) -> list[TensorRow]:
        return [r for r in self.rows if not r.ok]

    def to_dict(self) -> dict:
        return {"subject": self.subject, "passed": self.passed, "jit_rel_err": self.jit_rel_err, "tol": self.tol,
                "fd_tol": self.fd_tol, "warnings": self.warnings, "rows": [r._asdict() for r in self.rows]}


# ----- comparing one tensor ------------------------------------------------------------------------
def _ratio(hand: np.ndarray, auto: np.ndarray) -> float:
    denom = float(np.vdot(auto, auto))
    return float(np.vdot(hand, auto)) / denom if denom > 0 else float("nan")


def compare_tensor(name: str, hand: Any, auto: Any, tol: float, fd: tuple | None = None, fd_tol: float = TOL_FINITE_DIFF,
                   floor: float = 0.0) -> TensorRow:
    """One row: hand vs autodiff everywhere, autodiff vs finite differences at the sampled entries.

    `fd` is (flat indices, finite-difference values, second differences) or None; `floor` is the
    smallest scale a relative error is taken against (`fnbackprop.numerics.noise_floor`).
    """
    hand, auto = np.asarray(hand), np.asarray(auto)
    if hand.shape != auto.shape or not np.issubdtype(hand.dtype, np.floating):
        return TensorRow(name, tuple(auto.shape), False, float("inf"), float("inf"), (), float("nan"), float("nan"), 0,
                         f"shape/dtype mismatch: hand {hand.shape} {hand.dtype}, expected {auto.shape} {auto.dtype}")
    diff = np.abs(hand.astype(np.float64) - auto)
    scale = max(np.max(np.abs(hand), initial=0.0), np.max(np.abs(auto), initial=0.0), floor)
    rel = float(np.max(diff, initial=0.0) / scale) if scale > 0 else 0.0
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape)) if diff.size else ()
    kink_mask = np.zeros(auto.size, bool)
    fd_rel = float("nan")
    if fd is not None:
        idx, fd_values, second = fd
        grad_scale = max(1.0, float(np.max(np.abs(auto), initial=0.0)))
        kinks_here = np.abs(second) > KINK_TOL * grad_scale
        kink_mask[idx[kinks_here]] = True
        smooth = ~kinks_here
        fd_rel = rel_err(auto.reshape(-1)[idx[smooth]], fd_values[smooth], floor)
    bad = (diff.reshape(-1) > tol * scale) if scale > 0 else np.zeros(diff.size, bool)
    if rel <= tol:
        verdict = "ok"
    elif bad.any() and np.all(kink_mask[bad]):
        verdict = "kink"
    else:
        verdict = "backward wrong"
    if verdict == "ok" and kink_mask.any():
        verdict = "kink"
    if fd is not None and fd_rel > fd_tol:
        verdict = "references disagree"
    return TensorRow(name, tuple(auto.shape), True, float(np.max(diff, initial=0.0)), rel, worst, _ratio(hand, auto),
                     fd_rel, int(kink_mask.sum()), verdict)


# ----- finite differences on chosen entries ----------------------------------------------------------
def finite_differences_at(f: Callable[[Any], Array], tree: Any, key: Array, max_entries: int = MAX_FD_ENTRIES) -> list:
    """Per leaf of `tree`: (flat indices, central differences, second differences) of the scalar f.

    Second differences (f(+h) - 2 f(0) + f(-h)) / h are ~ h f'' where f is smooth and ~ the jump of
    the slope at a kink. Leaves over `max_entries` entries are sampled at random.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    f0 = f(tree)
    out = []
    for j, (leaf, k) in enumerate(zip(leaves, jax.random.split(key, max(1, len(leaves))))):
        flat = jnp.ravel(leaf)
        idx = np.arange(flat.size) if flat.size <= max_entries else np.sort(
            np.asarray(jax.random.choice(k, flat.size, (max_entries,), replace=False)))
        h = FD_STEP * jnp.maximum(1.0, jnp.abs(flat[idx]))

        def at(i, delta, j=j, leaf=leaf, flat=flat):
            moved = flat.at[i].add(delta).reshape(leaf.shape)
            return f(jax.tree_util.tree_unflatten(treedef, [moved if n == j else l for n, l in enumerate(leaves)]))

        plus = jax.vmap(at)(jnp.asarray(idx), h)
        minus = jax.vmap(at)(jnp.asarray(idx), -h)
        out.append((idx, np.asarray((plus - minus) / (2 * h)), np.asarray((plus - 2 * f0 + minus) / h)))
    return out


def _as(tree: Any, dtype) -> Any:
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a).astype(dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, tree)


def _tolerance(dtype, tol: float | None) -> tuple[float, list]:
    if tol is None:
        return (TOL_FLOAT64 if dtype == jnp.float64 else TOL_FLOAT32), []
    notes = []
    if dtype != jnp.float64 and tol < 1e-6:
        notes.append(f"judging {jnp.dtype(dtype).name} at tolerance {tol:g}: float32 rounding alone is ~1e-7 "
                     "relative per operation, so expect false failures; check in float64")
        warnings.warn(notes[-1], stacklevel=3)
    return tol, notes


def _paths(tree: Any, prefix: str) -> list[str]:
    return [prefix + jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _rows(names, hand_leaves, auto_leaves, fd_list, tol, fd_tol, floor) -> list[TensorRow]:
    fd_list = fd_list if fd_list is not None else [None] * len(names)
    return [compare_tensor(n, h, a, tol, fd, fd_tol, floor) for n, h, a, fd in zip(names, hand_leaves, auto_leaves, fd_list)]


# ----- the public checks -----------------------------------------------------------------------------
def check_layer(layer: Layer, key: Array, x: Array | None = None, *, in_shape: tuple | None = None, batch: int = 4,
                params: Any = None, dtype=jnp.float64, tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF,
                finite_differences: Callable = finite_differences_at, layer_key: Array | None = None) -> Report:
    """Check `layer.backward` against jax.vjp of `layer.forward` and finite differences, per tensor.

    Give `x` (m, *in_shape) or `in_shape`; params are drawn with `layer.init` unless given. Stochastic
    layers run with `layer_key` (a fixed mask), so all references see the same function.
    """
    k_init, k_x, k_dy, k_fd = jax.random.split(key, 4)
    if x is None:
        if in_shape is None:
            raise ValueError("give x or in_shape")
        x = jax.random.normal(k_x, (batch, *in_shape), dtype)
    x = _as(x, dtype)
    params = _as(layer.init(k_init, tuple(x.shape[1:])) if params is None else params, dtype)
    tol, notes = _tolerance(dtype, tol)
    stochastic_key = layer_key if layer_key is not None else jax.random.PRNGKey(0)

    def forward(p, inp):
        return forward_with_key(layer, p, inp, stochastic_key)

    y, cache = forward(params, x)
    dy = jax.random.normal(k_dy, y.shape, dtype)
    hand = layer.backward(params, cache, dy)
    jitted = jax.jit(lambda p, inp, d: layer.backward(p, forward(p, inp)[1], d))(params, x, dy)
    _, vjp = jax.vjp(lambda p, inp: forward(p, inp)[0], params, x)
    auto = vjp(dy)
    fd = finite_differences(lambda t: jnp.vdot(forward(t["params"], t["x"])[0], dy), {"params": params, "x": x}, k_fd)
    names = _paths(params, "params") + ["dx"]
    hand_leaves = jax.tree_util.tree_leaves(hand[0]) + [hand[1]]
    if len(hand_leaves) != len(names):
        raise ValueError(f"backward returned {len(hand_leaves) - 1} parameter gradients for {len(names) - 1} parameters")
    auto_leaves = jax.tree_util.tree_leaves(auto[0]) + [auto[1]]
    floor = noise_floor(auto_leaves, dtype, tol)
    rows = _rows(names, hand_leaves, auto_leaves, fd, tol, fd_tol, floor)
    return Report(getattr(layer, "name", type(layer).__name__), rows, rel_err(hand, jitted, floor), tol, fd_tol, notes)


def check_loss(head: Head, key: Array, z: Array | None = None, y: Array | None = None, *, shape: tuple = (4, 3),
               dtype=jnp.float64, tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF,
               finite_differences: Callable = finite_differences_at) -> Report:
    """Check a head's dZ[L] = head.backward(z, y) against jax.grad of head.cost and finite differences."""
    kz, ky, kf = jax.random.split(key, 3)
    z = _as(jax.random.normal(kz, shape, dtype) if z is None else z, dtype)
    y = _as(sample_targets(ky, head.loss.name, z.shape[0], z.shape[1], dtype) if y is None else y, dtype)
    tol, notes = _tolerance(dtype, tol)
    hand = head.backward(z, y)
    jitted = jax.jit(head.backward)(z, y)
    auto = jax.grad(head.cost)(z, y)
    fd = finite_differences(lambda t: head.cost(t, y), z, kf)
    floor = noise_floor(auto, dtype, tol)
    rows = _rows(["dZ[L]"], [hand], [auto], fd, tol, fd_tol, floor)
    return Report(f"{head.output.name} + {head.loss.name}", rows, rel_err(hand, jitted, floor), tol, fd_tol, notes)


def check_network(net: Network, key: Array, x: Array | None = None, y: Array | None = None, *, batch: int = 4,
                  params: Any = None, dtype=jnp.float64, tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF,
                  finite_differences: Callable = finite_differences_at, step_key: Array | None = None) -> Report:
    """Every parameter leaf, every layer's upstream gradient, and dx of a whole network, per tensor."""
    k_init, k_x, k_y, k_fd = jax.random.split(key, 4)
    x = _as(jax.random.normal(k_x, (batch, *net.in_shape), dtype) if x is None else x, dtype)
    y = sample_targets(k_y, net.head.loss.name, x.shape[0], net.n_out, dtype) if y is None else y
    params = _as(net.init(k_init) if params is None else params, dtype)
    tol, notes = _tolerance(dtype, tol)
    skey = step_key if step_key is not None else jax.random.PRNGKey(0)
    trace = net.trace(params, x, y, skey)
    jitted = jax.jit(lambda p: net.trace(p, x, y, skey))(params)
    grads_auto, dx_auto = jax.grad(net.loss, argnums=(0, 1))(params, x, y, skey)
    probes = tuple(jnp.zeros_like(o) for o in trace.outputs)
    probe_grads = jax.grad(net.probed_cost, argnums=3)(params, x, y, probes, jnp.zeros_like(trace.prediction), skey)
    fd = finite_differences(lambda t: net.loss(t["params"], t["x"], y, skey), {"params": params, "x": x}, k_fd)
    names = _paths(params, "params") + ["dx"]
    auto_leaves = jax.tree_util.tree_leaves(grads_auto) + [dx_auto]
    floor = noise_floor(auto_leaves, dtype, tol)
    rows = _rows(names, jax.tree_util.tree_leaves(trace.grads) + [trace.dx], auto_leaves, fd, tol, fd_tol, floor)
    layer_names = [f"upstream of layer {i} ({getattr(layer, 'name', type(layer).__name__)})" for i, layer in enumerate(net.layers)]
    rows += _rows(layer_names, list(trace.cotangents), list(probe_grads), None, tol, fd_tol, noise_floor(probe_grads, dtype, tol))
    jit_err = rel_err((trace.grads, trace.dx, trace.cotangents), (jitted.grads, jitted.dx, jitted.cotangents), floor)
    return Report(f"network of {len(net.layers)} layers", rows, jit_err, tol, fd_tol, notes)
