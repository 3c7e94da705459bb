"""Check any custom gradient: a `jax.custom_vjp` (or `custom_jvp`) rule, or a plain function with your rule.

    report = fb.check_vjp(my_custom_vjp_fn, x, w)             # the rule vs autodiff of f.fun vs float64 FD
    report = fb.check_vjp(primal, x, w, vjp=my_rule)           # a rule not yet wrapped: my_rule(x, w, ct) -> (dx, dw)
    report.passed, report.failing(), report.to_dict()          # the same Report and rows as check_layer

One row per input leaf, named by its position and pytree path (`args[1]['W']`), with the verdicts of
`fnbackprop.verdicts`. The custom rule runs through `jax.vjp` of the decorated function (eagerly and
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
from .verdicts import Report, TensorRow, finite_differences_at
from .verify import _as, _guarded, _judge, _report, _tolerances, expect_like, run_user

Array = jax.Array


def _undecorated(f: Callable, vjp: Callable | None) -> tuple[Callable, Callable, tuple[int, ...]]:
    """(the function whose rule is checked, the primal autodiff differentiates, nondiff_argnums)."""
    if vjp is not None:
        ruled = jax.custom_vjp(f)
        ruled.defvjp(lambda *a: (f(*a), a), lambda a, ct: tuple(vjp(*a, ct)))
        return ruled, f, ()
    if isinstance(f, (jax.custom_vjp, jax.custom_jvp)):
        return f, f.fun, tuple(f.nondiff_argnums)
    raise TypeError(f"check_vjp needs a jax.custom_vjp or jax.custom_jvp function, or vjp=your_rule; got {type(f).__name__}")


def _is_float(leaf: Any) -> bool:
    return jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)


def check_vjp(f: Callable, *args: Any, vjp: Callable | None = None, key: Array | None = None, dtype=jnp.float64,
              tol: float | None = None, fd_tol: float = TOL_FINITE_DIFF,
              finite_differences: Callable = finite_differences_at) -> Report:
    """Check the custom VJP rule of `f` at `args` (any pytrees), input leaf by input leaf.

    Floating inputs are cast to `dtype`. `vjp(*args, ct)`, when given, is the rule of the plain
    function `f`: it returns one cotangent per argument.
    """
    ruled, primal, nondiff = _undecorated(f, vjp)
    subject = getattr(primal, "__name__", type(primal).__name__)
    key = jax.random.PRNGKey(0) if key is None else key

    def body() -> Report:
        tol_, fd_tol_, warns = _tolerances(dtype, tol, fd_tol)
        cast = [a if i in nondiff else _as(a, dtype) for i, a in enumerate(args)]
        diff = [i for i in range(len(cast)) if i not in nondiff]

        def call(fn: Callable, diff_args: list) -> Any:
            full = list(cast)
            for i, a in zip(diff, diff_args):
                full[i] = a
            return fn(*full)

        out = run_user("the function", call, ruled, [cast[i] for i in diff])
        ct = jax.tree_util.tree_map(lambda o: jax.random.normal(key, jnp.shape(o), dtype) if _is_float(o) else np.zeros(jnp.shape(o), jax.dtypes.float0), out)

        def pullback(fn: Callable) -> Callable:
            return lambda diff_args, c: jax.vjp(lambda *d: call(fn, list(d)), *diff_args)[1](c)

        hand = run_user("the custom rule (jax.vjp of f)", pullback(ruled), [cast[i] for i in diff], ct)
        expect_like("the custom rule", list(hand), [cast[i] for i in diff], "the rule's cotangents")
        jitted = run_user("the custom rule under jax.jit", jax.jit(pullback(ruled)), [cast[i] for i in diff], ct)
        auto = run_user("autodiff of the undecorated function", jax.jit(pullback(primal)), [cast[i] for i in diff], ct)
        order, names, hand_l, auto_l, jit_l, point, integer_rows = [], [], [], [], [], [], {}
        for i, h, a, j in zip(diff, hand, auto, jitted):
            for (path, value), hv, av, jv in zip(jax.tree_util.tree_flatten_with_path(cast[i])[0], jax.tree_util.tree_leaves(h),
                                                 jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(j)):
                name = f"args[{i}]{jax.tree_util.keystr(path)}"
                order.append(name)
                if not _is_float(value):
                    integer_rows[name] = TensorRow(name, tuple(jnp.shape(value)), True, 0.0, 0.0, (), float("nan"), float("nan"), 0,
                                                   "ok", float("nan"), f"{jnp.asarray(value).dtype} input: not differentiable "
                                                                       "(float0 cotangent)")
                    continue
                names.append(name), hand_l.append(hv), auto_l.append(av), jit_l.append(jv), point.append(value)
        float_paths = [(i, p) for i in diff for p, v in jax.tree_util.tree_flatten_with_path(cast[i])[0] if _is_float(v)]

        def scalar(leaves: list) -> Array:
            moved = [jax.tree_util.tree_map(lambda v: v, cast[i]) for i in diff]
            for (i, path), leaf in zip(float_paths, leaves):
                moved[diff.index(i)] = _replace_at(moved[diff.index(i)], path, leaf)
            result = call(primal, moved)
            return sum(jnp.vdot(o, jnp.asarray(c, jnp.float64)) for o, c in
                       zip(jax.tree_util.tree_leaves(result), jax.tree_util.tree_leaves(ct)) if _is_float(o))

        judged = dict(zip(names, _judge(names, hand_l, auto_l, jit_l, tol_, fd_tol_, dtype, (scalar, point, key, finite_differences))))
        rows = [judged.get(name) or integer_rows[name] for name in order]  # in the order of the arguments
        notes = (f"nondiff_argnums {nondiff} passed as given",) if nondiff else ()
        return _report(subject, rows, tol_, fd_tol_, warns, notes)

    return _guarded(subject, dtype, tol, fd_tol, body)


def _replace_at(tree: Any, path: tuple, leaf: Any) -> Any:
    """`tree` with the leaf at `path` replaced."""
    return jax.tree_util.tree_map_with_path(lambda p, v: leaf if p == path else v, tree)
