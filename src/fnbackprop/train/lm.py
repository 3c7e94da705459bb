"""Character-level language modelling with the hand-written GPT (nanoGPT's `shakespeare_char`).

Data: a text file (Tiny Shakespeare by default), the vocabulary its sorted characters, the first 90%
for training and the last 10% for validation. A batch is `batch_size` random windows of
`block_size + 1` characters (inputs, and targets shifted by one), drawn on the device as nanoGPT's
`get_batch` draws them on the host. Training runs by iterations: `optax.adamw` (weight decay on the
matrices and embeddings only, as nanoGPT), linear warm-up then cosine decay to `min_lr`, gradients
clipped to a global norm. Iterations run `lax.scan`ned between evaluations, every random number comes
from `fold_in(key, iteration)`, so a run resumed from its checkpoint continues exactly as it would have.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np
import optax

from . import checkpoint
from .data import data_location
from ..models.gpt import GPT, MATMUL_DTYPES as GPT_MATMUL_DTYPES, gpt

Array = jax.Array
TEXT_ENV = "FNBACKPROP_TEXT"
TEXT_NAME = "tinyshakespeare/input.txt"
CHECKPOINT_NAME = "checkpoint.npz"
FINAL_EVAL_BATCHES = 200
MATMUL_DTYPES = ("auto", *filter(None, GPT_MATMUL_DTYPES))  # LMConfig.matmul_dtype's values: auto, or one the GPT takes


# ----- data --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CharData:
    """A text as integer tokens: `train` and `val` (int32 arrays) and the vocabulary `chars`."""

    train: np.ndarray
    val: np.ndarray
    chars: str

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - set(lookup))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return np.array([lookup[c] for c in text], np.int32)

    def decode(self, tokens: Any) -> str:
        return "".join(self.chars[int(t)] for t in np.asarray(tokens).reshape(-1))


def find_text(path: str | os.PathLike | None = None) -> Path:
    """`path`, else $FNBACKPROP_TEXT, else ../shared/data (`data.data_location`): a text file, or a folder
    holding tinyshakespeare/input.txt or input.txt."""
    where, said = data_location(path, TEXT_ENV)
    for candidate in (where, where / TEXT_NAME, where / "input.txt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no text found at {said}: give a text file with --data-path "
                            f"or ${TEXT_ENV} (Tiny Shakespeare is tinyshakespeare/input.txt in ../shared/data)")


def load_chars(path: str | os.PathLike | None = None, train_fraction: float = 0.9) -> CharData:
    """The text at `path` (see `find_text`), split: the first `train_fraction` for training, the rest validation."""
    text = find_text(path).read_text(encoding="utf-8")
    if len(set(text)) < 2 or len(text) < 100:
        raise ValueError(f"the text has {len(text)} characters and {len(set(text))} distinct ones: too little to model")
    chars = "".join(sorted(set(text)))
    data = CharData(np.zeros(0, np.int32), np.zeros(0, np.int32), chars)
    tokens = data.encode(text)
    n = int(train_fraction * len(tokens))
    return replace(data, train=tokens[:n], val=tokens[n:])


def window_starts(key: Array, n_tokens: Any, batch_size: int, block_size: int) -> Array:
    """(batch_size, 1) uniform random starts i in [0, n_tokens - block_size) (`n_tokens` may be traced)."""
    return jax.random.randint(key, (batch_size, 1), 0, n_tokens - block_size)


def windows(tokens: Array, starts: Array, block_size: int) -> tuple[Array, Array]:
    """x = tokens[i : i + block_size] for each start i (rows of `starts`), y = x shifted by one."""
    positions = starts + jnp.arange(block_size)
    return tokens[positions], tokens[positions + 1]


def get_batch(key: Array, tokens: Array, batch_size: int, block_size: int, n_tokens: Any = None) -> tuple[Array, Array]:
    """batch_size windows at uniform random starts i in [0, n - block_size): x = tokens[i : i + block], y = x shifted by
    one; n is len(tokens), or `n_tokens` (which may be traced) when only the first n_tokens count (padded tokens)."""
    n = tokens.shape[0] if n_tokens is None else n_tokens
    return windows(tokens, window_starts(key, n, batch_size, block_size), block_size)


def iteration_draws(key: Array, it: Any, n_tokens: int, config: "LMConfig") -> tuple[Array, Array]:
    """Iteration `it`'s random numbers: its batch's window starts (`get_batch` with the first key of
    split(fold_in(key, it))) and its dropout key (the second). A training chunk draws all of its iterations' at once
    (vmapped: the same numbers, and the threefry hash, which XLA's CPU backend runs as a loop of small kernels,
    run once a chunk instead of five times an iteration)."""
    k_batch, k_drop = jax.random.split(jax.random.fold_in(key, it))
    return window_starts(k_batch, n_tokens, config.batch_size, config.block_size), k_drop


# ----- configuration -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LMConfig:
    """Every hyper-parameter of a run (nanoGPT's names). The defaults are the CPU preset."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    bias: bool = False
    dropout: float = 0.0
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 0
    grad_source: str = "hand"
    attention_block: int | None = None  # the hand-written backward's memory savers (`fnbackprop.models.gpt.GPT`)
    head_chunk: int | None = None
    recompute_gelu: bool = False
    recompute_norm: bool = False
    matmul_dtype: str = "auto"  # the linear maps' products: float32, bfloat16 (mixed precision) or auto (`matmul_dtype`)

    def __post_init__(self) -> None:
        positive = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "eval_interval", "eval_iters",
                    "lr_decay_iters")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.grad_source not in ("hand", "autodiff"):
            raise ValueError(f"grad_source must be hand or autodiff, got {self.grad_source!r}")
        if not (0 <= self.min_lr <= self.lr) or self.lr <= 0:
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_iters < 0 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise ValueError("warmup_iters and weight_decay must be >= 0 and grad_clip > 0")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype must be one of {', '.join(MATMUL_DTYPES)}, got {self.matmul_dtype!r}")


PRESETS = {
    # nanoGPT's README, "I only have a macbook": the CPU configuration
    "shakespeare-char-cpu": LMConfig(),
    # nanoGPT's config/train_shakespeare_char.py: the GPU configuration
    "shakespeare-char-gpu": LMConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, batch_size=64,
                                     max_iters=5000, lr_decay_iters=5000, eval_interval=250, eval_iters=200),
}
CONFIG_FIELDS = tuple(f.name for f in fields(LMConfig))
OLDER_CHECKPOINTS = {"matmul_dtype": "float32"}  # settings a checkpoint saved before they existed was trained with
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that multiply bfloat16 natively


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this machine's CPU multiplies bfloat16 natively: a flags line of /proc/cpuinfo (or of the text
    given) naming avx512_bf16 or amx_bf16. False where that cannot be read (not Linux, say)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.partition(":")[2].split()}
    return any(flag in flags for flag in BFLOAT16_FLAGS)


def matmul_dtype(config: LMConfig, backend: str | None = None) -> str:
    """The dtype the linear maps multiply in: `config.matmul_dtype`, or for "auto" bfloat16 on a CPU that
    multiplies it natively (`native_bfloat16`) and float32 elsewhere: on GPUs and TPUs XLA chooses the products'
    precision itself, and a CPU without those instructions multiplies bfloat16 no faster than float32.

    Measured at the CPU preset on 2 cores of an AMD EPYC with avx512_bf16: 25.6 against 30.7 ms a step
    (`fnbackprop bench --gpt-only`), and the validation losses of seeds 0-2 within 0.0013 of float32's
    (experiments/README.md, the GPT on Tiny Shakespeare)."""
    if config.matmul_dtype != "auto":
        return config.matmul_dtype
    on_cpu = (backend or jax.default_backend()) == "cpu"
    return "bfloat16" if on_cpu and native_bfloat16() else "float32"


def resolved(config: LMConfig) -> LMConfig:
    """`config` with "auto" settled to what this machine runs (`matmul_dtype`), as a run records it."""
    return replace(config, matmul_dtype=matmul_dtype(config))


def model_of(config: LMConfig, vocab_size: int) -> GPT:
    dtype = matmul_dtype(config)
    return gpt(vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd, config.bias, config.dropout,
               config.attention_block, config.head_chunk, config.recompute_gelu, config.recompute_norm,
               None if dtype == "float32" else dtype)


def make_optimizer(config: LMConfig) -> optax.GradientTransformation:
    """clip_by_global_norm, then AdamW under nanoGPT's linear warm-up and cosine decay to min_lr at
    lr_decay_iters (`learning_rate`); weight decay only on tensors of 2 or more axes (matrices, embeddings)."""
    schedule = learning_rate(config)
    decay_mask = lambda params: jax.tree_util.tree_map(lambda a: a.ndim >= 2, params)  # noqa: E731
    return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                       optax.adamw(schedule, b1=config.beta1, b2=config.beta2, weight_decay=config.weight_decay, mask=decay_mask))


def learning_rate(config: LMConfig) -> optax.Schedule:
    """nanoGPT's get_lr at update `it` (counted from 0): lr (it + 1) / (warmup_iters + 1) during the warm-up, so
    that the first update already moves, then min_lr + (lr - min_lr) (1 + cos(pi r)) / 2 with
    r = (it - warmup_iters) / (lr_decay_iters - warmup_iters) going from 0 to 1, min_lr after."""
    decay = optax.cosine_decay_schedule(config.lr, max(config.lr_decay_iters - config.warmup_iters, 1), alpha=config.min_lr / config.lr)
    if config.warmup_iters == 0:
        return decay
    first = config.lr / (config.warmup_iters + 1)  # linear in it, reaching lr at it = warmup_iters
    return optax.join_schedules([optax.linear_schedule(first, config.lr, config.warmup_iters), decay], [config.warmup_iters])


# ----- the compiled pieces -----------------------------------------------------------------------------
_COMPILED: dict = {}  # compiled chunks and estimates, reused by later runs of the same shapes in this process


def compiled(key: tuple, build: Callable[[], Any]) -> Any:
    """`build()` (an ahead-of-time compilation) once per `key`."""
    if key not in _COMPILED:
        _COMPILED[key] = build()
    return _COMPILED[key]


def initial_params(model: GPT, key: Array) -> Any:
    """model.init(key) as one compiled program (not one per eager operation), compiled once per model."""
    return compiled(("init", model), lambda: jax.jit(model.init))(key)


def step_settings(config: LMConfig) -> LMConfig:
    """The part of a configuration that a compiled training chunk depends on (not the seed, nor the run's
    length, nor how often it is evaluated)."""
    return replace(config, seed=0, max_iters=1, eval_interval=1, eval_iters=1)


def make_train_chunk(model: GPT, optimizer: optax.GradientTransformation, config: LMConfig, split: Any = None) -> jax.stages.Wrapped:
    """(params, opt_state, train_tokens, key, first_iteration, n) -> (params, opt_state, losses): n iterations, scanned.
    With `split` (a `fnbackprop.parallel.TensorParallel`), the parameters and the optimizer's state are in its
    sharded layout and the gradients are its (by hand, or jax.grad through the sharded forward)."""
    if split is not None:
        grad_fn = split.value_and_grad if config.grad_source == "hand" else split.autodiff_value_and_grad
    else:
        grad_fn = model.value_and_grad if config.grad_source == "hand" else jax.value_and_grad(model.loss)

    def one(carry, drawn):
        params, opt_state, tokens = carry
        starts, k_drop = drawn
        x, y = windows(tokens, starts, config.block_size)
        loss, grads = grad_fn(params, x, y, k_drop if config.dropout > 0 else None)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, tokens), loss

    def chunk(params, opt_state, tokens, key, first, n):
        drawn = jax.vmap(lambda it: iteration_draws(key, it, tokens.shape[0], config))(first + jnp.arange(n))
        (params, opt_state, _), losses = jax.lax.scan(one, (params, opt_state, tokens), drawn)
        return params, opt_state, losses

    return jax.jit(chunk, static_argnums=5, donate_argnums=(0, 1))


def make_estimate(model: GPT, config: LMConfig, most_batches: int, split: Any = None, group: int = 1) -> jax.stages.Wrapped:
    """(params, tokens, n_tokens, key, n_batches) -> the mean loss over n_batches <= most_batches random batches of
    tokens[:n_tokens], without dropout (by the sharded forward with `split`). One program serves both splits (the
    shorter padded to the longer's length) and every count of batches (the loop's length is an argument): batch i
    is drawn with split(key, most_batches)[i], which is split(key, n_batches)[i] (threefry's split is
    partitionable: the i-th key does not depend on how many are drawn).

    The forward runs on `group` batches at once (n_batches must be a multiple of it): the mean of their token
    losses is the mean of the batches' means, as they are of one size, and larger products run faster
    (`estimate_group`)."""
    loss = model.loss if split is None else split.loss

    def estimate(params, tokens, n_tokens, key, n_batches):
        keys = jax.random.split(key, most_batches)

        def one(i, total):
            group_keys = jax.lax.dynamic_slice_in_dim(keys, i * group, group)
            x, y = jax.vmap(lambda k: get_batch(k, tokens, config.batch_size, config.block_size, n_tokens))(group_keys)
            return total + loss(params, x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]))

        return jax.lax.fori_loop(0, n_batches // group, one, jnp.zeros((), jnp.float32)) / (n_batches // group)

    return jax.jit(estimate)


GROUP_TOKENS = 3072  # the most tokens an estimate's forward takes at once (`estimate_group`)


def estimate_group(config: LMConfig, final_batches: int) -> int:
    """How many batches an estimate's forward takes at once: the largest divisor of both eval_iters and final_batches
    whose batches hold at most GROUP_TOKENS tokens (1 when one batch holds more). Measured at the CPU preset on
    2 cores: 4 batches (48 sequences) at once, 20 batches in 117 ms against 151 ms one at a time, 200 in 1.14 against
    1.40 s; 10 batches at once were slower (the attention probabilities fall out of cache)."""
    both = math.gcd(config.eval_iters, final_batches)
    tokens = config.batch_size * config.block_size
    return max(g for g in range(1, both + 1) if both % g == 0 and (g == 1 or g * tokens <= GROUP_TOKENS))


# ----- training ----------------------------------------------------------------------------------------
def evaluation_stops(config: LMConfig, start: int = 0) -> list[int]:
    """The iterations after `start` at which `train_lm` evaluates and saves: every eval_interval, and max_iters
    (it also evaluates once at iteration 0, before the first)."""
    return sorted(s for s in {*range(config.eval_interval, config.max_iters, config.eval_interval), config.max_iters} if s > start)


@dataclass
class LMResult:
    params: Any
    history: list
    final_val_loss: float
    train_seconds: float
    config: LMConfig
    first_iteration_at: float = float("nan")  # time.time() when the first iteration started


def train_lm(config: LMConfig, data: CharData, out_dir: str | os.PathLike | None = None, resume: bool = False,
             on_eval: Callable[[dict], None] | None = None, final_batches: int = FINAL_EVAL_BATCHES,
             check_meanwhile: Callable[[], None] | None = None, mesh: Any = None, sequence_parallel: bool = False) -> LMResult:
    """Train `config` on `data`: evaluations (eval_iters batches of each split) every eval_interval iterations
    and at the end, a checkpoint at each, then the final validation loss on `final_batches` batches.

    `train_seconds` is the wall time of the training loop, evaluations and checkpoints included, compilation
    excluded (the first chunk is compiled before the clock starts). With `resume`, training continues from
    the checkpoint in `out_dir` (which must be of the same configuration but for max_iters). `check_meanwhile()`
    runs once the first chunk of iterations is on its way, and before anything of it is recorded or saved (it may
    raise to stop the run: the command line waits there for its gradient check, which runs meanwhile, so the
    check is off the path to the first iteration); iteration 0's evaluation follows it there, on a copy of the
    initial parameters, and counts in `train_seconds`. `first_iteration_at` (time.time()) is when that iteration
    started.

    With `mesh` (axes data x model, `fnbackprop.parallel.make_mesh(data=, model=)`), the GPT is split over it
    (`fnbackprop.parallel.tensor_parallel`, with `sequence_parallel` if asked): parameters and optimizer state
    live in the sharded layout, and checkpoints are saved gathered (one device's layout), so a run resumes
    on any mesh, or on none. The returned params are gathered."""
    if len(data.train) <= config.block_size + 1 or len(data.val) <= config.block_size + 1:
        raise ValueError(f"the text is too short for windows of {config.block_size + 1} characters in both splits")
    config = resolved(config)
    model = model_of(config, data.vocab_size)
    optimizer = make_optimizer(config)
    key = jax.random.PRNGKey(config.seed)
    k_init, k_train, k_eval = jax.random.split(key, 3)
    split = None
    if mesh is not None:
        from ..parallel.tensor import tensor_parallel

        split = tensor_parallel(model, mesh, sequence_parallel)
        split.check_shape(config.batch_size, config.block_size)
    params = initial_params(model, k_init)
    opt_state = optimizer.init(params)
    history, start = [], 0
    out = Path(out_dir) if out_dir is not None else None
    if resume:
        (params, opt_state), meta = checkpoint.resume(out, CHECKPOINT_NAME, (params, opt_state), asdict(config), "max_iters",
                                                      config.max_iters, "--max-iters", OLDER_CHECKPOINTS)
        history, start = meta["history"], meta["iteration"]
    if split is not None:
        params, opt_state = split.shard((params, opt_state))
    gathered = (lambda tree: tree) if split is None else split.gather
    layout = None if split is None else (split.dp, split.tp, sequence_parallel)
    train_tokens, val_tokens = jnp.asarray(data.train), jnp.asarray(data.val)
    length = max(len(data.train), len(data.val))
    padded = {name: jnp.pad(tokens, (0, length - tokens.shape[0])) for name, tokens in (("train", train_tokens), ("val", val_tokens))}
    most, group = max(config.eval_iters, final_batches), estimate_group(config, final_batches)
    estimate = compiled(("estimate", model, config.batch_size, config.block_size, most, group, length, layout),
                        lambda: make_estimate(model, config, most, split, group).lower(params, padded["train"], len(data.train), k_eval,
                                                                               config.eval_iters).compile())

    def loss_of(params: Any, name: str, key: Array, n_batches: int) -> float:
        return float(estimate(params, padded[name], len(getattr(data, name)), key, n_batches))

    stops = evaluation_stops(config, start)
    lr_at = jax.jit(learning_rate(config))  # one program, not one per operation of the schedule

    def evaluate(params, it: int, seconds: float, losses: Array | None) -> dict:
        k = jax.random.fold_in(k_eval, it)
        record = {"iteration": it, "train_loss": loss_of(params, "train", k, config.eval_iters),
                  "val_loss": loss_of(params, "val", jax.random.fold_in(k, 1), config.eval_iters),
                  "lr": float(lr_at(it)), "seconds": seconds}
        if losses is not None:
            record["batch_loss"] = float(losses[-1])
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(f"the training loss became {record['train_loss']} at iteration {it}")
        return record

    sizes = {b - a for a, b in zip([start, *stops], stops)}  # compile every chunk length before the clock starts
    def chunk_of(n: int) -> Callable:
        return compiled(("chunk", model, step_settings(config), n, train_tokens.shape, layout),
                        lambda: make_train_chunk(model, optimizer, config, split).lower(params, opt_state, train_tokens, k_train, 0,
                                                                                        n).compile())

    chunks = {n: chunk_of(n) for n in sizes}
    elapsed = history[-1]["seconds"] if history else 0.0
    # iteration 0's evaluation runs on a copy of the initial parameters once the first chunk, which takes them
    # over (donated), is on its way: nothing waits for it before the first iteration
    initial = None if history else compiled(("copy",), lambda: jax.jit(lambda tree: jax.tree_util.tree_map(jnp.copy, tree)))(params)
    first_iteration_at = time.time()
    began, it = time.perf_counter() - elapsed, start
    for number, stop in enumerate(stops):
        params, opt_state, losses = chunks[stop - it](params, opt_state, train_tokens, k_train, it)
        if number == 0 and check_meanwhile is not None:  # while the first chunk runs
            check_meanwhile()
        if number == 0 and initial is not None:
            history.append(evaluate(initial, 0, 0.0, None))
        it = stop
        losses.block_until_ready()  # the chunk's end, not its dispatch, is when its iterations were done
        record = evaluate(params, it, time.perf_counter() - began, losses)
        history.append(record)
        if out is not None:
            checkpoint.save(out / CHECKPOINT_NAME, gathered((params, opt_state)), {"iteration": it, "history": history,
                                                                           "config": asdict(config), "chars": data.chars})
        if on_eval is not None:
            on_eval(record)
    train_seconds = time.perf_counter() - began
    final = loss_of(params, "val", jax.random.fold_in(k_eval, 2**31 - 1), final_batches)
    return LMResult(gathered(params), history, final, train_seconds, config, first_iteration_at)


def write_results(result: LMResult, data: CharData, out_dir: str | os.PathLike, extra: dict | None = None) -> Path:
    """results.json (configuration, history, final validation loss, wall time) and loss.png."""
    from .plot import plot_lm_history

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_params = model_of(result.config, data.vocab_size).n_params(result.params)
    summary = {"config": asdict(result.config), "vocab_size": data.vocab_size, "n_params": int(n_params),
               "final_val_loss": result.final_val_loss, "final_val_batches": FINAL_EVAL_BATCHES,
               "train_seconds": result.train_seconds,
               "ms_per_iteration": 1e3 * result.train_seconds / result.history[-1]["iteration"],
               "history": result.history, **(extra or {})}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    plot_lm_history(result.history, out / "loss.png",
                    f"GPT {result.config.n_layer}x{result.config.n_embd}, {result.config.grad_source} gradients: "
                    f"final val loss {result.final_val_loss:.4f}")
    return out / "results.json"


# ----- sampling ----------------------------------------------------------------------------------------
def generate(model: GPT, params: Any, prompt: ArrayLike, n_tokens: int, key: Array, temperature: float = 0.8,
             top_k: int | None = 200) -> np.ndarray:
    """prompt (T0,) followed by n_tokens sampled tokens (nanoGPT's `generate`: the last block_size tokens as
    context, logits / temperature, only the top_k kept). One compiled step on a fixed window of block_size
    tokens: before the window fills, the logits are read at the last real position (causality makes the
    padding after it irrelevant); after, the window slides by one."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    B, V = model.block_size, model.vocab_size
    k = V if top_k is None else max(1, min(int(top_k), V))
    prompt = jnp.asarray(prompt, jnp.int32).reshape(-1)
    if prompt.shape[0] == 0:
        raise ValueError("the prompt must hold at least one character")

    @jax.jit
    def step(window, length, key):
        logits = model.apply(params, window[None])[0, jnp.minimum(length, B) - 1] / temperature
        kth = jax.lax.top_k(logits, k)[0][-1]
        token = jax.random.categorical(key, jnp.where(logits < kth, -jnp.inf, logits))
        full = length >= B
        shifted = jnp.where(full, jnp.roll(window, -1).at[-1].set(token), window.at[jnp.minimum(length, B - 1)].set(token))
        return shifted, token

    tail = prompt[-B:]
    window = jnp.zeros((B,), jnp.int32).at[: tail.shape[0]].set(tail)
    length = int(tail.shape[0])
    out = []
    for i in range(n_tokens):
        window, token = step(window, jnp.int32(length), jax.random.fold_in(key, i))
        out.append(int(token))
        length += 1
    return np.concatenate([np.asarray(prompt), np.array(out, np.int32)])


class NotALanguageModel(ValueError):
    """A run folder whose checkpoint is not a language model's (an MLP's, say)."""


def load_run(out_dir: str | os.PathLike) -> tuple[GPT, Any, CharData, LMConfig]:
    """The model, parameters and vocabulary saved by a training run in `out_dir`; FileNotFoundError when it
    holds no checkpoint, NotALanguageModel when its checkpoint is not a GPT's."""
    out = Path(out_dir)
    if not (out / CHECKPOINT_NAME).is_file():
        raise FileNotFoundError(f"no {CHECKPOINT_NAME} in {out}: give the folder of a run of `fnbackprop train --model gpt|rnn|lstm|gru`")
    meta = checkpoint.read_meta(out / CHECKPOINT_NAME)
    if "chars" not in meta:
        model = (meta.get("config") or {}).get("dataset", "a network")
        raise NotALanguageModel(f"{out} holds a run of {model}, not a language model: sample needs a run of "
                                "`fnbackprop train --model gpt|rnn|lstm|gru`")
    config = LMConfig(**{k: v for k, v in {**OLDER_CHECKPOINTS, **meta["config"]}.items() if k in CONFIG_FIELDS})
    chars = meta["chars"]
    model = model_of(config, len(chars))
    params = model.init(jax.random.PRNGKey(0))
    (params, _), _ = checkpoint.load(out / CHECKPOINT_NAME, (params, make_optimizer(config).init(params)))
    return model, params, CharData(np.zeros(0, np.int32), np.zeros(0, np.int32), chars), config
