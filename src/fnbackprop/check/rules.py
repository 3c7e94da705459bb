"""Custom rules inside a function, read from its jaxpr: find them, bypass them, alter one derivative.

    custom_rules(f, *args)        # names of the jax.custom_vjp / custom_jvp calls f makes, nested ones too
    without_rules(f)              # f with every custom rule bypassed: autodiff then differentiates the primals
    derivative_variants(f, *args) # f with one textbook slip in one derivative, for the diagnosis

One small interpreter does all three: it evaluates f's jaxpr equation by equation, inlines `jit`
calls (so rules inside a jitted function are found), and evaluates a custom rule's primal
(`call_jaxpr`) in place of the rule. Rules inside `lax.scan`, `cond` or `while` bodies are bound as
they are, so autodiff there goes through the rule: a wrong one then differs from finite differences
(`references disagree`), never passes.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.extend.core as jex
import jax.numpy as jnp

CUSTOM_CALLS = ("custom_vjp_call", "custom_jvp_call")
INLINED_CALLS = ("jit", "pjit", "closed_call", "core_call")
#: elementwise steps y = g(x) whose derivative a hand derivation may drop, or replace by g itself
ELEMENTWISE = ("tanh", "logistic", "exp", "exp2", "log", "log1p", "expm1", "sin", "cos", "tan", "erf", "erfc", "sqrt",
               "rsqrt", "cbrt", "integer_pow", "pow", "max", "min", "abs", "atan", "asinh", "sinh", "cosh", "erf_inv")
#: the arithmetic that, with the steps above, makes up an elementwise function written out (a GELU's
#: 0.5 x (1 + tanh(...)), x sigmoid(x), log(1 + exp(x)))
ARITHMETIC = ("add", "sub", "mul", "div", "neg", "square", "sign", "select_n", "convert_element_type")
#: at most this many sites get variants (each costs a gradient per slip)
MOST_VARIANTS = 24


def _closed(jaxpr: Any) -> jex.ClosedJaxpr:
    return jaxpr if isinstance(jaxpr, jex.ClosedJaxpr) else jex.ClosedJaxpr(jaxpr, ())


def _bind(eqn: Any, invals: list) -> list:
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    subfuns, params = bind_params if isinstance(bind_params, tuple) else ((), bind_params)  # jax < 0.5 gave (subfuns, params)
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _unit(eqn: Any) -> int | None:
    """Which input varies, for an elementwise step of one array input (others literals or scalars)
    whose output has that input's shape; None for any other equation."""
    name = eqn.primitive.name
    if name not in ELEMENTWISE and name != "custom_jvp_call":
        return None
    varying = [i for i, v in enumerate(eqn.invars) if not isinstance(v, jex.Literal) and v.aval.shape != ()]
    if len(varying) != 1 or len(eqn.outvars) != 1 or eqn.outvars[0].aval.shape != eqn.invars[varying[0]].aval.shape:
        return None
    if not jnp.issubdtype(eqn.outvars[0].aval.dtype, jnp.floating):
        return None
    return varying[0]


def _site(eqn: Any) -> tuple[str, tuple[str, ...]]:
    """(label, the slips a hand derivation can make here) for an equation; () when none is modelled.

    An elementwise step y = g(z): its derivative left out, or g(z) where g'(z) belongs. A matrix
    product with a square operand: the other operand's gradient taken with it untransposed (W where
    W^T belongs), one variant per square operand."""
    name = eqn.primitive.name
    if _unit(eqn) is not None:
        return (_rule_name(eqn) if name == "custom_jvp_call" else name), ("missing-derivative", "activation-for-derivative")
    if name == "dot_general" and len(eqn.invars) == 2:
        square = [i for i, v in enumerate(eqn.invars) if len(v.aval.shape) >= 2 and v.aval.shape[-1] == v.aval.shape[-2]]
        return "matrix product", tuple(f"transpose:{1 - i}" for i in square)
    return "", ()


def _rule_name(eqn: Any) -> str:
    """The name of the function a custom_vjp / custom_jvp call wraps (e.g. relu), from its debug info."""
    info = getattr(getattr(_closed(eqn.params["call_jaxpr"]).jaxpr, "debug_info", None), "func_src_info", None) or ""
    return info.split(" ")[0] or eqn.primitive.name


def _arrays_in(eqn: Any) -> list:
    """The non-literal, non-scalar inputs of an equation (scalars and literals are its constants)."""
    return [v for v in eqn.invars if not isinstance(v, jex.Literal) and v.aval.shape != ()]


def composite_regions(jaxpr: Any) -> dict:
    """{output var y: (root var z, equation indices)} for each elementwise function y = g(z) written out
    of several equations (a GELU, x sigmoid(x), log1p(exp(x))): every equation of the region is
    elementwise (`ELEMENTWISE`, `ARITHMETIC`) with array inputs of y's shape from inside the region
    or z itself; y is maximal (an output, or used by anything outside such a region of z)."""
    roots: dict = {}  # var -> (root, eqn indices) while it is an elementwise function of one root
    elementwise = set(ELEMENTWISE) | set(ARITHMETIC)
    for i, eqn in enumerate(jaxpr.eqns):
        arrays = _arrays_in(eqn)
        if eqn.primitive.name not in elementwise or len(eqn.outvars) != 1 or not arrays:
            continue
        out = eqn.outvars[0]
        if not jnp.issubdtype(out.aval.dtype, jnp.floating) or any(v.aval.shape != out.aval.shape for v in arrays):
            continue
        found = {roots[v][0] if v in roots else v for v in arrays}
        if len(found) == 1:
            roots[out] = (found.pop(), sorted({i}.union(*(roots[v][1] for v in arrays if v in roots))))
    users: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if not isinstance(v, jex.Literal):
                users.setdefault(v, []).append(eqn)
    outputs = {v for v in jaxpr.outvars if not isinstance(v, jex.Literal)}

    def maximal(y: Any) -> bool:
        root = roots[y][0]
        return y in outputs or any(u.outvars[0] not in roots or roots[u.outvars[0]][0] is not root
                                   for u in users.get(y, []) if len(u.outvars) == 1) or any(len(u.outvars) != 1 for u in users.get(y, []))

    return {y: (z, eqns) for y, (z, eqns) in roots.items() if len(eqns) >= 2 and maximal(y)}


class Walk:
    """State of one evaluation: the sites seen (equations with modelled slips), which to alter and how."""

    def __init__(self, alter: int = -1, kind: str = ""):
        self.alter, self.kind = alter, kind
        self.sites: list[tuple[str, tuple]] = []


def _evaluate_inner(jaxpr: Any, walk: Walk, args: list) -> list:
    """A call's inner jaxpr, evaluated as `evaluate` does."""
    return evaluate(_closed(jaxpr), args, walk)


def evaluate(closed: jex.ClosedJaxpr, args: list, walk: Walk) -> list:
    """The jaxpr's outputs at `args`, custom rules bypassed, `jit` calls inlined, and site number
    `walk.alter` given the slip `walk.kind` names."""
    env: dict = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex.Literal) else env[v]

    for var, value in zip(closed.jaxpr.constvars, closed.consts):
        env[var] = value
    for var, value in zip(closed.jaxpr.invars, args):
        env[var] = value
    regions = composite_regions(closed.jaxpr)
    for eqn in closed.jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        label, slips = _site(eqn)
        compute: Callable[[list], Any]
        if name in CUSTOM_CALLS:  # a rule that is itself an elementwise step is one site: its insides are not counted
            compute = functools.partial(_evaluate_inner, eqn.params["call_jaxpr"], Walk() if slips else walk)
        elif name in INLINED_CALLS:
            compute = functools.partial(_evaluate_inner, eqn.params["jaxpr"], walk)
        else:
            compute = functools.partial(_bind, eqn)
        if slips:
            walk.sites.append((label, slips))
        if slips and len(walk.sites) - 1 == walk.alter:
            if walk.kind.startswith("transpose"):
                outs = [_untransposed(compute, invals, int(walk.kind.split(":")[1]))]
            else:  # `_site` offers the elementwise slips only where `_unit` found the varying input
                outs = [_elementwise_slip(compute, invals, _unit(eqn) or 0, walk.kind)]
        else:
            outs = compute(invals)
        for var, value in zip(eqn.outvars, outs):
            env[var] = value
        if len(eqn.outvars) == 1 and eqn.outvars[0] in regions:  # a written-out elementwise function ends here
            root, members = regions[eqn.outvars[0]]
            names = [closed.jaxpr.eqns[i].primitive.name for i in members]
            walk.sites.append((f"elementwise function of {len(members)} steps ({', '.join(dict.fromkeys(names))})",
                               ("missing-derivative", "activation-for-derivative")))
            if len(walk.sites) - 1 == walk.alter:
                g = lambda z, members=members, root=root, out=eqn.outvars[0]: _run_region(closed, members, root, out, z, read)  # noqa: E731
                env[eqn.outvars[0]] = _elementwise_slip(lambda vals: [g(vals[0])], [env[root]], 0, walk.kind)
    return [read(v) for v in closed.jaxpr.outvars]


def _run_region(closed: jex.ClosedJaxpr, members: list, root: Any, out: Any, z: Any, read: Callable) -> Any:
    """The region's output recomputed from its root's value z (its constants read as they are)."""
    local = {root: z}
    for i in members:
        eqn = closed.jaxpr.eqns[i]
        vals = [read(v) if isinstance(v, jex.Literal) or v not in local else local[v] for v in eqn.invars]
        local[eqn.outvars[0]] = _bind(eqn, vals)[0]
    return local[out]


def _elementwise_slip(compute: Callable, invals: list, which: int, kind: str) -> Any:
    """The step's output, with derivative 1 (`missing-derivative`) or g(z) itself (`activation-for-derivative`)."""
    def g(z: Any) -> Any:
        vals = list(invals)
        vals[which] = z
        return compute(vals)[0]

    step = jax.custom_jvp(g)
    step.defjvp(lambda primals, tangents: (g(primals[0]), tangents[0] if kind == "missing-derivative" else g(primals[0]) * tangents[0]))
    return step(invals[which])


def _untransposed(compute: Callable, invals: list, which: int) -> Any:
    """The product's output, the gradient of operand `which` taken as if the other (square) operand
    were transposed in the forward: W where W^T belongs."""
    def product(a: Any, b: Any) -> Any:
        return compute([a, b])[0]

    slipped = jax.custom_vjp(product)

    def bwd(operands: tuple, ct: Any) -> tuple:
        grads = list(jax.vjp(product, *operands)[1](ct))
        swapped = list(operands)
        swapped[1 - which] = jnp.swapaxes(swapped[1 - which], -1, -2)
        grads[which] = jax.vjp(product, *swapped)[1](ct)[which]
        return tuple(grads)

    slipped.defvjp(lambda a, b: (product(a, b), (a, b)), bwd)
    return slipped(*invals)


def _run(f: Callable, walk_of: Callable[[], Walk]) -> Callable:
    """f as evaluated by the interpreter, traced at each call (any pytrees in and out)."""
    def run(*args: Any) -> Any:
        closed, shape = jax.make_jaxpr(f, return_shape=True)(*args)
        out = evaluate(closed, jax.tree_util.tree_leaves(args), walk_of())
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)

    return run


def custom_rules(f: Callable, *args: Any) -> list[str]:
    """Names of the custom_vjp / custom_jvp calls f makes at `args` (inside `jit` calls too)."""
    names: list[str] = []

    def scan(closed: Any) -> None:
        for eqn in _closed(closed).jaxpr.eqns:
            if eqn.primitive.name in CUSTOM_CALLS:
                names.append(_rule_name(eqn))
            for sub in jex.jaxprs_in_params(eqn.params):
                scan(sub)

    scan(jax.make_jaxpr(f)(*args))
    return names


def without_rules(f: Callable) -> Callable:
    """f with every custom rule it calls bypassed: `jax.vjp` of the result differentiates the primals.

    Compiled (once per set of shapes; arguments that are not arrays are static): evaluated eagerly,
    equation by equation, a model's hundreds of equations cost a dispatch each, under `vmap` too."""
    run = _run(f, Walk)
    compiled: dict = {}

    def traceable(leaf: Any) -> bool:  # an array or a number; anything else (a string, a bool flag) is static
        return hasattr(leaf, "shape") or (isinstance(leaf, (int, float, complex)) and not isinstance(leaf, bool))

    def bypassed(*args: Any) -> Any:
        static = tuple(i for i, a in enumerate(args) if not all(traceable(leaf) for leaf in jax.tree_util.tree_leaves(a)))
        if static not in compiled:
            compiled[static] = jax.jit(run, static_argnums=static)
        return compiled[static](*args)

    bypassed.__name__ = getattr(f, "__name__", "f")
    return bypassed


class Variant(NamedTuple):
    kind: str  # the diagnosis word: "missing-derivative", "activation-for-derivative" or "transpose"
    what: str  # the slip in words, e.g. "with the derivative of tanh (site 2 of 5) left out"
    fn: Callable


SLIPS = {"missing-derivative": "with the derivative of the {label} (site {n} of {of}) left out",
         "activation-for-derivative": "with the {label} (site {n} of {of}) in place of its derivative: g(z) where g'(z) belongs",
         "transpose": "with the {label} (site {n} of {of}) differentiated through its other operand untransposed: W where W^T belongs"}


def derivative_variants(f: Callable, *args: Any) -> list[Variant]:
    """For each site of f (rules bypassed; the first MOST_VARIANTS), f with one textbook slip in its
    derivative (`_site`): functions whose autodiff gives the gradient a hand derivation with that slip
    would give."""
    walk = Walk()
    jax.make_jaxpr(_run(f, lambda: walk))(*args)  # traced, not run: the sites are counted as the equations are read
    of = len(walk.sites)
    return [Variant(slip.split(":")[0], SLIPS[slip.split(":")[0]].format(label=label, n=i + 1, of=of),
                    _run(f, functools.partial(Walk, i, slip)))
            for i, (label, slips) in enumerate(walk.sites[:MOST_VARIANTS]) for slip in slips]
