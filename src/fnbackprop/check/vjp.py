"""Check any custom gradient: a `jax.custom_vjp` (or `custom_jvp`) rule, or a plain function with your rule.

    report = fb.check_vjp(my_custom_vjp_fn, x, w)             # the rule vs autodiff of f.fun vs float64 FD
    report = fb.check_vjp(primal, x, w, vjp=my_rule)           # a rule not yet wrapped: my_rule(x, w, ct) -> (dx, dw)
    report.passed, report.failing(), report.to_dict()          # the same Report and rows as check_layer

One row per input leaf, named by its position and pytree path (`args[1]['W']`), with the verdicts of
`fnbackprop.check.verdicts`. The custom rule runs through `jax.vjp` of the decorated function (eagerly and
under `jax.jit`), with a random output cotangent; the references are `jax.vjp` of the undecorated
primal (`f.fun`, the rule bypassed) and float64 central finite differences of <f(args), ct>.
Integer and boolean inputs have no gradient (JAX gives them float0 cotangents): they get an `ok` row
saying so, and are never perturbed. Arguments in the function's `nondiff_argnums` are passed as they
are and named in the report's notes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .numerics import TOL_FINITE_DIFF
from .projections import FAST_NOTE, PROJECTIONS
from .verdicts import Report, TensorRow, finite_differences_at
from .numerics import leaf_rel_err
from .rules import custom_rules, without_rules
from .verify import UserCodeFailed, as_dtype, expect_like, guarded, judge, report_of, run_user, tolerances, variant_gradients

Array = jax.Array


def _undecorated(f: Callable, vjp: Callable | None) -> tuple[Callable, Callable, tuple[int, ...]]:
    """(the function whose rule is checked, the primal autodiff differentiates, nondiff_argnums)."""
    if vjp is not None:
        ruled = jax.custom_vjp(f)
        ruled.defvjp(lambda *a: (f(*a), a), lambda a, ct: tuple(vjp(*a, ct)))
        return ruled, f, ()
    if isinstance(f, (jax.custom_vjp, jax.custom_jvp)):
        return f, f.fun, tuple(f.nondiff_argnums)
    return f, without_rules(f), ()  # a function with custom rules inside (a model): autodiff with every rule bypassed


def _pairing(leaves: list, others: list) -> Array:
    """sum_i <leaves_i, others_i> over the floating leaves (0 when there is none)."""
    total = jnp.zeros(())
    for leaf, other in zip(leaves, others):
        if _is_float(leaf):
            total = total + jnp.vdot(leaf, other)
    return total


def _as_float64(ct: Any) -> list:
    """The cotangent's leaves, floating ones in float64 (an integer output's float0 cotangent as it is)."""
    return [jnp.asarray(c, jnp.float64) if _is_float(c) else c for c in jax.tree_util.tree_leaves(ct)]


def _is_float(leaf: Any) -> bool:
    return jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)


#: below float64 (with no tol given), a rule may be off the float64 reference by this factor times
#: autodiff's own error at the same precision (the rule FlashAttention's tests use)
PRECISION_FACTOR = 2.0
#: ... where autodiff's own error counts as at least this many units of the precision's epsilon (a rule
#: computed by another, equally valid formula may round differently by a few eps)
EPS_UNITS = 4
#: examples stacked for the vmap and scan rows
TRANSFORM_BATCH = 3
TRANSFORMS = ("jax.vmap", "lax.scan", "jax.checkpoint")


def check_vjp(f: Callable, *args: Any, vjp: Callable | None = None, key: Array | None = None, dtype=jnp.float64,
              tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF, transforms: tuple = TRANSFORMS,
              second_order: bool = False, by_design: bool = False, fast: bool = False,
              finite_differences: Callable = finite_differences_at) -> Report:
    """Check the custom VJP rule of `f` at `args` (any pytrees), input leaf by input leaf.

    Floating inputs are cast to `dtype`. `vjp(*args, ct)`, when given, is the rule of the plain
    function `f`: it returns one cotangent per argument. In float64 the rule must equal autodiff to
    1e-10; below float64, with no `tol` given, each tensor's error against float64 autodiff may be at
    most PRECISION_FACTOR times autodiff's own error at that precision (so a correct rule passes in
    bfloat16 with no tolerance chosen), and the Taylor rate is measured on the rule run in float64.

    Then, per transform in `transforms`, one row per input leaf named "args[i]... under T", the rule
    against autodiff of the primal under the same transform: `jax.vmap` over TRANSFORM_BATCH examples
    (each float input moved by 0.1 N(0, 1), each with its own cotangent), `lax.scan` over the same
    examples one step each, `jax.checkpoint` around f. With `second_order=True`, also the gradient of
    <rule(args, ct), w> for a random w (the rule differentiated), against the same for the primal.

    `fast=True` (for models: a million parameters in seconds) takes the finite differences along
    PROJECTIONS random directions of all inputs at once instead of entry by entry, and entry-wise only
    inside the leaves that fail (`fnbackprop.check.projections`); hand vs autodiff is still every entry.

    `by_design=True` declares that the rule differs from the gradient on purpose (a straight-through
    estimator, a clipped backward): its `backward wrong` rows become `by design`, passing, with the
    size of the difference in the detail.
    """
    ruled, primal, nondiff = _undecorated(f, vjp)
    must_call_rules = vjp is None and not isinstance(f, (jax.custom_vjp, jax.custom_jvp))
    subject = getattr(primal, "__name__", type(primal).__name__)
    key = jax.random.PRNGKey(0) if key is None else key

    relative_to_autodiff = tol is None and jnp.dtype(dtype) != jnp.float64
    projections = PROJECTIONS if fast else 0

    def body() -> Report:
        tol_, fd_tol_, warns = tolerances(dtype, tol, fd_tol)
        cast = [a if i in nondiff else as_dtype(a, dtype) for i, a in enumerate(args)]
        diff = [i for i in range(len(cast)) if i not in nondiff]
        if must_call_rules and not run_user("the function", custom_rules, f, *cast):
            raise TypeError(f"check_vjp needs a jax.custom_vjp or jax.custom_jvp function, a function that calls one, or "
                            f"vjp=your_rule; {subject} calls no custom rule at these arguments")

        def call(fn: Callable, diff_args: list) -> Any:
            full = list(cast)
            for i, a in zip(diff, diff_args):
                full[i] = a
            return fn(*full)

        out = run_user("the function", call, ruled, [cast[i] for i in diff])
        ct = jax.tree_util.tree_map(lambda o: jax.random.normal(key, jnp.shape(o), dtype) if _is_float(o) else np.zeros(jnp.shape(o), jax.dtypes.float0), out)

        def pullback(fn: Callable) -> Callable:
            return lambda diff_args, c: jax.vjp(lambda *d: call(fn, list(d)), *diff_args)[1](c)

        refused = ""
        try:
            hand = run_user("the custom rule (jax.vjp of f)", pullback(ruled), [cast[i] for i in diff], ct)
        except UserCodeFailed as failure:  # JAX refuses cotangents of the wrong shape: compare the rule's own output
            raw = _raw_rule(f, vjp, cast, nondiff, ct)
            if raw is None:
                raise
            hand, refused = raw, failure.detail
        expect_like("the custom rule", list(hand), [cast[i] for i in diff], "the rule's cotangents")
        jitted = [None] * len(diff) if refused else run_user("the custom rule under jax.jit", jax.jit(pullback(ruled)),
                                                             [cast[i] for i in diff], ct)
        reference = pullback(primal)
        refused_reverse = ""
        try:
            auto = run_user("autodiff of the undecorated function", jax.jit(reference), [cast[i] for i in diff], ct)
        except UserCodeFailed as failure:  # a while_loop solver: reverse mode refused, forward mode is the reference
            if "Reverse-mode differentiation does not work" not in failure.detail:
                raise
            reference, refused_reverse = forward_pullback(lambda d: call(primal, list(d))), failure.detail
            entries = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves([cast[i] for i in diff]) if _is_float(v))
            if entries > FORWARD_MODE_ENTRIES:  # too many passes for jax.jacfwd: the dot-product test per input leaf
                rows = _dot_product_rows(lambda d: call(primal, list(d)), [cast[i] for i in diff], list(hand), ct, key,
                                         fd_tol_, [f"args[{i}]" for i in diff])
                return report_of(subject, rows, fd_tol_, fd_tol_, warns, (
                    f"reference: forward mode, the dot-product test <ct, J v> = <J^T ct, v> along {DOT_PRODUCT_DIRECTIONS} "
                    f"random directions per input leaf (reverse mode refused: {failure.detail}; {entries} input entries are "
                    f"more than the {FORWARD_MODE_ENTRIES} jax.jacfwd takes entry by entry); no transform rows",))
            auto = run_user("forward-mode autodiff of the undecorated function (jax.jacfwd)", jax.jit(reference),
                            [cast[i] for i in diff], ct)
            tol_ = max(tol_, fd_tol_)  # the reference differentiates the solver's iterations: as converged as the solver
        order: list[str] = []
        names: list[str] = []
        hand_l: list = []
        auto_l: list = []
        jit_l: list = []
        point: list = []
        integer_rows: dict[str, TensorRow] = {}
        for i, h, a, j in zip(diff, hand, auto, jitted):
            a_leaves = jax.tree_util.tree_leaves(a)
            j_leaves = [None] * len(a_leaves) if j is None else jax.tree_util.tree_leaves(j)
            for (path, value), hv, av, jv in zip(jax.tree_util.tree_flatten_with_path(cast[i])[0], jax.tree_util.tree_leaves(h),
                                                 a_leaves, j_leaves):
                name = f"args[{i}]{jax.tree_util.keystr(path)}"
                order.append(name)
                if not _is_float(value):
                    integer_rows[name] = TensorRow(name, tuple(jnp.shape(value)), True, 0.0, 0.0, (), float("nan"), float("nan"), 0,
                                                   "ok", float("nan"), f"{jnp.asarray(value).dtype} input: not differentiable "
                                                                       "(float0 cotangent)")
                    continue
                names.append(name)
                hand_l.append(hv)
                auto_l.append(av)
                jit_l.append(jv)
                point.append(value)
        diff_args = [cast[i] for i in diff]
        _, with_floats = _floats_of(diff_args)
        output_at = lambda floats: call(primal, with_floats(floats))  # noqa: E731  (primal(args), its float leaves replaced)
        scalar = _scalar_of(output_at, _as_float64(ct))  # <primal(args), ct> as a function of those leaves
        fd = (scalar, point, key, finite_differences)
        outputs = [o for o in jax.tree_util.tree_leaves(out) if _is_float(o)]  # an elementwise map: dx = ct g'(x)
        local = {n: (jax.tree_util.tree_leaves(ct)[0], outputs[0]) for n, v in zip(names, point)
                 if len(jax.tree_util.tree_leaves(out)) == 1 and outputs and jnp.shape(outputs[0]) == jnp.shape(v)}
        variants = variant_gradients(lambda *d: call(primal, list(d)), tuple(diff_args), ct,
                                     lambda g: _float_leaves(g, order, integer_rows))
        transposed = lambda: _jacobian_for_transpose(output_at, point, out, ct)  # noqa: E731
        if relative_to_autodiff:  # below float64: the rule's error may be PRECISION_FACTOR x autodiff's own
            def in_float64(stage: str, fn: Callable) -> list:
                return _float_leaves(run_user(stage, jax.jit(pullback(fn)), as_dtype(diff_args, jnp.float64),
                                              as_dtype(ct, jnp.float64)), order, integer_rows)

            with jax.enable_x64(True):  # (the rule in float64 feeds the Taylor test only; a refused rule has no rate)
                ref = in_float64("autodiff in float64", primal)
                rule64 = hand_l if refused else in_float64("the custom rule in float64", ruled)
            floor = EPS_UNITS * float(jnp.finfo(dtype).eps)
            tols = [PRECISION_FACTOR * max(leaf_rel_err(a, r), floor) for a, r in zip(auto_l, ref)]
            judged_rows = judge(names, hand_l, ref, jit_l, tol_, fd_tol, dtype, fd, local, tols=tols,
                                 expected_dtypes=[jnp.asarray(v).dtype for v in point], projections=projections,
                                 variants=variants, known=transposed)
            tol_ = max(tols, default=tol_)
        else:
            rule64 = hand_l
            judged_rows = judge(names, hand_l, auto_l, jit_l, tol_, fd_tol_, dtype, fd, local, projections=projections,
                                variants=variants, known=transposed)
        judged = dict(zip(names, judged_rows))
        rows = [judged.get(name) or integer_rows[name] for name in order]  # in the order of the arguments
        move_notes: tuple[str, ...] = ()
        for transform in () if refused else transforms + (("second order",) if second_order else ()):
            t_tol = (PRECISION_FACTOR + 1) * tol_ / PRECISION_FACTOR if relative_to_autodiff else tol_
            t_names = [f"{n} under {transform}" for n in names]

            def judged_under(scale: float, with_fd: bool) -> tuple[list, tuple | None]:
                hand_t, auto_t, at = _under(transform, pullback(ruled), reference, diff_args, ct, key, dtype,
                                            lambda d: call(primal, list(d)), scale)
                hand_t, auto_t = (_float_leaves(t, order, integer_rows) for t in (hand_t, auto_t))
                fd_t = (_scalar_of(lambda floats: at[0](_floats_of(at[1])[1](floats)), _as_float64(at[2])),
                        _float_leaves(at[1], order, integer_rows), key, finite_differences) \
                    if with_fd and at is not None else None
                return judge(t_names, hand_t, auto_t, [None] * len(names), t_tol, fd_tol_, dtype, fd=fd_t,
                             local=local if fd_t is not None else None), at

            t_rows, at = judged_under(MOVE_SCALES[0], with_fd=False)
            if not all(r.ok for r in t_rows):  # at a point the function accepts, and judged as the eager row
                scale = (_scale_in_domain(diff_args, key, lambda d: call(primal, list(d)))
                         if transform in ("jax.vmap", "lax.scan") else MOVE_SCALES[0])
                if scale != MOVE_SCALES[0]:
                    moved = f"move the inputs by {scale:g} N(0, 1) only" if scale else "use unmoved copies of the inputs"
                    move_notes += (f"the batched rows (jax.vmap, lax.scan) {moved}: a move of {MOVE_SCALES[0]:g} N(0, 1) "
                                   "leaves the function's domain (its value is not finite there)",)
                eager_ok = {r.name: r.ok for r in rows}
                only_here = any(not t.ok and eager_ok.get(n, False) for t, n in zip(t_rows, names))
                if scale != MOVE_SCALES[0] or only_here:  # (a failure of the eager row too needs no finite differences)
                    t_rows, _ = judged_under(scale, with_fd=only_here and at is not None)
            rows += t_rows
        with jax.enable_x64(True):
            rate = taylor_rate(scalar, [jnp.asarray(v, jnp.float64) for v in point], [jnp.asarray(h, jnp.float64) for h in rule64], key)
        at_kink = any(r.verdict in ("kink", "convention") for r in rows)
        notes: tuple[str, ...] = (f"Taylor remainder |f(x + h v) - f(x) - h <g, v>| of the rule's g falls like h^{rate:.2f} for h from "
                 f"{TAYLOR_STEPS[0]:g} to {TAYLOR_STEPS[-1]:g} (h^2: consistent with a correct gradient; h^1: wrong"
                 + (", or the point is a kink, as here" if at_kink else "") + ")"
                                  if rate == rate else "Taylor remainder not measured: the rule's cotangents do not have the inputs' shapes",)
        if refused_reverse:
            rows = [r._replace(detail=r.detail + SOLVER_CAVEAT) if r.verdict == "references disagree" else r for r in rows]
            notes += (f"reference: forward mode, jax.jacfwd of <f, ct> through the primal (reverse mode refused: "
                      f"{refused_reverse}); the rule is held to the finite differences' tolerance {fd_tol_:g} against it",)
        else:
            notes += ("reference: reverse-mode autodiff of the primal (jax.vjp), and float64 finite differences",)
        notes += tuple(dict.fromkeys(move_notes))
        notes += (f"nondiff_argnums {nondiff} passed as given",) if nondiff else ()
        notes += (FAST_NOTE,) if fast else ()
        notes += (f"JAX refused the rule ({refused}): its own cotangents are compared, no transform is checked",) if refused else ()
        if by_design:
            rows = [_declared(r) if r.verdict == "backward wrong" else r for r in rows]
            notes += ("declared different from the gradient by design (by_design=True): those rows pass as `by design`",)
        return report_of(subject, rows, tol_, fd_tol_, warns, notes)

    return guarded(subject, dtype, tol, fd_tol, body)


#: forward mode stands in for reverse mode (a primal with a while_loop) up to this many input entries: jax.jacfwd
#: takes one forward pass per entry
FORWARD_MODE_ENTRIES = 4096
SOLVER_CAVEAT = ("; the primal's forward-mode derivative differentiates its loop's iterations: a tolerance-stopped "
                 "solver's derivative is only as converged as the solver (tighten its tolerance, or check at a better "
                 "conditioned point)")


def forward_pullback(fn: Callable[[list], Any]) -> Callable[[list, Any], list]:
    """(args, ct) -> J^T ct of `fn` at args by forward mode: the gradient of the scalar <fn(args), ct> by
    jax.jacfwd, one forward pass per input entry. For a primal that reverse mode refuses (a lax.while_loop:
    a fixed point, a root, an iterative solve, an ODE integrated to a tolerance), where forward mode works.
    Integer leaves get float0 cotangents, as jax.vjp gives them."""
    def pullback(args: list, ct: Any) -> list:
        floats, with_floats = _floats_of(args)
        grads = jax.jacfwd(_scalar_of(lambda values: fn(with_floats(values)), jax.tree_util.tree_leaves(ct)))(floats)
        return _floats_of(_float0_zeros(args))[1](grads)  # integer leaves keep their float0 zeros

    return pullback


#: random directions per input leaf of the dot-product test (forward mode, inputs too large for jax.jacfwd)
DOT_PRODUCT_DIRECTIONS = 6


def _dot_product_rows(fn: Callable[[list], Any], args: list, hand: list, ct: Any, key: Array, tol: float,
                      prefixes: list[str]) -> list[TensorRow]:
    """One row per input leaf: the rule's cotangent g against forward mode by the dot-product test, <g, v> =
    <ct, J v> for DOT_PRODUCT_DIRECTIONS random directions v supported on the leaf (J v by jax.jvp through
    the primal, loops included). The row's error is the largest |<g, v> - <ct, J v>| relative to the
    larger of the two; it passes within `tol` (the finite differences' tolerance: forward mode through a
    solver is as converged as the solver)."""
    rows = []
    flat = [jax.tree_util.tree_flatten_with_path(a)[0] for a in args]
    hand_leaves = [jax.tree_util.tree_leaves(h) for h in hand]
    ct_leaves = _as_float64(ct)
    for a, (leaves, g_leaves) in enumerate(zip(flat, hand_leaves)):
        for j, ((path, value), g) in enumerate(zip(leaves, g_leaves)):
            name = f"{prefixes[a]}{jax.tree_util.keystr(path)}"
            if not _is_float(value):
                rows.append(TensorRow(name, tuple(jnp.shape(value)), True, 0.0, 0.0, (), float("nan"), float("nan"), 0, "ok",
                                      float("nan"), f"{jnp.asarray(value).dtype} input: not differentiable (float0 cotangent)"))
                continue
            if jnp.shape(g) != jnp.shape(value):
                rows.append(TensorRow(name, tuple(jnp.shape(value)), False, float("inf"), float("inf"), (), float("nan"),
                                      float("nan"), 0, "shape/dtype mismatch", float("nan"),
                                      f"the rule's cotangent is {list(jnp.shape(g))}, expected {list(jnp.shape(value))}"))
                continue
            worst, detail = 0.0, ""
            for k in jax.random.split(jax.random.fold_in(key, 97 * a + j), DOT_PRODUCT_DIRECTIONS):
                v = jax.random.normal(k, jnp.shape(value), jnp.asarray(value).dtype)
                tangents = _float0_zeros(args)
                leaf_tangents, treedef = jax.tree_util.tree_flatten(tangents[a])
                leaf_tangents[j] = v
                tangents[a] = jax.tree_util.tree_unflatten(treedef, leaf_tangents)
                out_tangent = jax.jvp(fn, (args,), (tangents,))[1]
                forward = float(_pairing(jax.tree_util.tree_leaves(out_tangent), ct_leaves))
                rule = float(jnp.vdot(jnp.asarray(g, jnp.float64), jnp.asarray(v, jnp.float64)))
                err = abs(rule - forward) / max(abs(rule), abs(forward), 1e-300)
                if err > worst:
                    worst, detail = err, f"along a random direction v: <rule, v> = {rule:.6g}, <ct, J v> = {forward:.6g}"
            verdict = "ok" if worst <= tol else "backward wrong"
            rows.append(TensorRow(name, tuple(jnp.shape(value)), True, float("nan"), worst, (), float("nan"), float("nan"), 0,
                                  verdict, float("nan"), detail if verdict != "ok" else f"dot-product test, worst {worst:.1e}"))
    return rows


def _jacobian_for_transpose(output_at: Callable[[list], Any], point: list, out: Any, ct: Any) -> list:
    """For the diagnosis: [("transpose", words, leaves)] where leaf k is J_k ct, the primal's JVP along the
    cotangent in input k's place, for each input of the output's shape: what a rule computes when it applies
    J where J^T belongs (any linear map, not only a matrix product). NaN leaves where the shapes differ."""
    outputs = [o for o in jax.tree_util.tree_leaves(out) if _is_float(o)]
    cts = [c for c in jax.tree_util.tree_leaves(ct) if _is_float(c)]
    if len(outputs) != 1 or len(cts) != 1:
        return []
    leaves = []
    for k, value in enumerate(point):
        if jnp.shape(value) != jnp.shape(outputs[0]):
            leaves.append(np.full(jnp.shape(value), np.nan))
            continue

        def along(v: Array, k: int = k) -> Any:
            return [o for o in jax.tree_util.tree_leaves(output_at([*point[:k], v, *point[k + 1:]])) if _is_float(o)][0]

        leaves.append(jax.jvp(along, (value,), (jnp.asarray(cts[0], jnp.asarray(value).dtype),))[1])
    return [("transpose", "the rule applies the Jacobian J where its transpose J^T belongs: it equals the primal's JVP "
                          "along the cotangent, J ct", leaves)]


def _raw_rule(f: Callable, vjp: Callable | None, args: list, nondiff: tuple, ct: Any) -> list | None:
    """The cotangents the rule itself returns, called directly (fwd, then bwd), one per differentiated
    argument (None, for an argument, becomes float0 zeros); None when the rule cannot be called so."""
    diff_args = [a for i, a in enumerate(args) if i not in nondiff]
    try:
        if vjp is not None:
            cts = tuple(vjp(*args, ct))
        elif isinstance(f, jax.custom_vjp):
            fwd, bwd = f.fwd, f.bwd
            assert fwd is not None and bwd is not None, "a custom_vjp without defvjp"
            _, residuals = fwd(*args)
            cts = tuple(bwd(*[args[i] for i in nondiff], residuals, ct))
        else:
            return None
    except Exception:  # noqa: BLE001 (the rule fails when called directly too: the original failure is the finding)
        return None
    if len(cts) != len(diff_args):
        return None
    return [jax.tree_util.tree_map(lambda a: np.zeros(jnp.shape(a), jax.dtypes.float0), a) if c is None else c
            for c, a in zip(cts, diff_args)]


def _stack(key: Array, tree: Any, scale: float) -> Any:
    """TRANSFORM_BATCH copies of `tree` along a new axis 0, float leaves moved by scale N(0, 1) (0: unmoved)."""
    def stack(leaf: Any, k: Array) -> Any:
        copies = jnp.stack([jnp.asarray(leaf)] * TRANSFORM_BATCH)
        if scale and _is_float(leaf):
            copies = copies + scale * jax.random.normal(k, copies.shape, copies.dtype)
        return copies

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return jax.tree_util.tree_unflatten(treedef, [stack(leaf, k) for leaf, k in zip(leaves, jax.random.split(key, max(1, len(leaves))))])


#: the batched rows move each input by scale N(0, 1), the first scale at which the primal stays finite
#: (a function defined on a domain, probabilities in (0, 1) say); 0 keeps unmoved copies
MOVE_SCALES = (0.1, 0.01, 0.001, 0.0)


def _transform_keys(key: Array) -> Array:
    """The keys of the transform rows: the batched rows' moves (the same in `_under` and `_scale_in_domain`), their
    cotangents, the second order's weights."""
    return jax.random.split(jax.random.fold_in(key, 17), 3)


def _scale_in_domain(args: list, key: Array, primal: Callable[[list], Any]) -> float:
    """The first of MOVE_SCALES at which the primal is finite at every moved copy of `args` (the batch
    `_under` draws): a row must not fail at a point the user did not give and the function does not accept."""
    for scale in MOVE_SCALES:
        try:
            out = jax.vmap(primal)(_stack(_transform_keys(key)[0], args, scale))
        except Exception:  # noqa: BLE001 (the primal refuses the batch: keep the first move, its row says why)
            return MOVE_SCALES[0]
        if all(bool(jnp.all(jnp.isfinite(o))) for o in jax.tree_util.tree_leaves(out) if _is_float(o)):
            return scale
    return MOVE_SCALES[-1]


def _floats_of(tree: Any) -> tuple[list, Callable[[list], Any]]:
    """(the floating leaves of `tree`, values -> `tree` with those leaves replaced by `values`, in order)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    floats = [i for i, leaf in enumerate(leaves) if _is_float(leaf)]

    def with_floats(values: list) -> Any:
        full = list(leaves)
        for i, value in zip(floats, values):
            full[i] = value
        return jax.tree_util.tree_unflatten(treedef, full)

    return [leaves[i] for i in floats], with_floats


def _float0_zeros(tree: Any) -> Any:
    """`tree` with every leaf zero: floats as they are typed, integers as float0 (their cotangent or tangent)."""
    return jax.tree_util.tree_map(lambda a: jnp.zeros_like(a) if _is_float(a) else np.zeros(jnp.shape(a), jax.dtypes.float0),
                                  tree)


def _scalar_of(output_at: Callable[[list], Any], ct_leaves: list) -> Callable[[list], Array]:
    """values -> <output_at(values), ct>: the scalar whose gradient a cotangent ct pulls back, as a function of
    the inputs' floating leaves (the finite differences, the Taylor test and forward mode all differentiate it)."""
    return lambda values: _pairing(jax.tree_util.tree_leaves(output_at(values)), ct_leaves)


def _under(transform: str, rule: Callable, reference: Callable, args: list, ct: Any, key: Array, dtype,
           primal: Callable[[list], Any], scale: float = 0.1) -> tuple[Any, Any, tuple | None]:
    """(the rule's cotangents, the reference's, the point to take finite differences at) under `transform`;
    the batched transforms move each input by scale N(0, 1). The point is (fn, args, ct): the scalar
    <fn(args), ct> whose gradient both cotangents are (None for the second order). User failures become
    UserCodeFailed."""
    k_args, k_ct, k_w = _transform_keys(key)
    if transform in ("jax.vmap", "lax.scan"):
        batch_args = _stack(k_args, args, scale)
        batch_ct = jax.tree_util.tree_map(lambda c: jax.random.normal(k_ct, (TRANSFORM_BATCH, *jnp.shape(c)), dtype)
                                          if _is_float(c) else np.zeros((TRANSFORM_BATCH, *jnp.shape(c)), c.dtype), ct)
        if transform == "jax.vmap":
            run = lambda fn: jax.vmap(fn)(batch_args, batch_ct)  # noqa: E731
        else:
            run = lambda fn: jax.lax.scan(lambda carry, ab: (carry, fn(*ab)), None, (batch_args, batch_ct))[1]  # noqa: E731
        return (run_user(f"the custom rule under {transform}", run, rule), run_user(f"autodiff under {transform}", run, reference),
                (jax.vmap(primal), batch_args, batch_ct))
    if transform == "jax.checkpoint":
        return (run_user("the custom rule under jax.checkpoint", jax.checkpoint(rule), args, ct),
                run_user("autodiff under jax.checkpoint", jax.checkpoint(reference), args, ct), (primal, args, ct))
    if transform == "second order":
        weights = jax.tree_util.tree_map(lambda a: jax.random.normal(k_w, jnp.shape(a), dtype) if _is_float(a) else None, args)

        def grad_of(fn: Callable) -> Callable:
            def pairing(a: list) -> Array:
                cts = fn(a, ct)
                return _pairing(jax.tree_util.tree_leaves(cts), jax.tree_util.tree_leaves(weights))
            return lambda: jax.grad(pairing, allow_int=True)(args)

        return run_user("jax.grad of the custom rule", grad_of(rule)), run_user("jax.grad of autodiff", grad_of(reference)), None
    raise ValueError(f"unknown transform {transform!r}; expected some of {TRANSFORMS}")


#: the steps of the Taylor test, largest first
TAYLOR_STEPS = tuple(float(h) for h in np.geomspace(1e-1, 1e-5, 9))
#: the exponent is fitted on the smallest usable steps, where the leading term of the remainder rules
TAYLOR_FIT_POINTS = 4


def taylor_rate(scalar: Callable[[list], Array], point: list, grad: list, key: Array) -> float:
    """The exponent p of the Taylor remainder r(h) = |f(x + h v) - f(x) - h <g, v>| ~ h^p, in float64,
    for a random direction v: p = 2 when g is the gradient of f, 1 when it is not. No step size to
    choose: r is measured over four decades of h (TAYLOR_STEPS), steps where it sinks into the
    rounding of f are dropped, and p is the log-log slope over the smallest TAYLOR_FIT_POINTS left,
    where the leading term rules (an error of 1% in g shows as h^1 there, hidden by h^2 at h = 0.1)."""
    if not point or any(jnp.shape(g) != jnp.shape(x) for g, x in zip(grad, point)):
        return float("nan")  # nothing to measure, or a gradient of the wrong shape (its own row says so)
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.fold_in(key, 23), len(point))
        direction = [jax.random.normal(k, jnp.shape(x), jnp.float64) for k, x in zip(keys, point)]
        slope = sum(float(jnp.vdot(g, v)) for g, v in zip(grad, direction))
        f0 = float(scalar(point))
        remainders = np.array([abs(float(scalar([x + h * v for x, v in zip(point, direction)])) - f0 - h * slope)
                               for h in TAYLOR_STEPS])
    usable = remainders > 1e4 * np.finfo(np.float64).eps * max(1.0, abs(f0))
    if usable.sum() < 2:
        return 2.0  # the remainder is below rounding at every step: f is linear along v, and g agrees
    steps = np.asarray(TAYLOR_STEPS)[usable][-TAYLOR_FIT_POINTS:]
    return float(np.polyfit(np.log(steps), np.log(remainders[usable][-TAYLOR_FIT_POINTS:]), 1)[0])


def _float_leaves(tree: Any, order: list, integer_rows: dict) -> list:
    """The leaves of a cotangent tree that belong to floating inputs, in argument order."""
    return [leaf for name, leaf in zip(order, jax.tree_util.tree_leaves(tree)) if name not in integer_rows]


def _declared(row: TensorRow) -> TensorRow:
    """A `backward wrong` row of a rule declared different by design: passing, with the size of the difference."""
    ratio = "" if row.ratio != row.ratio else f", best fit rule ~ {row.ratio:.3g} x gradient"
    return row._replace(verdict="by design", detail=f"differs from the gradient by design: relative difference "
                                                    f"{row.rel_err:.3g}{ratio}", diagnosis="")
