"""Start an exercise, and grade a student's file: the forward confirmed, then the backward checked by
`check_layer` and each failing tensor's diagnosis put in a student's words, never the solution."""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import re
import types
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..layers import Layer
from ..check.numerics import leaf_rel_err
from ..check.verdicts import TensorRow
from ..check.verify import check_layer, move_off_special_values
from .catalogue import BATCH, BLOCK_SIZE, EXERCISES, VOCAB, Exercise

BEGIN, END = "    # BEGIN SOLUTION\n", "    # END SOLUTION\n"
#: the student's forward must give the reference's output to this relative error (float64; the two
#: forwards differ only in rounding, e.g. a max subtracted before exp, far below 1e-9)
FORWARD_TOL = 1e-9
HINTS_FILE = ".fnbackprop-hints.json"


class ExerciseError(Exception):
    """A mistake in how the exercise was called or in the file's setup (not in its backward): one line for the student."""


class Grade(NamedTuple):
    passed: bool
    lines: list


# ----- the files ----------------------------------------------------------------------------------------
def solution_source(name: str) -> str:
    """The reference solution of exercise `name`, as text (`fnbackprop/exercises/solutions/NAME.py`)."""
    exercise_named(name)
    return (importlib.resources.files("fnbackprop.exercises.solutions") / f"{name}.py").read_text()


def template_source(name: str) -> str:
    """The solution with its backward's body replaced by the student's task."""
    source = solution_source(name)
    start, end = source.index(BEGIN), source.index(END) + len(END)
    task = (f"    # Your derivation here: compute what the return line below needs, then run\n"
            f"    #     fnbackprop exercise check {name}.py        (--hint for a hint)\n"
            f"    raise NotImplementedError(\"backward of the {name} exercise: not written yet\")\n")
    return source[:start] + task + source[end:]


def exercise_named(name: str) -> Exercise:
    if name not in EXERCISES:
        raise ExerciseError(f"no exercise {name!r}; `fnbackprop exercise list` shows them: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def start(name: str, directory: str | Path = ".", force: bool = False) -> Path:
    """Write DIRECTORY/NAME.py, the exercise's template; refuse to overwrite a file unless `force`."""
    exercise_named(name)
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise ExerciseError(f"{folder} is a file, not a folder")
    path = folder / f"{name}.py"
    if path.exists() and not force:
        raise ExerciseError(f"{path} exists already (your work?); --force overwrites it")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(template_source(name))
    return path


def module_from_source(source: str, name: str = "exercise") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 (the package's own solution, edited by a Slip)
    return module


def load_student_file(path: str | Path) -> types.ModuleType:
    """Import the student's file; every way it can fail to load becomes one ExerciseError line."""
    path = Path(path)
    if not path.is_file():
        raise ExerciseError(f"{path}: no such file (`fnbackprop exercise start NAME` writes one)")
    spec = importlib.util.spec_from_file_location(f"fnbackprop_exercise_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ExerciseError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ExerciseError(f"{path}, line {error.lineno}: syntax error: {error.msg}") from None
    except Exception as error:  # noqa: BLE001 (the student's module-level code: any failure is theirs to read)
        raise ExerciseError(f"{path} raised when imported: {type(error).__name__}: {error}") from None
    name = getattr(module, "EXERCISE", None)
    if not isinstance(name, str):
        raise ExerciseError(f"{path} has no EXERCISE = \"NAME\" line: which exercise is it?")
    exercise_named(name)
    missing = [f for f in ("init", "forward", "backward") if not callable(getattr(module, f, None))]
    if missing:
        raise ExerciseError(f"{path} defines no {', '.join(missing)}: the exercise needs init, forward and backward")
    return module


# ----- the checked function ---------------------------------------------------------------------------------
def _extra(exercise: Exercise, key: jax.Array) -> Any:
    """The forward's extra argument: the targets of a cost, the dropout key, the tokens; None for a layer."""
    if exercise.inputs == "cost":
        n = exercise.in_shape[-1]
        return jax.nn.one_hot(jax.random.randint(key, (BATCH,), 0, n), n, dtype=jnp.float64)
    if exercise.inputs == "tokens":
        return jax.random.randint(key, (BATCH, BLOCK_SIZE), 0, VOCAB)  # 32 tokens of 5: every batch repeats some
    return key if exercise.inputs == "stochastic" else None


def as_layer(exercise: Exercise, module: Any, extra: Any) -> Layer:
    """The file's init/forward/backward as a `Layer` for `check_layer`: a cost's targets and an embedding's
    tokens are fixed (the checked input is then a placeholder whose gradient is 0)."""
    if exercise.inputs == "cost":
        return Layer(module.init, lambda p, x: module.forward(p, x, extra), module.backward, exercise.name)
    if exercise.inputs == "tokens":
        def backward(p: Any, cache: Any, dy: Any) -> tuple:
            dparams, _ = module.backward(p, cache, dy)
            return dparams, jnp.zeros((BATCH, *exercise.in_shape), dy.dtype)

        return Layer(module.init, lambda p, x: module.forward(p, extra), backward, exercise.name)
    return Layer(module.init, module.forward, module.backward, exercise.name, stochastic=exercise.inputs == "stochastic")


def _slip_gradients(exercise: Exercise, extra: Any) -> Callable[[Any, Any, Any], list]:
    """For check_layer(slips=...): each slip's backward, the solution edited, at the check's point."""
    solution = solution_source(exercise.name)

    def gradients(params: Any, x: Any, dy: Any) -> list:
        out = []
        for slip in exercise.slips:
            try:
                layer = as_layer(exercise, module_from_source(solution.replace(slip.old, slip.new, 1), exercise.name), extra)
                _, cache = layer.forward(params, x, extra) if layer.stochastic else layer.forward(params, x)
                out.append((slip.kind, slip.words, layer.backward(params, cache, dy)))
            except Exception:  # noqa: BLE001,S112 (an aid to the diagnosis only: a slip that cannot run at this point names nothing)
                continue
        return out

    return gradients


# ----- the forward ----------------------------------------------------------------------------------------
def _shapes(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda leaf: tuple(np.shape(leaf)), tree)


def confirm_forward(exercise: Exercise, module: Any, key: jax.Array, extra: Any) -> str:
    """'' when the file's init gives the exercise's parameter shapes and its forward the reference's
    output; else what differs, in one sentence."""
    k_init, k_x, k_move = jax.random.split(key, 3)
    reference = module_from_source(solution_source(exercise.name), exercise.name)
    x = jax.random.normal(k_x, (BATCH, *exercise.in_shape), jnp.float64)
    try:
        params = module.init(k_init, exercise.in_shape)
    except Exception as error:  # noqa: BLE001
        return f"your init raised {type(error).__name__}: {error}"
    expected = reference.init(k_init, exercise.in_shape)
    if _shapes(params) != _shapes(expected):
        return f"your init returns parameters of shapes {_shapes(params)}; the exercise's are {_shapes(expected)}"
    params = move_off_special_values(k_move, jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params))
    layer = as_layer(exercise, module, extra)
    try:
        out = layer.forward(params, x, extra) if layer.stochastic else layer.forward(params, x)
        y = out[0]
    except Exception as error:  # noqa: BLE001
        return f"your forward raised {type(error).__name__}: {error}"
    want = exercise.reference(params, x, extra)
    if np.shape(y) != np.shape(want):
        return f"your forward's output has shape {tuple(np.shape(y))}; the exercise's has {tuple(np.shape(want))}"
    err = leaf_rel_err(np.asarray(y), np.asarray(want))
    if not err <= FORWARD_TOL:
        return (f"your forward computes something else than the exercise's (relative difference {err:.2g}): the forward "
                f"is given; change only what it caches")
    return ""


# ----- the words ----------------------------------------------------------------------------------------
def tensor_name(row_name: str, exercise: Exercise) -> str:
    """A row's name as a student reads it: `params['c_attn']['W']` is `dW (c_attn)`; `dx` the exercise's
    input gradient (dz, da, dx)."""
    if row_name == "dx":
        return exercise.input_gradient
    keys = re.findall(r"\['([^']+)'\]|\[(\d+)\]", row_name)
    parts = [a or b for a, b in keys]
    if not row_name.startswith("params") or not parts:
        return row_name  # a stage that failed as a whole (the backward raised)
    return f"d{parts[-1]}" + (f" ({'.'.join(parts[:-1])})" if len(parts) > 1 else "")


def _scale_words(tensor: str, c: float, exercise: Exercise) -> str:
    m = BATCH
    if abs(c - 1 / m) < 1e-3 / m and exercise.inputs == "cost":
        return (f"your {tensor} is {m}x too small, and the batch has m = {m} examples: the cost's 1/m counted twice? "
                f"Differentiate the average once")
    if abs(c - m) < 1e-3 * m:
        return (f"your {tensor} is {m}x too large, and the batch has m = {m} examples: the cost averages over them. "
                f"Where does its 1/m belong?")
    if abs(c - 1 / m) < 1e-3 / m:
        return (f"your {tensor} is {m}x too small, and the batch has m = {m} examples: is it divided by m (or averaged) "
                f"where a sum belongs? The gradient arriving from above already carries the cost's 1/m.")
    if abs(c - 2) < 1e-6 or abs(c - 0.5) < 1e-6:
        return (f"your {tensor} is {'2x too large' if c > 1 else '2x too small'}: check the constants, the 2 from "
                f"differentiating a square, a 1/2 in front of the cost")
    size = f"{c:.3g}x too large" if abs(c) > 1 else f"{1 / c:.3g}x too small"
    return f"your {tensor} is {size} everywhere: a constant factor is off"


def _broadcast(evidence: str) -> str:
    """'summed over the axes [0, 1] the forward broadcast, the hand gradient [4, 4, 3] equals autodiff [3]' -> shapes."""
    shapes = re.findall(r"\[[\d, ]*\]", evidence)
    return f"shape {shapes[1]} where the variable has {shapes[2]}" if len(shapes) == 3 else evidence


def in_words(diagnosis: str, tensor: str, exercise: Exercise) -> str:
    """The checker's diagnosis ("scale x8: ...") as a sentence for a student, starting with its kind."""
    kind, _, evidence = diagnosis.partition(": ")
    if kind.startswith("scale x"):
        return "kind: scale. Y" + _scale_words(tensor, float(kind[len('scale x'):]), exercise)[1:]
    words = {
        "sign": f"your {tensor} has the wrong sign everywhere: check the order of each subtraction and the sign of each "
                f"derivative",
        "transpose": f"your {tensor} is transposed: a gradient has the shape of its variable; which factor of the product "
                     f"comes first, and which one is transposed?",
        "broadcast-sum": f"your {tensor} keeps axes its variable does not have ({_broadcast(evidence)}): a parameter used "
                         f"at every example (or position) gets the sum of the gradients of all its uses",
        "swapped": f"your {tensor} is what {tensor_name(evidence.rpartition(' of ')[2], exercise)} should be: two results "
                   f"exchanged, or a cache entry mixed up",
        "missing-derivative": f"your {tensor} is missing a local derivative (g'): {evidence.replace('hand', 'it')}. "
                              f"The chain rule multiplies by the derivative of every step",
        "activation-for-derivative": f"your {tensor} multiplies by the activation g(z) itself where its derivative g'(z) "
                                     f"belongs",
        "zero": f"your {tensor} is 0 everywhere; the true gradient is not: is it computed and returned?",
        "non-finite": f"your {tensor} holds NaN or infinity ({evidence}): a division by zero, or a log of 0?",
    }
    if kind in words:
        return f"kind: {kind}. {words[kind][0].upper()}{words[kind][1:]}"
    if kind == "unknown" and evidence.startswith("shape"):
        return (f"kind: shapes. Your {tensor} has {evidence.replace('expected', 'where its variable has')}: a sum over "
                f"the wrong axis, or a product in the wrong order?")
    if kind == "unknown":
        return (f"kind: not one of the typical mistakes ({evidence}). Go through your derivation one step at a time; "
                f"`--hint` gives a hint")
    return f"kind: {kind}. {evidence[0].upper()}{evidence[1:]}" if evidence else f"kind: {kind}."


def _raised_words(row: TensorRow) -> str:
    if "NotImplementedError" in row.detail:
        return "your backward is not written yet: replace its `raise NotImplementedError` with your derivation"
    shapes = re.search(r"(dot_general|matmul|Incompatible shapes|shapes? .* (do not|must) match|cannot broadcast|"
                       r"size mismatch|incompatible)", row.detail, re.IGNORECASE)
    if shapes:
        return (f"kind: shapes. Your backward raised: {row.detail.splitlines()[0].rstrip('.')}. A product's factors do not fit: "
                f"a factor transposed, or in the wrong order? Write each array's shape beside it")
    return f"your backward raised: {row.detail.splitlines()[0] if row.detail else row.verdict}"


def describe_row(row: TensorRow, exercise: Exercise) -> list[str]:
    tensor = tensor_name(row.name, exercise)
    if row.ok:
        return [f"  {tensor:<14} pass   (relative error {row.rel_err:.1e})"]
    if row.verdict in ("raised", "structure mismatch"):
        return [f"  {tensor:<14} FAIL   {_raised_words(row) if row.verdict == 'raised' else row.detail}"]
    where = f"worst entry [{', '.join(str(i) for i in row.worst_index)}]" if row.worst_index else ""
    size = f"relative error {row.rel_err:.2g}" if row.rel_err == row.rel_err and row.rel_err != float("inf") else ""
    verdict = "wrong shape" if row.verdict == "shape/dtype mismatch" else row.verdict
    lines = [f"  {tensor:<14} FAIL   " + "; ".join(s for s in (where, size, verdict) if s)]
    if row.diagnosis:
        lines.append(f"  {'':<14}        {in_words(row.diagnosis, tensor, exercise)}")
    elif row.verdict == "eager vs jit":
        lines.append(f"  {'':<14}        your backward gives other numbers under jax.jit: does it read Python state?")
    elif row.detail:
        lines.append(f"  {'':<14}        {row.detail}")
    return lines


# ----- grading --------------------------------------------------------------------------------------------
def grade(path: str | Path, seed: int = 0) -> Grade:
    """Grade the file: forward confirmed, then every gradient checked (float64, m = BATCH)."""
    module = load_student_file(path)
    exercise = EXERCISES[module.EXERCISE]
    key = jax.random.PRNGKey(seed)
    k_extra, k_forward, k_check = jax.random.split(key, 3)
    head = f"exercise {exercise.name}: {exercise.title} (m = {BATCH} examples, float64)"
    with jax.enable_x64(True):
        extra = _extra(exercise, k_extra)
        problem = confirm_forward(exercise, module, k_forward, extra)
        if problem:
            return Grade(False, [head, f"  forward        FAIL   {problem}"])
        report = check_layer(as_layer(exercise, module, extra), k_check, in_shape=exercise.in_shape, batch=BATCH,
                             layer_key=extra if exercise.inputs == "stochastic" else None,
                             slips=_slip_gradients(exercise, extra))
    rows = [r for r in report.rows if not (exercise.inputs == "tokens" and r.name == "dx")]  # the tokens' placeholder
    lines = [head, "  forward        pass   (it computes the exercise's)"]
    for row in rows:
        lines += describe_row(row, exercise)
    wrong = [r for r in rows if not r.ok]
    if any(r.verdict == "raised" for r in rows):
        lines.append(f"The backward did not run through, so nothing is graded yet. `fnbackprop exercise check "
                     f"{path} --hint` gives a hint.")
    elif wrong:
        lines.append(f"{len(wrong)} of {len(rows)} gradients wrong. `fnbackprop exercise check {path} --hint` "
                     "gives a hint.")
    else:
        lines.append(f"All {len(rows)} gradients right: your backward is the derivative of the forward.")
    return Grade(not wrong, lines)


def next_hint(path: str | Path) -> str:
    """The next hint for the file's exercise, one more per call (counted in HINTS_FILE beside the file)."""
    module = load_student_file(path)
    exercise = EXERCISES[module.EXERCISE]
    store = Path(path).parent / HINTS_FILE
    try:
        shown = json.loads(store.read_text()) if store.exists() else {}
    except (OSError, ValueError):
        shown = {}
    n = min(int(shown.get(exercise.name, 0)) + 1, len(exercise.hints))
    shown[exercise.name] = n
    try:
        store.write_text(json.dumps(shown))
    except OSError:
        pass  # a read-only folder: the hint is still shown, the count starts over next time
    more = "" if n < len(exercise.hints) else " (the last one)"
    return f"hint {n} of {len(exercise.hints)}{more}: {exercise.hints[n - 1]}"
