"""One tensor's verdict: the hand gradient against autodiff, float64 finite differences and jax.jit.

Every check of the package (`check_layer`, `check_network`, `check_loss`) ends here, so there is one
set of verdicts (`VERDICTS`); a row passes only as `ok`, `kink`, `convention` or `by design`:

- **non-finite**: a NaN or an infinity in the hand gradient (eager or jitted), in autodiff, or in the
  finite differences. It fails whatever else holds; the row names the array and the first bad index.
- **references disagree**: autodiff and finite differences differ at the smooth entries probed (a
  precision problem, or a forward that is not what its autodiff says), so nothing can be judged.
- **backward wrong**: hand != autodiff at an entry that no kink excuses.
- **eager vs jit**: the backward gives other numbers under `jax.jit` (it reads Python state).
- **convention** (passes): autodiff of the primal is NaN or infinite at some entries where the function
  is finite (a norm at 0, sinc at 0: the reason such a rule is written), and the rule's values there lie
  between the finite differences' one-sided quotients, a derivative or a subgradient; a value outside
  them is `backward wrong`, and a rule that is itself non-finite there stays `non-finite`.
- **by design** (passes; `check_vjp(..., by_design=True)` only): the rule differs from the gradient
  on purpose (a straight-through estimator, a clipped backward); the row shows by how much.
- **kink** (passes): the function has a kink at some probed entry, and wherever hand differs from
  autodiff there, the hand value lies between the one-sided difference quotients (it is a possible
  derivative at that point, e.g. 0 or 1 for ReLU at 0; -1000 is not).
- **shape/dtype mismatch**, and for user code that fails, **raised** and **structure mismatch**
  (`fnbackprop.check.verify`).

Kinks are found by one-sided difference quotients at two steps, h and h/4: a kink's slope jump
f'(x+) - f'(x-) stays as h shrinks, curvature's shrinks with h. The threshold is relative to the
tensor's own gradient scale (a slope jump of 1e-4 on gradients of 1e-5 is a kink) plus the
quotients' rounding level.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .numerics import TOL_FINITE_DIFF, first_non_finite, leaf_rel_err

Array = jax.Array

#: most entries of one tensor probed at random by finite differences (entries where hand and
#: autodiff differ are probed too, up to as many again)
MAX_FD_ENTRIES = 512
#: a slope jump this large relative to the tensor's largest gradient marks a kink
KINK_TOL = 1e-3
#: the finite-difference step, relative to max(1, |entry|); the second step is FD_STEP / SMALL_STEP
FD_STEP = 6e-6
SMALL_STEP = 4
#: rounding level of a difference quotient, in units of eps |f| / h, below which a jump is noise
ROUNDING_UNITS = 100

VERDICTS = ("ok", "kink", "convention", "by design", "backward wrong", "eager vs jit", "non-finite", "references disagree",
            "shape/dtype mismatch", "raised", "structure mismatch")
PASSING = ("ok", "kink", "convention", "by design")


class TensorRow(NamedTuple):
    name: str
    shape: tuple
    shape_ok: bool
    max_abs_err: float
    rel_err: float  # hand vs autodiff
    worst_index: tuple
    ratio: float  # least-squares hand / autodiff
    fd_rel_err: float  # autodiff vs finite differences, over the smooth entries probed (nan: not checked)
    kinks: int
    verdict: str  # one of VERDICTS
    jit_rel_err: float = float("nan")  # hand eager vs hand under jax.jit
    detail: str = ""  # what went wrong, where, in words
    diagnosis: str = ""  # failing rows: the kind of mistake, then the evidence (`fnbackprop.check.diagnosis`)

    @property
    def ok(self) -> bool:
        return self.verdict in PASSING


class Report(NamedTuple):
    subject: str
    rows: list
    jit_rel_err: float
    tol: float
    fd_tol: float
    warnings: list
    notes: tuple = ()  # how the check was set up (e.g. parameters moved off special values)
    traceback: str = ""  # of user code that raised (`fnbackprop check --traceback` prints it)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def ratio_header(self) -> str:
        """The heading of the table's column of best-fit ratios."""
        return "hand/auto"

    def title(self) -> str:
        """The table's first line: what was compared with what, at which tolerances."""
        return (f"{self.subject}: hand-coded backward vs autodiff (tolerance {self.tol:g}) vs finite differences "
                f"(tolerance {self.fd_tol:g}); eager vs jit {format_err(self.jit_rel_err)}")

    def failing(self) -> list[TensorRow]:
        return [r for r in self.rows if not r.ok]

    @property
    def diagnosis(self) -> str:
        """The report's diagnosis: the first failing row's that names a kind (not `unknown`), else the
        first failing row's ('' when it passed). A mistake in one place spreads to the tensors computed
        from it; the row where it fits a pattern is where it shows its kind."""
        found = [r.diagnosis for r in self.failing() if r.diagnosis]
        return next((d for d in found if not d.startswith("unknown")), found[0] if found else "")

    def verdict_line(self) -> str:
        """One line: PASS, or FAIL with the failing tensors grouped by verdict, then each kind of mistake the
        diagnosis names, once (with the first row's evidence, and the tensors that show it when there are several kinds)."""
        if self.passed:
            return f"PASS: every tensor of {self.subject} agrees"
        if not self.rows:
            return f"FAIL: {self.subject} has no tensor to check"
        by_verdict: dict[str, list[str]] = {}
        by_kind: dict[str, tuple[str, list[str]]] = {}
        for r in self.failing():
            by_verdict.setdefault(r.verdict, []).append(r.name)
            if r.diagnosis:
                by_kind.setdefault(r.diagnosis.split(":")[0], (r.diagnosis, []))[1].append(r.name)
        line = "FAIL: " + "; ".join(f"{_names(names)}: {verdict}" for verdict, names in by_verdict.items())
        if by_kind:
            line += " | diagnosis: " + "; ".join(
                first if len(by_kind) == 1 else f"{first} ({_names(names)})" for first, names in by_kind.values())
        return line

    def __str__(self) -> str:
        """The report as a plain-text table (what `print(report)` shows): a header, one line per tensor
        (failing ones marked X), the verdict line, then the notes and warnings."""
        header = ("", "tensor", "shape", "verdict", "rel err", self.ratio_header(), "detail")
        table = [header] + [("X" if not r.ok else "", r.name, str(r.shape), r.verdict, format_err(r.rel_err),
                             "-" if r.ratio != r.ratio else f"x{r.ratio:.4g}", r.detail) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        lines = [self.title()]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + ("  " + row[-1] if row[-1] else "")
                  for row in table]
        lines.append(self.verdict_line())
        lines += [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings]
        return "\n".join(line.rstrip() for line in lines)

    def to_dict(self) -> dict:
        return {"subject": self.subject, "passed": self.passed, "jit_rel_err": self.jit_rel_err, "tol": self.tol,
                "fd_tol": self.fd_tol, "diagnosis": self.diagnosis, "warnings": list(self.warnings), "notes": list(self.notes),
                "rows": [r._asdict() for r in self.rows]}


def _names(names: list[str], most: int = 4) -> str:
    """The tensors' names, the first `most` of a long list and a count of the rest."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def format_err(value: float) -> str:
    """An error for a table: "-" for NaN (not measured), else 1 significant digit and the exponent."""
    return "-" if value != value else f"{value:.1e}"


def failure_row(name: str, verdict: str, detail: str, shape: tuple = ()) -> TensorRow:
    """A row for something that could not be compared at all (a mismatch, or user code that failed)."""
    inf, nan = float("inf"), float("nan")
    return TensorRow(name, tuple(shape), verdict != "shape/dtype mismatch", inf, inf, (), nan, nan, 0, verdict, nan, detail)


# ----- finite differences on chosen entries ----------------------------------------------------------
class FDSample(NamedTuple):
    """Finite differences of a scalar f at some entries of one tensor.

    slopes[0:2]: forward and backward quotients (f(x+h) - f(x)) / h, (f(x) - f(x-h)) / h;
    slopes[2:4]: the same at h / SMALL_STEP. noise: eps max|f| / h, the quotients' rounding unit at h.
    """

    index: np.ndarray  # type: ignore[assignment]  # the field shadows tuple.index, which nothing here calls
    slopes: np.ndarray
    noise: np.ndarray


def numpy_rng(key: Array) -> np.random.Generator:
    """A numpy generator seeded by a JAX key's bits: draws of any size without compiling a kernel for each."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def random_entries(key: Array, size: int, most: int = MAX_FD_ENTRIES) -> np.ndarray:
    """All flat indices of a tensor of `size` entries, or `most` of them drawn without replacement."""
    if size <= most:
        return np.arange(size)
    return np.sort(numpy_rng(key).choice(size, most, replace=False))


#: most floats held at once by the batched evaluations of finite differences (evaluations x entries)
FD_BATCH_FLOATS = 2**24
#: below this many floats in all, the evaluations run eagerly (their small kernels are cached by shape,
#: cheaper than compiling the whole for every check); above, as one compiled program
FD_EAGER_FLOATS = 2**18


def finite_differences_at(f: Callable[[Any], Array], tree: Any, key: Array, indices: list | None = None) -> list[FDSample]:
    """Per leaf of `tree`, an `FDSample` of the scalar f at `indices[leaf]` (random entries if None).

    The step per entry is h = FD_STEP max(1, |entry|), near eps^(1/3) in float64, balancing the
    truncation (h^2) of the central quotient against rounding (eps / h). Every evaluation, of every
    leaf, runs in one vmapped eager call; past FD_EAGER_FLOATS floats in all, in one compiled
    `lax.map` over batches of at most FD_BATCH_FLOATS floats.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    flat, unravel = ravel_pytree(tree)
    keys = jax.random.split(key, max(1, len(leaves)))
    per_leaf = [np.asarray(indices[j] if indices is not None else random_entries(keys[j], jnp.size(leaf)), np.int64)
                for j, leaf in enumerate(leaves)]
    offsets = np.cumsum([0] + [int(jnp.size(leaf)) for leaf in leaves])
    where = np.concatenate([offsets[j] + idx for j, idx in enumerate(per_leaf)] + [np.zeros(0, np.int64)])
    h = FD_STEP * np.maximum(1.0, np.abs(np.asarray(flat, np.float64)[where]))
    steps = np.concatenate([h, -h, h / SMALL_STEP, -h / SMALL_STEP])

    def evaluate(flat, where, steps):
        moved = lambda a: f(unravel(flat.at[a[0]].add(a[1].astype(flat.dtype))))  # noqa: E731
        if steps.size * flat.size <= FD_EAGER_FLOATS:  # small: one vmapped eager call, its kernels cached by shape
            return f(unravel(flat)), jax.vmap(moved)((where, steps))
        batch = max(1, FD_BATCH_FLOATS // flat.size)  # large: compiled (the point an argument, not a constant to fold)

        def compiled(flat, where, steps):
            moved = lambda a: f(unravel(flat.at[a[0]].add(a[1].astype(flat.dtype))))  # noqa: E731
            return f(unravel(flat)), jax.lax.map(moved, (where, steps), batch_size=batch)

        return jax.jit(compiled)(flat, where, steps)

    f0, values = evaluate(flat, jnp.asarray(np.tile(where, 4)), jnp.asarray(steps))
    f0 = float(f0)
    plus, minus, plus2, minus2 = np.asarray(values, np.float64).reshape(4, -1)
    slopes = np.stack([(plus - f0) / h, (f0 - minus) / h, SMALL_STEP * (plus2 - f0) / h, SMALL_STEP * (f0 - minus2) / h])
    level = np.max(np.abs(np.stack([plus, minus, plus2, minus2, np.full_like(plus, f0)])), axis=0)
    noise = float(jnp.finfo(jnp.float64).eps) * level / h
    bounds = np.cumsum([0] + [idx.size for idx in per_leaf])
    return [FDSample(idx, slopes[:, a:b], noise[a:b]) for idx, a, b in zip(per_leaf, bounds[:-1], bounds[1:])]


def entries_to_probe(hand: Any, auto: Any, tol: float, floor: float, key: Array, most: int = MAX_FD_ENTRIES) -> np.ndarray:
    """`most` random entries, plus (largest error first, up to `most`) those where hand != autodiff,
    so that every entry a kink might excuse has its one-sided slopes measured."""
    auto = np.asarray(auto)
    probe = random_entries(key, auto.size, most)
    hand = np.asarray(hand) if hasattr(hand, "shape") else None
    if hand is not None and hand.shape == auto.shape and np.issubdtype(hand.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            diff = np.abs(hand.astype(np.float64) - auto).reshape(-1)
        scale = max(np.nanmax(np.abs(auto), initial=0.0), floor)
        bad = np.flatnonzero(~(diff <= tol * scale))
        probe = np.union1d(probe, bad[np.argsort(-np.nan_to_num(diff[bad], nan=np.inf))][:most])
    return probe


# ----- comparing one tensor --------------------------------------------------------------------------
def best_fit_ratio(hand: np.ndarray, auto: np.ndarray) -> float:
    """c minimising ||hand - c auto||: <hand, auto> / <auto, auto> (nan when auto is 0)."""
    denom = float(np.vdot(auto, auto))
    return float(np.vdot(hand, auto)) / denom if denom > 0 else float("nan")


def _mismatch(hand: Any, auto: np.ndarray, expected_dtype: Any = None, label: str = "hand") -> str:
    """'' when `hand` is an array of auto's shape and the expected dtype (auto's by default), else what differs."""
    want = np.dtype(auto.dtype if expected_dtype is None else expected_dtype)
    shape, dtype = getattr(hand, "shape", None), getattr(hand, "dtype", None)
    if shape is None or dtype is None:
        return f"{label} is a {type(hand).__name__}, not an array; expected {want.name}{list(auto.shape)}"
    if tuple(shape) != auto.shape or np.dtype(dtype) != want:
        return f"{label} is {np.dtype(dtype).name}{list(shape)}, expected {want.name}{list(auto.shape)}"
    return ""


def _non_finite(hand: np.ndarray, auto: np.ndarray, jitted: Any, sample: FDSample | None) -> str:
    """'' when every number is finite, else which array holds the first NaN or infinity, and where."""
    arrays = [("hand gradient", hand), ("hand gradient under jax.jit", jitted), ("autodiff", auto)]
    for label, array in arrays:
        if array is not None and (at := first_non_finite(array)) is not None:
            return f"{label} is {np.asarray(array)[at]} at {at}"
    if sample is not None and (at := first_non_finite(sample.slopes)) is not None:
        index = tuple(int(i) for i in np.unravel_index(sample.index[at[1]], auto.shape))
        return f"finite differences are {sample.slopes[at]} at {index} (the forward is not finite next to this point)"
    return ""


class KinkAnalysis(NamedTuple):
    central: np.ndarray  # the central quotient at the largest step that sees no kink
    kink: np.ndarray  # bool: the slope jumps at this entry
    low: np.ndarray  # one-sided quotients at the small step, ordered: a derivative there lies between
    high: np.ndarray


def analyse_kinks(sample: FDSample, grad_scale: float) -> KinkAnalysis:
    """Which probed entries sit on a kink, and the central quotient to trust at the others."""
    fwd, bwd, fwd2, bwd2 = sample.slopes
    jump, jump2 = np.abs(fwd - bwd), np.abs(fwd2 - bwd2)
    smooth = jump <= KINK_TOL * grad_scale + ROUNDING_UNITS * sample.noise
    persists = (jump2 > KINK_TOL * grad_scale + ROUNDING_UNITS * SMALL_STEP * sample.noise) & (jump2 > jump / 2)
    central = np.where(smooth, (fwd + bwd) / 2, (fwd2 + bwd2) / 2)  # a kink between h/4 and h: the small step is smooth
    return KinkAnalysis(central, ~smooth & persists, np.minimum(fwd2, bwd2), np.maximum(fwd2, bwd2))


def compare_tensor(name: str, hand: Any, auto: Any, tol: float, *, jitted: Any = None, sample: FDSample | None = None,
                   fd_tol: float = TOL_FINITE_DIFF, floor: float = 0.0, expected_dtype: Any = None,
                   fd_projected: float = float("nan")) -> TensorRow:
    """One row: hand vs autodiff at every entry, hand vs jitted hand, autodiff vs finite differences
    at the probed entries (and `fd_projected`, its error along random directions in fast mode), and
    at kinks the hand value against the one-sided quotients.

    `floor` is the smallest scale a relative error is taken against (`fnbackprop.check.numerics.noise_floor`).
    """
    auto = np.asarray(auto)
    problem = _mismatch(hand, auto, expected_dtype) or (
        _mismatch(jitted, auto, expected_dtype, "hand under jax.jit") if jitted is not None else "")
    if problem:
        return failure_row(name, "shape/dtype mismatch", problem, auto.shape)
    hand = np.asarray(hand)
    jitted = None if jitted is None else np.asarray(jitted)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(hand.astype(np.float64) - auto)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)) if diff.size else ()
    rel = leaf_rel_err(hand, auto, floor)
    jit_rel = leaf_rel_err(hand, jitted, floor) if jitted is not None else float("nan")
    ratio = best_fit_ratio(hand, auto) if np.all(np.isfinite(hand)) and np.all(np.isfinite(auto)) else float("nan")

    def row(verdict: str, detail: str = "", fd_rel: float = float("nan"), kinks: int = 0) -> TensorRow:
        return TensorRow(name, tuple(auto.shape), True, float(np.max(diff, initial=0.0)), rel, worst, ratio, fd_rel, kinks,
                         verdict, jit_rel, detail)

    convention = ""
    if sample is not None and np.all(np.isfinite(hand)) and (jitted is None or np.all(np.isfinite(jitted))) \
            and not np.all(np.isfinite(auto)):
        auto, convention = _convention(hand, auto, sample, fd_tol, floor)
        if convention:  # autodiff's non-finite entries are now the finite differences' judgement
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(hand.astype(np.float64) - auto)
            worst = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape)) if diff.size else ()
            rel = leaf_rel_err(hand, auto, floor)
            ratio = best_fit_ratio(hand, auto)
        if convention.startswith("backward wrong: "):
            return row("backward wrong", convention.removeprefix("backward wrong: "))
    if nonfinite := _non_finite(hand, auto, jitted, sample):
        return row("non-finite", nonfinite)
    scale = max(np.max(np.abs(hand), initial=0.0), np.max(np.abs(auto), initial=0.0), floor)
    bad = (diff > tol * scale).reshape(-1)
    excused = np.zeros(auto.size, bool)
    at_kink = np.zeros(auto.size, bool)
    low, high = np.full(auto.size, np.nan), np.full(auto.size, np.nan)  # one-sided slopes at the probed kinks
    fd_rel, kinks = float("nan"), 0
    k, grad_scale = None, floor
    if sample is not None and sample.index.size:
        grad_scale = max(float(np.max(np.abs(auto), initial=0.0)), floor)
        k = analyse_kinks(sample, grad_scale)
        # below the quotients' own resolution nothing is resolved (their rounding, and their truncation: the two
        # central quotients, at h and h / 4, differ by about it): a gradient of 0 at a stationary point against
        # quotients of 1e-11 is agreement, not a relative error of 1
        fwd, bwd, fwd2, bwd2 = sample.slopes
        resolution = np.abs((fwd + bwd) / 2 - (fwd2 + bwd2) / 2) + ROUNDING_UNITS * SMALL_STEP * sample.noise
        fd_floor = max(floor, float(np.max(resolution[~k.kink], initial=0.0)) / fd_tol)
        fd_rel = leaf_rel_err(auto.reshape(-1)[sample.index[~k.kink]], k.central[~k.kink], fd_floor)
        h = hand.reshape(-1)[sample.index]
        at_kink[sample.index[k.kink]] = True
        low[sample.index], high[sample.index] = k.low, k.high
        excused[sample.index[k.kink & fd_accepts(h, sample, k, fd_tol, grad_scale)]] = True
        kinks = int(k.kink.sum())
    wrong = bad & ~excused
    if fd_projected == fd_projected:
        fd_rel = fd_projected if fd_rel != fd_rel else max(fd_rel, fd_projected)
    if fd_rel > fd_tol and sample is not None and (why := _rule_is_the_derivative(hand, bad, sample, k, fd_tol, grad_scale)):
        return row("convention", why, fd_rel, kinks)
    if fd_rel > fd_tol:
        return row("references disagree", f"autodiff and finite differences differ by {fd_rel:.1e} (tolerance {fd_tol:g}) "
                                          "at smooth entries or along random directions: the forward's autodiff is not its "
                                          "derivative", fd_rel, kinks)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[np.argmax(diff.reshape(-1)[wrong])])
        where = tuple(int(v) for v in np.unravel_index(i, auto.shape))
        detail = f"hand {hand.reshape(-1)[i]:.6g} vs autodiff {auto.reshape(-1)[i]:.6g} at {where}"
        if at_kink[i]:
            detail += f", a kink, but outside the one-sided slopes [{low[i]:.6g}, {high[i]:.6g}]"
        return row("backward wrong", detail, fd_rel, kinks)
    if jit_rel > tol:
        return row("eager vs jit", f"the backward gives other values under jax.jit (rel. error {jit_rel:.1e}): "
                                   "it reads Python state or concrete values", fd_rel, kinks)
    if convention:
        return row("convention", convention, fd_rel, kinks)
    return row("kink" if kinks else "ok", f"{kinks} probed entries sit on kinks" if kinks else "", fd_rel, kinks)


def fd_accepts(values: np.ndarray, sample: FDSample, k: KinkAnalysis, fd_tol: float, scale: float) -> np.ndarray:
    """Per entry of `sample` (aligned with `values`): whether the finite differences accept the value as the
    derivative there. At a kink, between the one-sided quotients (a subgradient); elsewhere, within fd_tol
    (relative to `scale`) of the central quotient, give or take the quotients' own resolution (their rounding,
    and their truncation: the central quotients at h and h / 4 differ by about it). The one judgement of a
    value by the finite differences: the kink excuse, the differentiation conventions, the rule that is right
    where autodiff of its primal is not."""
    fwd, bwd, fwd2, bwd2 = sample.slopes
    rounding = ROUNDING_UNITS * SMALL_STEP * sample.noise
    margin = fd_tol * scale + rounding
    resolution = np.abs((fwd + bwd) / 2 - (fwd2 + bwd2) / 2) + rounding
    return np.where(k.kink, (values >= k.low - margin) & (values <= k.high + margin),
                    np.abs(values - k.central) <= margin + resolution)


def _rule_is_the_derivative(hand: np.ndarray, bad: np.ndarray, sample: FDSample, k: KinkAnalysis | None, fd_tol: float,
                            grad_scale: float) -> str:
    """Autodiff of the primal is not its derivative here (the finite differences say otherwise at smooth
    entries: a formula with a kink that cancels, like logaddexp's max + log1p(exp(-|d|)) at a tie, where
    its autodiff reads 0 and the derivative is 1/2), and the rule is: the finite differences accept it at
    every probed entry (`fd_accepts`), and every entry where it differs from autodiff was probed. Then the
    detail of a `convention` row; else ''."""
    if k is None or not np.all(np.isin(np.flatnonzero(bad), sample.index)):
        return ""
    scale = max(grad_scale, float(np.max(np.abs(k.central), initial=0.0)))
    if not np.all(fd_accepts(hand.reshape(-1)[sample.index].astype(np.float64), sample, k, fd_tol, scale)):
        return ""
    return ("autodiff of the primal is not its derivative at this point (its finite differences say otherwise), and the "
            "rule is: it agrees with the finite differences at every entry where it differs from autodiff (a formula "
            "whose autodiff fails here, fixed by the rule)")


def _convention(hand: np.ndarray, auto: np.ndarray, sample: FDSample, fd_tol: float, floor: float) -> tuple[np.ndarray, str]:
    """A differentiation convention: autodiff of the primal is NaN or infinite at some entries (a norm at 0,
    sinc at 0, x log y at x = 0) where the rule is finite. If the function is finite around each such
    entry (its finite differences are), the finite differences judge the rule there (`fd_accepts`: the
    central quotient where smooth, between the one-sided quotients at a kink). Returns (autodiff with
    those entries replaced by the rule's, the row's detail) when every one is accepted; (autodiff with
    them replaced by the central quotient, "backward wrong: why") when one is not; (auto, "") when the finite differences cannot judge
    (an entry not probed, or the function not finite next to the point: then `non-finite` stands)."""
    flat_auto, flat_hand = auto.reshape(-1), hand.reshape(-1).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(flat_auto))
    position = {int(i): j for j, i in enumerate(sample.index)}
    if any(int(i) not in position for i in bad):
        return auto, ""
    columns = np.array([position[int(i)] for i in bad])
    there = FDSample(sample.index[columns], sample.slopes[:, columns], sample.noise[columns])
    if not np.all(np.isfinite(there.slopes)):
        return auto, ""
    finite = flat_auto[np.isfinite(flat_auto)]
    scale = max(float(np.max(np.abs(finite), initial=0.0)), float(np.max(np.abs(there.slopes), initial=0.0)), floor)
    k = analyse_kinks(there, scale)
    outside = ~fd_accepts(flat_hand[bad], there, k, fd_tol, scale)
    first = tuple(int(v) for v in np.unravel_index(bad[0], auto.shape))
    fixed = flat_auto.copy()
    if outside.any():  # judged against the finite differences' central quotient there
        j = int(np.flatnonzero(outside)[0])
        where = tuple(int(v) for v in np.unravel_index(bad[j], auto.shape))
        fixed[bad] = k.central
        return fixed.reshape(auto.shape), (
            f"backward wrong: autodiff is {flat_auto[bad[j]]} at {where}, where the function is finite; the rule's "
            f"{flat_hand[bad[j]]:.6g} there is not what the finite differences give ("
            + (f"one-sided slopes [{k.low[j]:.6g}, {k.high[j]:.6g}])" if k.kink[j] else f"{k.central[j]:.6g})"))
    fixed[bad] = flat_hand[bad]
    return fixed.reshape(auto.shape), (f"autodiff of the primal is {flat_auto[bad[0]]} at {len(bad)} entr"
                                       f"{'y' if len(bad) == 1 else 'ies'} (first {first}) where the function is finite: "
                                       "the rule's values there are what the finite differences give (a valid "
                                       "differentiation convention)")


# ----- kinks across several entries at once ------------------------------------------------------------
#: random directions over the kinked entries of one tensor, besides the all-ones direction
JOINT_DIRECTIONS = 6
#: the joint test looks at most at this many of a tensor's kinked entries (two evaluations of f each)
JOINT_ENTRIES = 64


def joint_kink_violation(f: Callable[[Any], Array], point: Any, leaf: int, hand: np.ndarray, auto: np.ndarray,
                         tol: float, floor: float, fd_tol: float, key: Array) -> str:
    """'' when the rule's values at the kinked entries of the `leaf`-th leaf of `point` (those where hand !=
    autodiff, each already between its own one-sided slopes) also hold together; else why not.

    At a tie (max, max-pooling, sort, a norm at 0) each entry's slopes are not enough: the full upstream
    gradient given to *every* tied entry passes entry by entry, yet the tied entries' gradients then sum
    to k times the slope. Where f is convex across the kinked entries, a subgradient g satisfies, for every
    direction v, -f'(x; -v) <= <g, v> <= f'(x; v) (the reverse where f is concave). The entries are grouped by
    the curvature their own one-sided slopes show (convex: the forward slope above the backward one;
    concave: below), so that a sum of separate kinks of both kinds (ReLUs under upstream gradients of
    both signs) is never judged as one; within each group of two or more, the test runs along the
    all-ones direction and JOINT_DIRECTIONS random ones, the one-sided directional derivatives taken as
    float64 quotients at a small step."""
    hand64, auto64 = np.asarray(hand, np.float64), np.asarray(auto, np.float64)
    scale = max(float(np.max(np.abs(auto64), initial=0.0)), float(np.max(np.abs(hand64), initial=0.0)), floor)
    entries = np.flatnonzero(np.abs(hand64 - auto64).reshape(-1) > tol * scale)[:JOINT_ENTRIES]
    if entries.size < 2:
        return ""
    leaves, treedef = jax.tree_util.tree_flatten(point)
    x = np.asarray(leaves[leaf], np.float64)
    step = FD_STEP / SMALL_STEP * max(1.0, float(np.max(np.abs(x.reshape(-1)[entries]), initial=0.0)))
    f0 = float(f(point))

    def one_sided(v: np.ndarray) -> tuple[float, float, float]:
        """(f'(x; v), -f'(x; -v), the quotients' rounding level) for v over the entries."""
        full = np.zeros(x.size)
        full[entries] = v
        plus, minus = (float(f(jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x + s * step * full.reshape(x.shape))
                                                                      if j == leaf else p for j, p in enumerate(leaves)])))
                       for s in (1.0, -1.0))
        noise = ROUNDING_UNITS * float(jnp.finfo(jnp.float64).eps) * max(abs(plus), abs(minus), abs(f0)) / step
        return (plus - f0) / step, (f0 - minus) / step, noise

    g = hand64.reshape(-1)[entries]
    curvature = np.array([np.subtract(*one_sided(np.eye(entries.size)[k])[:2]) for k in range(entries.size)])
    bend = KINK_TOL * scale
    rng = numpy_rng(key)
    for sign, members in ((1.0, np.flatnonzero(curvature > bend)), (-1.0, np.flatnonzero(curvature < -bend))):
        if members.size < 2:
            continue
        for n, v_group in enumerate([np.ones(members.size)] + [rng.standard_normal(members.size) for _ in range(JOINT_DIRECTIONS)]):
            v = np.zeros(entries.size)
            v[members] = v_group
            up, down, noise = one_sided(v)
            margin = fd_tol * scale * float(np.sum(np.abs(v))) + noise
            along = float(g @ v)
            low, high = (down, up) if sign > 0 else (up, down)
            if along > high + margin or along < low - margin:
                first = tuple(int(i) for i in np.unravel_index(entries[members[0]], x.shape))
                return (f"at the kink, the rule's values at {members.size} entries (first {first}) are each between their own "
                        f"one-sided slopes, but not together: along {'all ones' if n == 0 else 'a random direction'} over "
                        f"them <g, v> = {along:.6g}, outside the one-sided directional derivatives [{low:.6g}, {high:.6g}] "
                        "(the gradients of tied entries must share the slope, not each take all of it)")
    return ""
