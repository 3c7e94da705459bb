"""Verify a hand-written backward pass, tensor by tensor, against two independent references.

    report = fb.check_layer(my_layer, key, in_shape=(8,))      # or x=..., params=...
    report.passed, report.failing()                             # rows name the wrong tensor
    fb.check_network(net, key, x, y); fb.check_loss(head, key, z, y)

For every tensor (each parameter leaf by its pytree path, dx, and for networks each layer's upstream
gradient) three gradients of the same scalar are compared:

- **hand**: the user's `backward`, run eagerly and under `jax.jit` (the two must agree);
- **autodiff**: `jax.vjp` of the forward with the same upstream cotangent;
- **finite differences**: float64 central differences, the step scaled per entry (always float64,
  whatever precision is under test).

The verdicts, and how kinks and non-finite numbers are judged, are in `fnbackprop.check.verdicts`. Errors
are never scaled by array size: `rel` is max|a-b| / max(max|a|, max|b|, floor), the floor being the
rounding noise of the largest gradient in the check (a tensor whose true gradient is 0, like a bias
before batch norm, is otherwise pure noise on both sides), and `ratio` is the least-squares fit
hand ~ ratio x autodiff (a missing 1/m reads "x m", a sign flip "x -1").

**No special points.** Parameters the checker draws itself (`params=None`) are moved off the values
that hide factors: a gamma of 1 hides a forgotten "* gamma", a beta of 0 a forgotten "+ beta" term,
identical entries a transpose. Each floating leaf p becomes p + (s/2) u, u ~ U(-1, 1) entrywise, s
the leaf's standard deviation, or |c| for a leaf that is the constant c != 0, or 1 for zeros (so 1
moves into (0.5, 1.5) and keeps its sign). The report says so in its notes. Given parameters are
used as given.

**User code that fails is a finding.** An init, forward or backward that raises, or returns the
wrong pytree structure or something that is not an array, gives a report with one failing row
(`raised` or `structure mismatch`) naming what failed and what was expected; the traceback is kept
in `report.traceback`. Wrong shapes and dtypes are per-tensor rows (`shape/dtype mismatch`).
"""

from __future__ import annotations

import contextlib
import traceback
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .battery import sample_targets
from .diagnosis import FIT_TOL, diagnose
from ..layers import Layer, forward_with_key
from ..losses import Head
from ..models.network import Network
from .numerics import TOL_FINITE_DIFF, TOL_FLOAT32, TOL_FLOAT64, leaf_rel_err, noise_floor
from .rules import derivative_variants
from .projections import (PROJECTIONS, LEAF_PROJECTIONS, LOCALISE_ENTRIES, Projections, leaf_supports, projected_differences,
                          projection_error, support_norms)
from .verdicts import (MAX_FD_ENTRIES as MAX_FD_ENTRIES, joint_kink_violation, numpy_rng, Report as Report, TensorRow as TensorRow,
                       compare_tensor as compare_tensor, entries_to_probe, failure_row,
                       finite_differences_at as finite_differences_at)

Array = jax.Array

#: the verdicts whose rows carry a diagnosis of the mistake's kind
DIAGNOSED = ("backward wrong", "non-finite", "shape/dtype mismatch")

#: the diagnosis of a rule whose values at a kink are each a valid one-sided slope but not together
TIE_DIAGNOSIS = ("tie: at the kink each entry's value lies between its own one-sided slopes, but not together: tied "
                 "entries must share the upstream gradient (split it, or give it to one of them), not each take all of it")

#: random entries of each layer's output probed by finite differences in `check_network` (every entry
#: where hand != autodiff is probed too, up to as many again)
INTERMEDIATE_FD_ENTRIES = 64

MOVED_NOTE = ("parameters drawn by init, then moved off special values (each leaf + (s/2) U(-1, 1), s its spread, "
              "or its value where constant, or 1 for zeros); pass params= to check at your own values")


class UserCodeFailed(Exception):
    """The code under check raised, or returned something of the wrong structure."""

    def __init__(self, stage: str, verdict: str, detail: str, trace: str = ""):
        super().__init__(f"{stage}: {detail}")
        self.stage, self.verdict, self.detail, self.trace = stage, verdict, detail, trace


def run_user(stage: str, fn: Callable, *args: Any) -> Any:
    """fn(*args), with any exception turned into `UserCodeFailed` naming the stage."""
    try:
        return fn(*args)
    except UserCodeFailed:
        raise
    except Exception as err:  # noqa: BLE001 (the user's code may raise anything; it is reported, not re-raised)
        first_line = (str(err).strip().splitlines() or [""])[0][:300]
        raise UserCodeFailed(stage, "raised", f"{type(err).__name__}: {first_line}", traceback.format_exc()) from None


class _Spec(str):
    """A string that prints without quotes inside a container's repr."""

    __repr__ = str.__str__


def describe(tree: Any) -> str:
    """A pytree with each array leaf written as dtype[shape], e.g. {'W': float64[3, 4]}."""
    def leaf(a: Any) -> str:
        return _Spec(f"{np.dtype(a.dtype).name}{list(a.shape)}" if hasattr(a, "shape") and hasattr(a, "dtype") else repr(a))

    return str(jax.tree_util.tree_map(leaf, tree, is_leaf=lambda a: a is None))


def _lists(tree: Any) -> Any:
    """The tree with every plain tuple made a list: a tuple of gradients for a list of parameters is
    the same gradient, not a wrong structure."""
    if type(tree) in (list, tuple):
        return [_lists(t) for t in tree]
    if type(tree) is dict:
        return {k: _lists(v) for k, v in tree.items()}
    return tree


def expect_like(stage: str, got: Any, expected: Any, what: str) -> None:
    """`got` must have the pytree structure of `expected` (any empty pytree stands for another; plain
    lists and tuples stand for each other), and array leaves; shapes and dtypes are judged per tensor later."""
    same = bool(jax.tree_util.tree_structure(_lists(got)) == jax.tree_util.tree_structure(_lists(expected)))  # type: ignore[operator]
    both_empty = not jax.tree_util.tree_leaves(got) and not jax.tree_util.tree_leaves(expected)
    if not (same or both_empty):
        raise UserCodeFailed(stage, "structure mismatch", f"{what} is {describe(got)}; expected the structure {describe(expected)}")
    not_arrays = [p for p, leaf in jax.tree_util.tree_flatten_with_path(got)[0] if not hasattr(leaf, "shape")]
    if not_arrays:
        raise UserCodeFailed(stage, "structure mismatch", f"{what} has leaves that are not arrays at "
                                                          f"{[jax.tree_util.keystr(p) for p in not_arrays][:3]}: {describe(got)}")


def expect_pair(stage: str, out: Any, first: str, second: str) -> tuple:
    """A stage's result must be a pair, e.g. forward's (y, cache) or backward's (dparams, dx)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise UserCodeFailed(stage, "structure mismatch", f"{stage} must return a pair ({first}, {second}); "
                                                          f"got {type(out).__name__} {describe(out)[:200]}")
    return tuple(out)


def move_off_special_values(key: Array, params: Any) -> Any:
    """Each floating leaf p + (s/2) u, u ~ U(-1, 1): s = std(p), or |c| for a constant leaf c != 0, or 1.

    Drawn with numpy from the key's bits (`numpy_rng`)."""
    rng = numpy_rng(key)

    def move(leaf: Any) -> Any:
        value = np.asarray(leaf)
        if not np.issubdtype(value.dtype, np.floating) or value.size == 0:
            return leaf
        spread = float(np.std(value))
        s = spread if spread > 0 else (abs(float(value.reshape(-1)[0])) or 1.0)
        return jnp.asarray(value + s / 2 * rng.uniform(-1.0, 1.0, value.shape), dtype=value.dtype)

    return jax.tree_util.tree_map(move, params)


def _parameters(given: Any, draw: Callable[[], Any], key: Array, dtype) -> tuple[Any, tuple]:
    """(params, notes): the given parameters as given, or drawn by `draw()` and moved off special values."""
    if given is not None:
        return as_dtype(given, dtype), ()
    drawn = run_user("init", draw)
    expect_like("init", drawn, drawn, "params")
    return move_off_special_values(key, as_dtype(drawn, dtype)), (MOVED_NOTE,)


def as_dtype(tree: Any, dtype) -> Any:
    """Every floating leaf of `tree` cast to `dtype`; other leaves (integers, booleans) as they are."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a).astype(dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, tree)


def tolerances(dtype, tol: float | None, fd_tol: float) -> tuple[float, float, list]:
    """(hand vs autodiff tolerance, autodiff vs float64 finite differences tolerance, warnings).

    Below float64, autodiff itself carries the precision's rounding, so it is held to finite
    differences at no less than the hand-vs-autodiff tolerance.
    """
    notes = []
    is64 = jnp.dtype(dtype) == jnp.float64
    if tol is None:
        tol = TOL_FLOAT64 if is64 else TOL_FLOAT32
    elif not is64 and tol < 1e-6:
        notes.append(f"judging {jnp.dtype(dtype).name} at tolerance {tol:g}: float32 rounding alone is ~1e-7 "
                     "relative per operation, so expect false failures; check in float64")
        warnings.warn(notes[-1], stacklevel=4)
    return tol, (fd_tol if is64 else max(fd_tol, tol)), notes


def _paths(tree: Any, prefix: str) -> list[str]:
    return [prefix + jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _precision(dtype) -> contextlib.AbstractContextManager:
    """float64 checks need jax_enable_x64; switch it on for the check if the caller has not."""
    return jax.enable_x64(True) if jnp.dtype(dtype) == jnp.float64 else contextlib.nullcontext()


def judge(names: list[str], hand: list, auto: list, jitted: list, tol: float, fd_tol: float, dtype,
           fd: tuple | None = None, local: dict | None = None, tols: list | None = None,
           expected_dtypes: list | None = None, projections: int = 0, variants: Callable[[], list] | None = None,
           most: int = MAX_FD_ENTRIES, known: Callable[[], list] | None = None) -> list:
    """Rows for aligned leaves. fd = (scalar f, point whose leaves align with names, key, routine):
    finite differences of f, in float64, at random entries plus those where hand != autodiff; or,
    with `projections` > 0 (fast mode, `fnbackprop.check.projections`), along that many random directions
    of all leaves at once, entry-wise only inside the leaves that fail.

    `tols` (one per leaf) replaces `tol` and the noise floor: the precision-relative tolerances of
    `check_vjp`, whose autodiff reference is float64 while the hand gradient has `expected_dtypes`.
    `variants()`, called only when no failing row's diagnosis names a kind (a mistake spreads to the
    tensors computed from it; one named row names it), gives (kind, slip in words, leaves aligned
    with names) for the forward with one textbook slip in its derivative (`variant_gradients`);
    `known()`, called only when a row fails, gives (kind, words, leaves aligned with names) of the
    caller's own typical mistakes (`check_layer(slips=...)`), tried before every generic pattern."""
    floor = noise_floor(auto, dtype, tol) if tols is None else 0.0
    tols = [tol] * len(names) if tols is None else tols
    expected_dtypes = [None] * len(names) if expected_dtypes is None else expected_dtypes
    samples, projected = [None] * len(names), [float("nan")] * len(names)
    if fd is not None and projections:
        samples, projected = _fast_differences(names, hand, auto, tols, fd_tol, floor, fd, projections)
    elif fd is not None:
        f, point, key, routine = fd
        keys = jax.random.split(key, len(names))
        indices = [entries_to_probe(h, a, t, floor, k, most) for h, a, t, k in zip(hand, auto, tols, keys)]
        with jax.enable_x64(True):
            samples = run_user("forward (finite differences, float64)", routine, f, as_dtype(point, jnp.float64), key, indices)
    rows = [compare_tensor(n, h, a, t, jitted=j, sample=s, fd_tol=fd_tol, floor=floor, expected_dtype=e, fd_projected=pr)
            for n, h, a, j, s, t, e, pr in zip(names, hand, auto, jitted, samples, tols, expected_dtypes, projected)]
    if fd is not None and any(r.verdict in ("kink", "convention") for r in rows):  # the excuse must hold across entries too
        f, point, key, _ = fd
        with jax.enable_x64(True):
            point64 = as_dtype(point, jnp.float64)
            for i, r in enumerate(rows):
                if r.verdict in ("kink", "convention"):
                    why = run_user("forward (directional derivatives at the kink, float64)", joint_kink_violation, f, point64, i,
                                   np.asarray(hand[i]), np.nan_to_num(np.asarray(auto[i], np.float64)), tols[i], floor, fd_tol,
                                   jax.random.fold_in(key, 31 + i))
                    rows[i] = r._replace(verdict="backward wrong", detail=why, diagnosis=TIE_DIAGNOSIS) if why else r
    slips = known() if known is not None and any(r.verdict in DIAGNOSED for r in rows) else []

    def diagnosed(row: TensorRow, h: Any, a: Any, t: float, alternatives: list | None = None) -> str:
        i = names.index(row.name)
        return diagnose(h, a, {n: o for n, o in zip(names, auto) if n != row.name}, (local or {}).get(row.name),
                        fit_tol=max(FIT_TOL, 4 * t), alternatives=alternatives,
                        known=[(kind, words, leaves[i]) for kind, words, leaves in slips])

    rows = [r._replace(diagnosis=diagnosed(r, h, a, t)) if r.verdict in DIAGNOSED and not r.diagnosis else r
            for r, h, a, t in zip(rows, hand, auto, tols)]
    named = any(r.diagnosis and not r.diagnosis.startswith("unknown") for r in rows)
    if variants is not None and not named and any(r.diagnosis.startswith("unknown") for r in rows):
        try:
            altered = variants()
        except Exception:  # noqa: BLE001 (an aid to the diagnosis only: a forward the interpreter cannot run keeps `unknown`)
            altered = []
        rows = [r._replace(diagnosis=diagnosed(r, h, a, t, [(kind, what, leaves[i]) for kind, what, leaves in altered]))
                if r.diagnosis.startswith("unknown") else r for i, (r, h, a, t) in enumerate(zip(rows, hand, auto, tols))]
    return rows


def _fast_differences(names: list[str], hand: list, auto: list, tols: list, fd_tol: float, floor: float, fd: tuple,
                      count: int) -> tuple[list, list]:
    """(entry samples, projection errors) per leaf for fast mode.

    First `count` directions over all leaves: autodiff against finite differences. If they disagree,
    LEAF_PROJECTIONS directions inside each leaf find the leaf whose autodiff is not its derivative
    (otherwise every leaf carries the all-leaves error). Inside the leaves where hand != autodiff,
    up to LOCALISE_ENTRIES entries (largest disagreement first), so that a kink may excuse them."""
    f, point, key, routine = fd
    k_all, k_leaf, k_entries = jax.random.split(key, 3)
    with jax.enable_x64(True):
        point = as_dtype(point, jnp.float64)
        supports = leaf_supports(point)
        everything = np.array([[0, supports[-1][1] if supports else 0]] * count)
        sample = run_user("forward (finite differences along random directions, float64)", projected_differences, f, point,
                          k_all, [auto], everything)
        error, used, dropped = projection_error(sample, 0, support_norms(auto, everything), fd_tol)
        close = [h_ is not None and getattr(h_, "shape", None) == np.shape(a) and leaf_rel_err(h_, a, floor) <= t
                 for h_, a, t in zip(hand, auto, tols)]
        samples, projected = [None] * len(names), [error] * len(names)
        if not error <= fd_tol:  # autodiff is not the derivative somewhere: find the leaf, LEAF_PROJECTIONS directions each
            leaf_directions = np.array([supports[i] for i in range(len(names)) for _ in range(LEAF_PROJECTIONS)])
            per_leaf = run_user("forward (finite differences along random directions, float64)", projected_differences, f,
                                point, k_leaf, [auto], leaf_directions)
            norms = support_norms(auto, leaf_directions)
            for i in range(len(names)):
                part = slice(i * LEAF_PROJECTIONS, (i + 1) * LEAF_PROJECTIONS)
                projected[i] = projection_error(Projections(per_leaf.support[part], per_leaf.quotient[part],
                                                            per_leaf.quotient_small[part], per_leaf.dots[:, part],
                                                            per_leaf.noise[part]), 0, norms[part], fd_tol)[0]
        failing = [i for i in range(len(names)) if not close[i]]
        if failing:  # hand != autodiff: the entries themselves, so that a kink may excuse them
            keys = jax.random.split(k_entries, len(names))
            indices = [entries_to_probe(hand[i], auto[i], tols[i], floor, keys[i], most=LOCALISE_ENTRIES // 2)
                       if i in failing else np.zeros(0, np.int64) for i in range(len(names))]
            entry_samples = run_user("forward (finite differences, float64)", routine, f, point, k_entries, indices)
            for i in failing:
                samples[i] = entry_samples[i]
    return samples, projected


def _param_and_input_leaves(grads: tuple) -> list:
    return jax.tree_util.tree_leaves(grads[0]) + [grads[1]]


def variant_gradients(f: Callable, args: tuple, ct: Any, leaves: Callable[[Any], list]) -> Callable[[], list]:
    """For `judge`: () -> [(label, kind, leaves(vjp of the variant at args with cotangent ct))] for each
    `fnbackprop.check.rules.derivative_variants` of f (run eagerly; only failing checks ask for them)."""
    def compute() -> list:
        return [(v.kind, v.what, leaves(jax.vjp(v.fn, *args)[1](ct))) for v in derivative_variants(f, *args)]

    return compute


def report_of(subject: str, rows: list, tol: float, fd_tol: float, warns: list, notes: tuple = ()) -> Report:
    jit = max((r.jit_rel_err for r in rows if r.jit_rel_err == r.jit_rel_err), default=float("nan"))
    return Report(subject, rows, jit, tol, fd_tol, warns, notes)


def guarded(subject: str, dtype, tol: float | None, fd_tol: float, body: Callable[[], Report]) -> Report:
    """body(), or the report of the user code that failed inside it."""
    try:
        with _precision(dtype):
            return body()
    except UserCodeFailed as failure:
        t, f, warns = tolerances(dtype, tol, fd_tol)
        return Report(subject, [failure_row(failure.stage, failure.verdict, failure.detail)], float("nan"), t, f, warns,
                      (), failure.trace)


# ----- the public checks -----------------------------------------------------------------------------
def check_layer(layer: Layer, key: Array, x: Array | None = None, *, in_shape: tuple | None = None, batch: int = 4,
                params: Any = None, dtype=jnp.float64, tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF,
                finite_differences: Callable = finite_differences_at, layer_key: Array | None = None, fast: bool = False,
                slips: Callable[[Any, Array, Array], list] | None = None) -> Report:
    """Check `layer.backward` against jax.vjp of `layer.forward` and finite differences, per tensor.

    Give `x` (m, *in_shape) or `in_shape`; params are drawn with `layer.init` and moved off special
    values unless given. `fast=True`: finite differences along random directions (`fnbackprop.check.projections`). Stochastic layers run with `layer_key` (a fixed mask), so all references see
    the same function. `slips(params, x, dy)`: [(kind, words, (dparams, dx))], the gradients that
    known mistakes would give at the check's point; a failing tensor that equals one is diagnosed
    with its words first (the exercises' typical student mistakes).
    """
    if x is None and in_shape is None:
        raise ValueError("give x or in_shape")
    subject = getattr(layer, "name", type(layer).__name__)

    def body() -> Report:
        k_init, k_x, k_dy, k_fd, k_move = jax.random.split(key, 5)
        inp = as_dtype(jax.random.normal(k_x, (batch, *(in_shape or ())), dtype) if x is None else x, dtype)
        tol_, fd_tol_, warns = tolerances(dtype, tol, fd_tol)
        p, notes = _parameters(params, lambda: layer.init(k_init, tuple(inp.shape[1:])), k_move, dtype)
        skey = layer_key if layer_key is not None else jax.random.PRNGKey(0)

        def forward(q, v):
            return expect_pair("forward", forward_with_key(layer, q, v, skey), "y", "cache")

        y, cache = run_user("forward", forward, p, inp)
        expect_like("forward", y, jnp.zeros(()), "its output y")
        dy = jax.random.normal(k_dy, y.shape, dtype)

        def backward(q, c, d):
            return expect_pair("backward", layer.backward(q, c, d), "dparams", "dx")

        hand = run_user("backward", backward, p, cache, dy)
        expect_like("backward", hand[0], p, "dparams")
        expect_like("backward", hand[1], inp, "dx")
        jitted = run_user("backward under jax.jit", jax.jit(lambda q, v, d: backward(q, forward(q, v)[1], d)), p, inp, dy)
        expect_like("backward under jax.jit", jitted[0], p, "dparams")
        auto = run_user("forward under jax.vjp", jax.jit(lambda q, v, d: jax.vjp(lambda q, v: forward(q, v)[0], q, v)[1](d)), p, inp, dy)
        names = _paths(p, "params") + ["dx"]
        hand_leaves, auto_leaves, jitted_leaves = (jax.tree_util.tree_leaves(t[0]) + [t[1]] for t in (hand, auto, jitted))
        scalar = lambda t: jnp.vdot(forward(t["params"], t["x"])[0], as_dtype(dy, jnp.float64))  # noqa: E731
        rows = judge(names, hand_leaves, auto_leaves, jitted_leaves, tol_, fd_tol_, dtype, (scalar, {"params": p, "x": inp}, k_fd, finite_differences),
                      {"dx": (dy, y)} if y.shape == inp.shape else None, projections=PROJECTIONS if fast else 0,
                      variants=variant_gradients(lambda q, v: forward(q, v)[0], (p, inp), dy, _param_and_input_leaves),
                      known=None if slips is None else
                      lambda: [(kind, words, _param_and_input_leaves(g)) for kind, words, g in slips(p, inp, dy)])
        return report_of(subject, rows, tol_, fd_tol_, warns, notes)

    return guarded(subject, dtype, tol, fd_tol, body)


def check_loss(head: Head, key: Array, z: Array | None = None, y: Array | None = None, *, shape: tuple = (4, 3),
               dtype=jnp.float64, tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF,
               finite_differences: Callable = finite_differences_at) -> Report:
    """Check a head's dZ[L] = head.backward(z, y) against jax.grad of head.cost and finite differences."""
    subject = f"{getattr(head.output, 'name', head.output)} + {getattr(head.loss, 'name', head.loss)}"

    def body() -> Report:
        kz, ky, kf = jax.random.split(key, 3)
        zz = as_dtype(jax.random.normal(kz, shape, dtype) if z is None else z, dtype)
        yy = as_dtype(sample_targets(ky, head.loss.name, zz.shape[0], zz.shape[1], dtype) if y is None else y, dtype)
        tol_, fd_tol_, warns = tolerances(dtype, tol, fd_tol)
        hand = run_user("head.backward", head.backward, zz, yy)
        jitted = run_user("head.backward under jax.jit", jax.jit(head.backward), zz, yy)
        auto = run_user("head.cost under jax.grad", jax.grad(head.cost), zz, yy)
        y64 = as_dtype(yy, jnp.float64)
        local = run_user("head.grad_output and head.predict", lambda: (head.grad_output(zz, yy), head.predict(zz)))
        rows = judge(["dZ[L]"], [hand], [auto], [jitted], tol_, fd_tol_, dtype,
                      (lambda t: head.cost(t[0], y64), [zz], kf, finite_differences), {"dZ[L]": local})
        return report_of(subject, rows, tol_, fd_tol_, warns)

    return guarded(subject, dtype, tol, fd_tol, body)


def check_network(net: Network, key: Array, x: Array | None = None, y: Array | None = None, *, batch: int = 4,
                  params: Any = None, dtype=jnp.float64, tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF,
                  finite_differences: Callable = finite_differences_at, step_key: Array | None = None, fast: bool = False) -> Report:
    """Every parameter leaf, every layer's upstream gradient, and dx of a whole network, per tensor.

    `fast=True`: finite differences along random directions (`fnbackprop.check.projections`), for big models."""
    subject = f"network of {len(net.layers)} layers"

    def body() -> Report:
        k_init, k_x, k_y, k_fd, k_move = jax.random.split(key, 5)
        xx = as_dtype(jax.random.normal(k_x, (batch, *net.in_shape), dtype) if x is None else x, dtype)
        yy = sample_targets(k_y, net.head.loss.name, xx.shape[0], net.n_out, dtype) if y is None else y
        tol_, fd_tol_, warns = tolerances(dtype, tol, fd_tol)
        p, notes = _parameters(params, lambda: net.init(k_init), k_move, dtype)
        skey = step_key if step_key is not None else jax.random.PRNGKey(0)
        trace = run_user("forward and backward (net.trace)", net.trace, p, xx, yy, skey)
        jitted = run_user("forward and backward under jax.jit", jax.jit(lambda q: net.trace(q, xx, yy, skey)), p)
        for stage, t in (("backward", trace), ("backward under jax.jit", jitted)):
            expect_like(stage, t.grads, p, "the parameter gradients")
        grads_auto, dx_auto = run_user("forward under jax.grad", jax.jit(jax.grad(net.loss, argnums=(0, 1))), p, xx, yy, skey)
        probes = tuple(jnp.zeros_like(o) for o in trace.outputs)
        probe_grads = run_user("forward under jax.grad", jax.jit(jax.grad(net.probed_cost, argnums=3)), p, xx, yy, probes,
                               jnp.zeros_like(trace.prediction), skey)
        names = _paths(p, "params") + ["dx"]
        y64 = as_dtype(yy, jnp.float64)
        scalar = lambda t: net.loss(t["params"], t["x"], y64, skey)  # noqa: E731
        rows = judge(names, jax.tree_util.tree_leaves(trace.grads) + [trace.dx], jax.tree_util.tree_leaves(grads_auto) + [dx_auto],
                      jax.tree_util.tree_leaves(jitted.grads) + [jitted.dx], tol_, fd_tol_, dtype,
                      (scalar, {"params": p, "x": xx}, k_fd, finite_differences), projections=PROJECTIONS if fast else 0,
                      variants=variant_gradients(lambda q, v: net.loss(q, v, yy, skey), (p, xx), jnp.ones((), dtype),
                                                 _param_and_input_leaves))
        layer_names = [f"upstream of layer {i} ({getattr(layer, 'name', type(layer).__name__)})" for i, layer in enumerate(net.layers)]
        # finite differences in each layer's output too, so that a kink there (a max-pool window tied at 0 after
        # a ReLU, where hand and autodiff may split dy differently) can excuse the entries where they differ
        probe_scalar = lambda t: net.probed_cost(p, xx, y64, tuple(t), jnp.zeros_like(trace.prediction), skey)  # noqa: E731
        rows += judge(layer_names, list(trace.cotangents), list(probe_grads), list(jitted.cotangents), tol_, fd_tol_, dtype,
                      (probe_scalar, list(probes), jax.random.fold_in(k_fd, 1), finite_differences), most=INTERMEDIATE_FD_ENTRIES)
        return report_of(subject, rows, tol_, fd_tol_, warns, notes)

    return guarded(subject, dtype, tol, fd_tol, body)
