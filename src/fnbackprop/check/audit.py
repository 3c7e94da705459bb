"""Audit every custom rule of a package: `fb.audit(module)`, `fnbackprop audit MODULE`.

Finds every `jax.custom_jvp` and `jax.custom_vjp` object reachable from a module's public namespace
(recursing into the submodules of the same package it exposes), and every public function whose
program, traced at inputs drawn for it, calls such a rule; checks each with `check_vjp` (a rule
object against autodiff of its undecorated primal; a function calling rules against autodiff of the
function with every rule bypassed, `rules.without_rules`), and returns one `RuleRow` each: pass,
fail (with the verdict line, worst error, reference and diagnosis) or skipped (with the reason).

Inputs are float64. Each positional parameter without a default gets a vector of `DEFAULT_SHAPE`;
a spec (`SPECS`, or a TOML file: `[specs]` then `"jax.scipy.special.gammaln" = "f64[4]>0"`) names the
arguments of a function that needs a domain, integers or other shapes, in the `--args` notation
extended with domains: `f64[4]>0` (positive), `f64[4](0,1)` (inside an interval), `i32[4]<6`.
Every rule is checked at several points: a random one, and the special points where conventions
live (all zeros; ties: every entry equal; for an interval domain its edges, just inside). A point
outside the function's domain is skipped (where it is not finite, or not finite or not continuous
next to the point: log at 0, a pmf at the edge of its support, the pseudo-inverse at a rank change,
`inside_domain`); the row says which points were checked.
"""

from __future__ import annotations

import inspect
import re
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .rules import custom_rules
from .vjp import check_vjp

#: the shape of each drawn argument when no spec names it
DEFAULT_SHAPE = (4,)
#: argument specs for functions of the audited packages that need a domain, an integer or other shapes
SPECS: dict[str, str] = {
    "jax.nn.log1mexp": "f64[4]>0", "jax.scipy.special.gammaln": "f64[4]>0", "jax.scipy.special.exp1": "f64[4]>0", "jax.scipy.special.digamma": "f64[4]>0",
    "jax.scipy.special.gamma": "f64[4]>0", "jax.scipy.special.betaln": "f64[4]>0 f64[4]>0",
    "jax.scipy.special.xlogy": "f64[4] f64[4]>0", "jax.scipy.special.xlog1py": "f64[4] f64[4](-1,3)",
    "jax.scipy.special.entr": "f64[4]>0", "jax.scipy.special.kl_div": "f64[4]>0 f64[4]>0",
    "jax.scipy.special.rel_entr": "f64[4]>0 f64[4]>0", "jax.scipy.special.logit": "f64[4](0,1)",
    "jax.scipy.special.ndtri": "f64[4](0,1)", "jax.scipy.special.multigammaln": "f64[4]>2 i32[]<2",
    "jax.scipy.special.polygamma": "i32[4]<3 f64[4]>0", "jax.scipy.special.zeta": "f64[4]>2 f64[4]>0",
    "jax.scipy.special.gammainc": "f64[4]>0 f64[4]>0", "jax.scipy.special.gammaincc": "f64[4]>0 f64[4]>0",
    "jax.scipy.special.betainc": "f64[4]>0 f64[4]>0 f64[4](0,1)", "jax.scipy.special.i0e": "f64[4]",
    "jax.scipy.special.hyp1f1": "f64[4] f64[4]>0.5 f64[4]", "jax.scipy.special.hyp2f1": "f64[4] f64[4] f64[4]>0.5 f64[4](-0.9,0.9)",
    "jax.scipy.special.poch": "f64[4]>0.5 f64[4]",
    "jax.scipy.stats.bernoulli.logpmf": "i32[4]<2 f64[4](0,1)", "jax.scipy.stats.bernoulli.pmf": "i32[4]<2 f64[4](0,1)",
    "jax.scipy.stats.binom.logpmf": "i32[4]<3 f64[4]>3 f64[4](0,1)", "jax.scipy.stats.binom.pmf": "i32[4]<3 f64[4]>3 f64[4](0,1)",
    "jax.scipy.stats.geom.logpmf": "i32[4]<3 f64[4](0,1)", "jax.scipy.stats.geom.pmf": "i32[4]<3 f64[4](0,1)",
    "jax.scipy.stats.poisson.logpmf": "i32[4]<5 f64[4]>0", "jax.scipy.stats.poisson.pmf": "i32[4]<5 f64[4]>0",
    "jax.scipy.stats.poisson.entropy": "f64[4]>0.5", "jax.scipy.stats.poisson.cdf": "i32[4]<5 f64[4]>0",
    **{f"jax.scipy.stats.truncnorm.{f}": "f64[4](-0.5,0.5) f64[4](-3,-1) f64[4](1,3)"
       for f in ("cdf", "logcdf", "logpdf", "logsf", "pdf", "sf")},
    "jax.scipy.stats.gumbel_l.ppf": "f64[4](0,1)", "jax.scipy.stats.gumbel_r.ppf": "f64[4](0,1)",
    "jax.numpy.linalg.slogdet": "f64[3,3]", "jax.numpy.linalg.det": "f64[3,3]", "jax.numpy.linalg.inv": "f64[3,3]",
    "jax.numpy.linalg.eigh": "f64[3,3]", "jax.numpy.linalg.svd": "f64[3,3]", "jax.numpy.linalg.qr": "f64[3,3]",
    "jax.numpy.linalg.cholesky": "f64[3,3]", "jax.numpy.linalg.pinv": "f64[3,3]", "jax.numpy.linalg.norm": "f64[3,3]",
    "jax.numpy.linalg.matrix_power": "f64[3,3] i32[]<3", "jax.numpy.linalg.solve": "f64[3,3] f64[3]",
    "optax.losses.softmax_cross_entropy": "f64[3,4] f64[3,4](0,1)", "optax.losses.sigmoid_binary_cross_entropy": "f64[4] f64[4](0,1)",
    "optax.losses.softmax_cross_entropy_with_integer_labels": "f64[3,4] i32[3]<4",
}
#: the edges of an interval domain are checked this far inside it, relative to its width (closer, the float64
#: finite differences' step, 6e-6, is no longer small against the distance to a pole: logit at 1e-3 is 1/p'' bound)
EDGE = 1e-2
#: the special points of an unconstrained float argument, besides a random draw
SPECIAL_POINTS = ("zeros", "ties")
ARG_DTYPES = {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16", "i32": "int32", "i64": "int64",
              "bool": "bool"}
_SPEC = re.compile(rf"({'|'.join(ARG_DTYPES)})\[([0-9, ]*)\](?:<([0-9]+)|>(-?[0-9.]+)|\((-?[0-9.]+),(-?[0-9.]+)\))?")


# ----- the arguments -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArgSpec:
    """One argument: dtype, shape, and for integers the bound, for floats a domain (low, high) or None."""

    dtype: str
    shape: tuple
    bound: int = 2
    low: float | None = None
    high: float | None = None


def read_specs(text: str) -> list[ArgSpec]:
    """The specs of "f64[4,8] f64[4]>0 f64[4](0,1) i32[4]<6 bool[2]" (ValueError naming one that does not parse)."""
    specs = text.split()
    if not specs:
        raise ValueError('an argument spec needs at least one argument, e.g. "f64[4,8] i32[4]<6"')
    out = []
    for spec in specs:
        match = _SPEC.fullmatch(spec)
        if not match:
            raise ValueError(f"cannot read the argument spec {spec!r}: expected DTYPE[SHAPE] with DTYPE one of "
                             f"{', '.join(ARG_DTYPES)}, e.g. f64[4,8]; i32[4]<6 for integers in [0, 6); f64[4]>0 for "
                             "floats above 0; f64[4](0,1) for floats inside (0, 1)")
        dtype, dims = ARG_DTYPES[match[1]], match[2]
        shape = tuple(int(d) for d in dims.replace(" ", "").split(",") if d)
        low = float(match[4]) if match[4] else float(match[5]) if match[5] else None
        high = float(match[6]) if match[6] else None
        out.append(ArgSpec(dtype, shape, int(match[3] or 2), low, high))
    return out


def draw(spec: ArgSpec, key: jax.Array, point: str = "random") -> jax.Array:
    """An argument of `spec` at `point`: "random" (floats N(0, 1), or in their domain; integers in [0, bound)),
    "zeros", "ties" (every entry equal: 0.7, or inside a domain), "low edge" / "high edge" (EDGE inside an interval;
    an argument without one is drawn at random)."""
    if spec.dtype == "bool":
        return jax.random.bernoulli(key, 0.5, spec.shape)
    if spec.dtype.startswith("int"):
        return jax.random.randint(key, spec.shape, 0, spec.bound, dtype=getattr(jnp, spec.dtype))
    dtype = getattr(jnp, spec.dtype)
    low, high = spec.low, spec.high
    if point in ("low edge", "high edge") and (low is None or high is None):
        point = "random"  # the other arguments' edges: this one is drawn
    if point == "random":
        if low is not None and high is not None:
            value = jax.random.uniform(key, spec.shape, jnp.float64, low + 0.05 * (high - low), high - 0.05 * (high - low))
        elif low is not None:
            value = low + jnp.exp(0.5 * jax.random.normal(key, spec.shape, jnp.float64))
        else:
            value = jax.random.normal(key, spec.shape, jnp.float64)
    elif point == "zeros":
        value = jnp.zeros(spec.shape, jnp.float64)
    elif point == "ties":
        middle = 0.7 if low is None else (low + 1.0 if high is None else (low + high) / 2)
        value = jnp.full(spec.shape, middle, jnp.float64)
    elif point in ("low edge", "high edge"):
        assert low is not None and high is not None  # (for mypy: tested above)
        value = jnp.full(spec.shape, low + EDGE * (high - low) if point == "low edge" else high - EDGE * (high - low), jnp.float64)
    else:
        raise ValueError(f"unknown point {point!r}")
    return value.astype(dtype)


def points_of(specs: list[ArgSpec]) -> list[str]:
    """The points every argument is drawn at: random, then zeros (where no argument has a domain that
    excludes 0), ties, and the edges of interval domains."""
    floats = [s for s in specs if s.dtype.startswith(("float", "bfloat"))]
    points = ["random"]
    if floats and all(s.low is None or s.low < 0 < (s.high if s.high is not None else np.inf) for s in floats):
        points.append("zeros")
    if floats:
        points.append("ties")
    if any(s.low is not None and s.high is not None for s in floats):
        points += ["low edge", "high edge"]
    return points


def default_specs(fn: Callable) -> list[ArgSpec] | None:
    """One float64 vector of DEFAULT_SHAPE per positional parameter without a default (None: no signature)."""
    target = fn.fun if isinstance(fn, (jax.custom_jvp, jax.custom_vjp)) else fn
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    needed = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    nondiff = set(getattr(fn, "nondiff_argnums", ()) or ())
    if not needed or any(i in nondiff for i in range(len(needed))):  # a nondiff argument (an order, a flag) needs a spec
        return None
    if any(_not_an_array(p.annotation) for p in needed):  # a message, a flag, a callable: not an array to draw
        return None
    return [ArgSpec("float64", DEFAULT_SHAPE)] * len(needed)


def _not_an_array(annotation: Any) -> bool:
    """An annotation that says the parameter is a string, a boolean flag or a callable."""
    if annotation is inspect.Parameter.empty:
        return False
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return text in ("str", "bool", "Callable") or str(annotation).startswith(("typing.Callable", "collections.abc.Callable"))


#: what a rule that refuses differentiation on purpose says (equinox.internal.nondifferentiable, ...)
REFUSALS = ("cannot be autodifferentiated", "cannot be differentiated", "not differentiable", "Unexpected tangent")


# ----- discovery ------------------------------------------------------------------------------------------------
def public_members(module: types.ModuleType) -> Iterator[tuple[str, Any]]:
    """(qualified name, object) of the public names of `module` and of the submodules of its package that it
    exposes, each object once (by identity), in a stable order."""
    root = module.__name__.split(".")[0]
    seen_modules: set[str] = set()
    seen_objects: set[int] = set()

    def walk(mod: types.ModuleType) -> Iterator[tuple[str, Any]]:
        if mod.__name__ in seen_modules:
            return
        seen_modules.add(mod.__name__)
        for name in sorted(dir(mod)):
            if name.startswith("_"):
                continue
            try:
                obj = getattr(mod, name)
            except Exception:  # noqa: BLE001 (a lazy attribute that fails to load is not ours to audit)
                continue
            if isinstance(obj, types.ModuleType):
                if obj.__name__.split(".")[0] == root and obj.__name__.startswith(module.__name__):
                    yield from walk(obj)
                continue
            if id(obj) in seen_objects or isinstance(obj, type) or not callable(obj):
                continue
            seen_objects.add(id(obj))
            yield f"{mod.__name__}.{name}", obj

    yield from walk(module)


def is_rule(obj: Any) -> bool:
    return isinstance(obj, (jax.custom_jvp, jax.custom_vjp))


# ----- the audit ------------------------------------------------------------------------------------------------
@dataclass
class RuleRow:
    name: str
    kind: str  # "rule" (a custom_jvp / custom_vjp object) or "calls rules" (a function whose program calls them)
    verdict: str  # "pass", "fail" or "skipped"
    worst_error: float = float("nan")  # the rule against its reference where it is judged by it (not at kinks)
    reference: str = ""
    diagnosis: str = ""
    detail: str = ""  # the failing point's verdict line, or why it was skipped
    points: list = field(default_factory=list)  # the points checked
    rules: list = field(default_factory=list)  # the rules a caller calls

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _reference(notes: tuple) -> str:
    for note in notes:
        if note.startswith("reference: forward mode"):
            return "forward mode"
        if note.startswith("reference: reverse-mode"):
            return "reverse mode"
    return ""


def _values(fn: Callable, args: list) -> np.ndarray | None:
    """The float (or complex) outputs of fn(*args), flattened, or None when it raises or one is not finite."""
    try:
        out = fn(*args)
    except Exception:  # noqa: BLE001 (a function that refuses these arguments: the point is not usable)
        return None
    floats = [np.asarray(o).astype(np.complex128).reshape(-1) for o in jax.tree_util.tree_leaves(out)
              if jnp.issubdtype(jnp.asarray(o).dtype, jnp.inexact)]  # (complex outputs too: |change| is what counts)
    values = np.concatenate(floats) if floats else np.zeros(0, np.complex128)
    return values if np.all(np.isfinite(values)) else None


#: a point is inside the domain when the function is finite and continuous along a random direction, at
#: steps of this size and a quarter of it, on both sides
PROBE_STEP = 1e-4


def inside_domain(fn: Callable, args: list, key: jax.Array) -> bool:
    """fn is finite at args and next to them on both sides, and its changes shrink with the step (no jump):
    the point is one where a derivative exists to be checked (not log at 0, not a pmf at the edge of its
    support, not the pseudo-inverse at a rank change). Only the float arguments move."""
    base = _values(fn, args)
    if base is None:
        return False
    floats = [i for i, a in enumerate(args) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.inexact)]
    keys = jax.random.split(key, max(1, len(floats)))
    directions = {i: np.asarray(jax.random.normal(k, jnp.shape(args[i]), jnp.float64)) for i, k in zip(floats, keys)}
    changes = []
    for step in (PROBE_STEP, PROBE_STEP / 4, -PROBE_STEP, -PROBE_STEP / 4):
        moved = [jnp.asarray(np.asarray(a, np.float64) + step * directions[i], jnp.asarray(a).dtype) if i in directions else a
                 for i, a in enumerate(args)]
        values = _values(fn, moved)
        if values is None:
            return False
        changes.append(float(np.max(np.abs(values - base), initial=0.0)))
    scale = 1e3 * float(np.finfo(np.float64).eps) * max(1.0, float(np.max(np.abs(base), initial=0.0)))
    return all(small <= 0.5 * large + scale for large, small in (changes[:2], changes[2:]))


def audit_one(name: str, fn: Callable, specs: list[ArgSpec], key: jax.Array, kind: str, rules: list | None = None) -> RuleRow:
    """Check `fn` at each of `points_of(specs)` where it is finite: the first failing point decides."""
    row = RuleRow(name, kind, "pass", rules=list(rules or []))
    worst = 0.0
    for n, point in enumerate(points_of(specs)):
        keys = jax.random.split(jax.random.fold_in(key, n), len(specs))
        args = [draw(s, k, point) for s, k in zip(specs, keys)]
        if not inside_domain(fn, args, jax.random.fold_in(key, 1000 + n)):
            continue
        report = check_vjp(fn, *args, transforms=() if point != "random" else ("jax.vmap", "jax.checkpoint"))
        row.points.append(point)
        row.reference = row.reference or _reference(report.notes)
        worst = max([worst, *(r.rel_err for r in report.rows if r.verdict == "ok" and r.rel_err == r.rel_err)])
        excused = sorted({r.verdict for r in report.rows if r.ok and r.verdict != "ok"})
        if excused:
            row.detail = "; ".join(filter(None, [row.detail, f"{', '.join(excused)} at {point}"]))
        raised = [r for r in report.rows if r.verdict == "raised"]
        refuses = bool(raised) and any(words in raised[0].detail for words in REFUSALS)
        if raised and (refuses or "complex" in raised[0].detail or raised[0].name.startswith("autodiff of the undecorated")):
            why = (f"it refuses differentiation on purpose: {raised[0].detail}" if refuses else
                   "a complex output or input: check_vjp compares real cotangents" if "complex" in raised[0].detail else
                   f"no reference: {raised[0].name} {raised[0].detail}")
            return RuleRow(name, kind, "skipped", detail=f"{why} (at {point})", rules=row.rules)
        if not report.passed:
            row.verdict, row.diagnosis = "fail", report.diagnosis
            first = report.failing()[0]
            row.detail = (f"at {point} ({', '.join(f'{a.dtype}{list(a.shape)}' for a in args)}): {report.verdict_line()}; "
                          f"{first.name}: {first.detail}")
            row.worst_error = max([worst, *(r.rel_err for r in report.failing())])
            return row
    if not row.points:
        return RuleRow(name, kind, "skipped", detail="no drawn point is inside the function's domain (finite and "
                                                     "continuous around it): give a spec with its domain (--specs)",
                       rules=row.rules)
    row.worst_error = worst
    return row


def audit(*modules: types.ModuleType, specs: dict[str, str] | None = None, key: jax.Array | None = None,
          on_row: Callable[[RuleRow, int, int], None] | None = None) -> list[RuleRow]:
    """Audit every custom rule reachable from `modules` (see the module doc). `specs` adds to or replaces
    `SPECS` by qualified name; `on_row(row, done, total)` is told of each row as it is made."""
    key = jax.random.PRNGKey(0) if key is None else key
    table = {**SPECS, **(specs or {})}
    with jax.enable_x64(True):
        found: list[tuple[str, Callable, list[ArgSpec] | None, str, list]] = []
        seen: set[int] = set()
        for module in modules:
            for name, obj in public_members(module):
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                given = read_specs(table[name]) if name in table else None
                if is_rule(obj):
                    found.append((name, obj, given or default_specs(obj), "rule", []))
                    continue
                arg_specs = given or default_specs(obj)
                if arg_specs is None:
                    continue
                try:
                    called = custom_rules(obj, *[draw(s, key) for s in arg_specs])
                except Exception:  # noqa: BLE001 (not traceable at these arguments: not a function on arrays, or needs a spec)
                    continue
                if called:
                    found.append((name, obj, arg_specs, "calls rules", sorted(set(called))))
        rows = []
        for i, (name, obj, arg_specs, kind, called) in enumerate(found):
            if arg_specs is None:
                row = RuleRow(name, kind, "skipped", detail="no inputs could be drawn: its signature has no positional "
                                                             "parameters to fill (give a spec)", rules=called)
            else:
                try:
                    row = audit_one(name, obj, arg_specs, jax.random.fold_in(key, i), kind, called)
                except Exception as err:  # noqa: BLE001 (a rule the checker cannot run is reported, never a traceback)
                    row = RuleRow(name, kind, "skipped", detail=f"could not be checked: {type(err).__name__}: "
                                                                 f"{(str(err).splitlines() or [''])[0][:200]}", rules=called)
            rows.append(row)
            if on_row is not None:
                on_row(row, i + 1, len(found))
        return rows
