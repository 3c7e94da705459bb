"""Character-level language modelling with the hand-written recurrent nets (char-rnn's and min-char-rnn's).

The same text, vocabulary and split as the GPT (`train.lm`: the first 90% for training, the last 10% for
validation; char-rnn splits 95/5, we keep one split for every model so that their losses compare).
Two ways to cut the training text into batches, both truncated backpropagation through time:

* `carry` (char-rnn's): the text is cut into `batch_size` consecutive streams, each read in chunks of
  `seq_length`; the final state of one chunk is the initial state of the next (its gradient stops at
  the boundary), reset to zero at each epoch's start. An epoch is one pass over the streams.
* `random` (nanoGPT's): `batch_size` windows at random starts, each from a zero state. An epoch is the
  same number of iterations as in `carry`.

Updates: optax's RMSprop (char-rnn's: decay 0.95, eps 1e-8 outside the square root), Adam or Adagrad
(min-char-rnn's: no initial accumulator, eps 1e-8 inside it), after element-wise clipping (char-rnn's
`clamp`) or global-norm clipping, at a learning rate multiplied by `lr_decay` after each epoch from
`lr_decay_after` on (char-rnn's schedule).

Validation is deterministic and paired: every validation position is scored, in a fixed order, the
way the model was trained to read (carry: `batch_size` streams read from a zero state with the state
carried, all but fewer than `batch_size` trailing characters; random: every non-overlapping window of
`seq_length` from a zero state). The same model gives the same number every time, and two models
are scored on the same characters.
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
import numpy as np
import optax

from . import checkpoint
from .lm import CHECKPOINT_NAME, CharData, compiled, get_batch
from ..models.char_rnn import CELLS, CharRNN, char_rnn

Array = jax.Array
OPTIMIZERS = ("rmsprop", "adam", "adagrad")
CLIPS = ("elementwise", "global")
BATCHINGS = ("carry", "random")


@dataclass(frozen=True)
class RNNConfig:
    """Every hyper-parameter of a recurrent run (char-rnn's names where it has one). Defaults: char-rnn's."""

    cell: str = "lstm"
    hidden: int = 128           # char-rnn's rnn_size
    n_layer: int = 2            # num_layers
    seq_length: int = 50
    batch_size: int = 50
    max_epochs: float = 50
    optimizer: str = "rmsprop"
    lr: float = 2e-3            # learning_rate
    decay_rate: float = 0.95    # RMSprop's moving average of squared gradients
    lr_decay: float = 0.97      # learning_rate_decay, per epoch ...
    lr_decay_after: int = 10    # ... from the end of this epoch on
    grad_clip: float = 5.0
    clip: str = "elementwise"
    batching: str = "carry"
    forget_bias: float = 1.0    # the LSTM's forget-gate bias (b_ih's f block) at initialisation
    eval_interval: int = 200    # iterations between validation passes
    seed: int = 0
    grad_source: str = "hand"

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layer", "seq_length", "batch_size", "eval_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        choices = {"cell": tuple(CELLS), "optimizer": OPTIMIZERS, "clip": CLIPS, "batching": BATCHINGS,
                   "grad_source": ("hand", "autodiff")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not self.max_epochs > 0 or not self.lr > 0 or not self.grad_clip > 0:
            raise ValueError("max_epochs, lr and grad_clip must be positive")
        if not (0 < self.lr_decay <= 1) or not (0 <= self.decay_rate < 1) or self.lr_decay_after < 0:
            raise ValueError("need 0 < lr_decay <= 1, 0 <= decay_rate < 1 and lr_decay_after >= 0")


PRESETS = {
    # char-rnn's defaults (train.lua): 2 x 128 LSTM, sequences and batches of 50, RMSprop 2e-3 (decay 0.95),
    # x0.97 per epoch after epoch 10, clamp at 5, dropout 0, forget-gate biases at 1, 50 epochs
    "char-rnn": RNNConfig(),
    # min-char-rnn.py: a vanilla tanh RNN of 100, one sequence of 25 at a time with the state carried,
    # Adagrad 0.1, clipping at 5. Its loss is the *sum* over the 25 positions; ours is the mean, and
    # Adagrad's update does not depend on the gradient's scale, so clipping the mean's gradient at
    # 5 / 25 = 0.2 clips exactly the gradients min-char-rnn clips. One epoch (it loops forever).
    "min-char-rnn": RNNConfig(cell="rnn", hidden=100, n_layer=1, seq_length=25, batch_size=1, max_epochs=1,
                              optimizer="adagrad", lr=0.1, lr_decay=1.0, grad_clip=5.0 / 25, forget_bias=0.0,
                              eval_interval=5000),
}
CONFIG_FIELDS = tuple(f.name for f in fields(RNNConfig))


def model_of(config: RNNConfig, vocab_size: int) -> CharRNN:
    return char_rnn(vocab_size, config.hidden, config.n_layer, config.cell)


def initial_params(model: CharRNN, config: RNNConfig, key: Array) -> dict:
    """`model.init` (PyTorch's U(-1/sqrt(H), 1/sqrt(H)); char-rnn's is U(-0.08, 0.08), 0.088 at H = 128) with
    each LSTM layer's forget-gate input bias set to `forget_bias`, as char-rnn sets it."""
    params = model.init(key)
    if config.cell == "lstm":
        H = config.hidden
        for layer in params["layers"]:
            if "b_ih" in layer:
                layer["b_ih"] = layer["b_ih"].at[H: 2 * H].set(config.forget_bias)
    return params


# ----- batches -------------------------------------------------------------------------------------------
def streams(tokens: np.ndarray, n_streams: int) -> tuple[np.ndarray, np.ndarray]:
    """`tokens` cut into n_streams consecutive streams of equal length L = (len - 1) // n_streams:
    inputs x: (n_streams, L) and targets y, the same shifted by one character."""
    length = (len(tokens) - 1) // n_streams
    if length < 1:
        raise ValueError(f"{len(tokens)} characters cannot make {n_streams} streams")
    return (tokens[: n_streams * length].reshape(n_streams, length),
            tokens[1: n_streams * length + 1].reshape(n_streams, length))


def batches_per_epoch(config: RNNConfig, n_train: int) -> int:
    """Chunks of seq_length in each of the batch_size training streams (char-rnn's ntrain)."""
    n = (n_train - 1) // config.batch_size // config.seq_length
    if n < 1:
        raise ValueError(f"the training text ({n_train} characters) is too short for {config.batch_size} streams "
                         f"of {config.seq_length}")
    return n


def total_iterations(config: RNNConfig, n_train: int) -> int:
    return max(1, round(config.max_epochs * batches_per_epoch(config, n_train)))


def learning_rate(config: RNNConfig, per_epoch: int) -> optax.Schedule:
    """char-rnn's schedule at update u (from 0): lr lr_decay^max(0, floor(u / per_epoch) + 1 - lr_decay_after),
    i.e. multiplied by lr_decay at the end of every epoch from epoch lr_decay_after on."""
    def schedule(u):
        decays = jnp.maximum(0, u // per_epoch + 1 - config.lr_decay_after)
        return config.lr * config.lr_decay ** decays
    return schedule


def make_optimizer(config: RNNConfig, per_epoch: int) -> optax.GradientTransformation:
    """Clipping (element-wise to [-grad_clip, grad_clip], or to a global norm), then the optimizer."""
    lr = learning_rate(config, per_epoch)
    clip = optax.clip(config.grad_clip) if config.clip == "elementwise" else optax.clip_by_global_norm(config.grad_clip)
    update = {"rmsprop": lambda: optax.rmsprop(lr, decay=config.decay_rate, eps=1e-8, eps_in_sqrt=False),
              "adam": lambda: optax.adam(lr),
              "adagrad": lambda: optax.adagrad(lr, initial_accumulator_value=0.0, eps=1e-8)}[config.optimizer]()
    return optax.chain(clip, update)


# ----- the compiled pieces -------------------------------------------------------------------------------
def gradient_function(model: CharRNN, grad_source: str) -> Callable:
    """(params, x, y, states) -> (loss, grads, final states), by the hand-written BPTT or by jax.grad."""
    if grad_source == "hand":
        return model.value_and_grad

    def loss_and_states(params, x, y, states):
        logits, finals, _ = model.forward(params, x, states)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1)), finals

    def value_and_grad(params, x, y, states):
        (loss, finals), grads = jax.value_and_grad(loss_and_states, has_aux=True)(params, x, y, states)
        return loss, grads, finals
    return value_and_grad


def make_train_chunk(model: CharRNN, optimizer: optax.GradientTransformation, config: RNNConfig,
                     per_epoch: int) -> jax.stages.Wrapped:
    """(params, opt_state, states, xs, ys, key, first, n) -> (params, opt_state, states, losses): n iterations,
    scanned. Iteration `it` reads chunk it % per_epoch of the streams xs, ys (carry; the states reset at
    chunk 0) or a random batch of windows (random)."""
    grad_fn = gradient_function(model, config.grad_source)
    T, B = config.seq_length, config.batch_size

    def chunk(params, opt_state, states, xs, ys, tokens, key, first, n):
        def one(carry, it):
            params, opt_state, states = carry
            if config.batching == "carry":
                k = it % per_epoch
                x = jax.lax.dynamic_slice_in_dim(xs, k * T, T, axis=1)
                y = jax.lax.dynamic_slice_in_dim(ys, k * T, T, axis=1)
                states = jax.tree_util.tree_map(lambda s: jnp.where(k == 0, jnp.zeros_like(s), s), states)
            else:
                x, y = get_batch(jax.random.fold_in(key, it), tokens, B, T)
                states = jax.tree_util.tree_map(jnp.zeros_like, states)
            loss, grads, finals = grad_fn(params, x, y, states)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, finals), loss

        (params, opt_state, states), losses = jax.lax.scan(one, (params, opt_state, states), first + jnp.arange(n))
        return params, opt_state, states, losses

    return jax.jit(chunk, static_argnums=8, donate_argnums=(0, 1))


def validation_windows(config: RNNConfig, val: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The validation text as (x, y, mask): (n_groups, batch_size, n_chunks * seq_length) for `carry` (one
    group: the streams, padded at their end, read chunk by chunk with the state carried), or
    (n_groups, batch_size, seq_length) for `random` (every non-overlapping window, padded to whole groups).
    The mask is 1 on the positions scored."""
    B, T = config.batch_size, config.seq_length
    if config.batching == "carry":
        x, y = streams(val, B)
        groups = 1
        length = -(-x.shape[1] // T) * T
    else:
        n = (len(val) - 1) // T
        if n < 1:
            raise ValueError(f"the validation text ({len(val)} characters) is shorter than a window of {T + 1}")
        x, y = val[: n * T].reshape(n, T), val[1: n * T + 1].reshape(n, T)
        groups, length = -(-n // B), T
    def padded(a: np.ndarray) -> np.ndarray:
        out = np.zeros((groups * B, length), a.dtype)
        out[: a.shape[0], : a.shape[1]] = a
        return out.reshape(groups, B, length)
    return padded(x), padded(y), padded(np.ones_like(x, np.float32))


def make_validation(model: CharRNN, config: RNNConfig) -> jax.stages.Wrapped:
    """(params, x, y, mask) -> the mean cross-entropy over the masked positions (`validation_windows`):
    each group read chunk by chunk of seq_length from a zero state, the state carried along the group."""
    T = config.seq_length

    def group_loss(params, x, y, mask):
        chunks = x.shape[1] // T
        def one(states, k):
            xk, yk, mk = (jax.lax.dynamic_slice_in_dim(a, k * T, T, axis=1) for a in (x, y, mask))
            logits, finals, _ = model.forward(params, xk, states)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), yk[..., None], axis=-1)[..., 0]
            return finals, -jnp.sum(logp * mk)
        states = model.zero_states(x.shape[0], params["W_out"].dtype)
        return jnp.sum(jax.lax.scan(one, states, jnp.arange(chunks))[1])

    def validation(params, x, y, mask):
        totals = jax.lax.map(lambda g: group_loss(params, *g), (x, y, mask))
        return jnp.sum(totals) / jnp.sum(mask)
    return jax.jit(validation)


# ----- training ------------------------------------------------------------------------------------------
@dataclass
class RNNResult:
    params: Any
    history: list
    final_val_loss: float
    train_seconds: float
    config: RNNConfig
    iterations: int


def train_rnn(config: RNNConfig, data: CharData, out_dir: str | os.PathLike | None = None, resume: bool = False,
              on_eval: Callable[[dict], None] | None = None, max_iterations: int | None = None) -> RNNResult:
    """Train `config` on `data`: a validation pass (every validation position, `validation_windows`) and a
    checkpoint every eval_interval iterations and at the end. `train_loss` in the history is the mean
    training loss of the iterations since the last pass. `train_seconds`: the training loop, validation
    and checkpoints included, compiles excluded. `max_iterations` stops early (tests, quick looks).
    With `resume`, training continues exactly from the checkpoint in `out_dir` (parameters, optimizer
    state and the carried states)."""
    per_epoch = batches_per_epoch(config, len(data.train))
    total = total_iterations(config, len(data.train)) if max_iterations is None else max_iterations
    model = model_of(config, data.vocab_size)
    optimizer = make_optimizer(config, per_epoch)
    k_init, k_train = jax.random.split(jax.random.PRNGKey(config.seed))
    params = initial_params(model, config, k_init)
    opt_state = optimizer.init(params)
    states = model.zero_states(config.batch_size)
    history: list = []
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    if resume:
        (params, opt_state, states), meta = checkpoint.resume(out, CHECKPOINT_NAME, (params, opt_state, states), asdict(config),
                                                              "max_epochs", total, "--max-epochs")
        history, start = meta["history"], meta["iteration"]
    xs, ys = (jnp.asarray(a) for a in streams(data.train, config.batch_size))
    tokens = jnp.asarray(data.train)
    val = tuple(jnp.asarray(a) for a in validation_windows(config, data.val))
    validate = compiled(("rnn-val", model, replace(config, seed=0, max_epochs=1), val[0].shape),
                        lambda: make_validation(model, config).lower(params, *val).compile())
    stops = sorted({*range(config.eval_interval, total, config.eval_interval), total})
    stops = [s for s in stops if s > start]
    sizes = {b - a for a, b in zip([start, *stops], stops)}
    def chunk_of(n: int) -> Callable:
        return compiled(("rnn-chunk", model, replace(config, seed=0, max_epochs=1, eval_interval=1), per_epoch, n,
                         tokens.shape),
                        lambda: make_train_chunk(model, optimizer, config, per_epoch).lower(
                            params, opt_state, states, xs, ys, tokens, k_train, 0, n).compile())
    chunks = {n: chunk_of(n) for n in sizes}
    elapsed = history[-1]["seconds"] if history else 0.0
    if not history:
        history.append({"iteration": 0, "epoch": 0.0, "val_loss": float(validate(params, *val)), "seconds": 0.0})
    began, it = time.perf_counter() - elapsed, start
    for stop in stops:
        params, opt_state, states, losses = chunks[stop - it](params, opt_state, states, xs, ys, tokens, k_train, it)
        it = stop
        record = {"iteration": it, "epoch": it / per_epoch, "train_loss": float(jnp.mean(losses)),
                  "val_loss": float(validate(params, *val)), "lr": float(learning_rate(config, per_epoch)(it - 1)),
                  "seconds": time.perf_counter() - began}
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(f"the training loss became {record['train_loss']} by iteration {it}")
        history.append(record)
        if out is not None:
            checkpoint.save(out / CHECKPOINT_NAME, (params, opt_state, states),
                            {"iteration": it, "history": history, "config": asdict(config), "chars": data.chars,
                             "model": "rnn"})
        if on_eval is not None:
            on_eval(record)
    return RNNResult(params, history, history[-1]["val_loss"], time.perf_counter() - began, config, it)


def write_results(result: RNNResult, data: CharData, out_dir: str | os.PathLike, extra: dict | None = None) -> Path:
    """results.json (configuration, history, final validation loss on every validation position, wall time)
    and loss.png."""
    from .plot import plot_lm_history

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = result.config
    n_params = model_of(c, data.vocab_size).n_params(result.params)
    summary = {"config": asdict(c), "vocab_size": data.vocab_size, "n_params": int(n_params),
               "iterations": result.iterations, "epochs": result.history[-1]["epoch"],
               "final_val_loss": result.final_val_loss, "final_val": "every validation position (validation_windows)",
               "train_seconds": result.train_seconds,
               "ms_per_iteration": 1e3 * result.train_seconds / max(result.iterations, 1),
               "history": result.history, **(extra or {})}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    plot_lm_history([h for h in result.history if "train_loss" in h] or result.history, out / "loss.png",
                    f"{c.n_layer} x {c.hidden} {c.cell.upper()}, {c.grad_source} gradients: "
                    f"final val loss {result.final_val_loss:.4f}")
    return out / "results.json"


# ----- sampling ------------------------------------------------------------------------------------------
def generate(model: CharRNN, params: Any, prompt: Any, n_tokens: int, key: Array, temperature: float = 0.8,
             top_k: int | None = 200) -> np.ndarray:
    """prompt (T0,) followed by n_tokens sampled characters: the prompt read one character at a time from a
    zero state, then each sampled character fed back with the state carried (logits / temperature, only
    the top_k kept, as the GPT's `generate`)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    prompt = np.asarray(prompt, np.int32).reshape(-1)
    if prompt.shape[0] == 0:
        raise ValueError("the prompt must hold at least one character")
    V = model.vocab_size
    k = V if top_k is None else max(1, min(int(top_k), V))

    @jax.jit
    def step(states, token, key):
        logits, states, _ = model.forward(params, token.reshape(1, 1), states)
        logits = logits[0, -1] / temperature
        kth = jax.lax.top_k(logits, k)[0][-1]
        return states, jax.random.categorical(key, jnp.where(logits < kth, -jnp.inf, logits)).astype(jnp.int32)

    states = model.zero_states(1, params["W_out"].dtype)
    out = []
    for token in prompt:
        states, nxt = step(states, jnp.int32(token), jax.random.fold_in(key, 0))
    for i in range(n_tokens):
        out.append(int(nxt))
        states, nxt = step(states, nxt, jax.random.fold_in(key, i + 1))
    return np.concatenate([prompt, np.array(out, np.int32)])


def load_rnn(out: Path, meta: dict) -> tuple[CharRNN, Any, CharData, RNNConfig]:
    """The model, parameters and vocabulary of the recurrent run in `out` (its checkpoint's `meta`)."""
    config = RNNConfig(**{k: v for k, v in meta["config"].items() if k in CONFIG_FIELDS})
    chars = meta["chars"]
    model = model_of(config, len(chars))
    params = model.init(jax.random.PRNGKey(0))
    per_epoch = 1  # the schedule does not shape the optimizer state
    template = (params, make_optimizer(config, per_epoch).init(params), model.zero_states(config.batch_size))
    (params, _, _), _ = checkpoint.load(out / CHECKPOINT_NAME, template)
    return model, params, CharData(np.zeros(0, np.int32), np.zeros(0, np.int32), chars), config
