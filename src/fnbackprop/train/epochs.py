"""Training with optax over the hand-coded gradients: a whole epoch per compiled call.

One epoch is one `jax.jit` call: a fresh shuffle from the epoch's PRNG key (`epoch_order`), then
`lax.scan` over chunks of about `GATHER_ROWS` rows gathered from the device-resident data, each chunk
a scan over its full mini-batches, then one more step on the last partial batch if the batch size
does not divide n (it is averaged over its own size, never dropped). `fit` keeps features that are
exactly k/256 (MNIST) as uint8 codes and decodes each batch in the step (`compact_features`). The
gradient source is one argument: `"hand"` (the hand-coded backward) or `"autodiff"` (`jax.grad`), so
every experiment can run both.

The PRNG key of epoch e is `fold_in(shuffle_key, e)`, so an interrupted run resumed from its
checkpoint draws the same batches as an uninterrupted one and ends at the same parameters.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import checkpoint
from .data import Dataset
from ..models.network import Network
from ..parallel import shard_map_value_and_grad

Array = jax.Array

GRAD_SOURCES = ("hand", "autodiff")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")
SCHEDULES = ("constant", "exponential", "step", "cosine")
CHECKPOINT_NAME = "checkpoint.npz"
#: configuration entries that may differ between a run and its resumption; any other difference is refused
RESUMABLE_OPTIONS = ("epochs", "resume", "force", "out", "data_path", "devices")


def gradient_function(net: Network, source: str) -> Callable:
    """(params, x, y, key=None) -> (cost, grads), by the hand-coded backward or by jax.grad.

    `key` reaches stochastic layers (dropout); the same key gives both sources the same masks.
    """
    if source == "hand":
        return net.value_and_grad
    if source == "autodiff":
        return jax.value_and_grad(net.loss)
    raise ValueError(f"unknown gradient source {source!r}; expected one of {GRAD_SOURCES}")


def make_schedule(name: str, learning_rate: float, steps_per_epoch: int, epochs: int,
                  decay_rate: float = 0.5, decay_epochs: float = 10) -> optax.Schedule:
    """Learning rate by step: constant; exponential (x decay_rate every decay_epochs, smoothly);
    step (the same, in stairs); cosine (from learning_rate to 0 over all epochs)."""
    if learning_rate <= 0:
        raise ValueError(f"learning rate must be positive, got {learning_rate}")
    decay_steps = max(1, int(decay_epochs * steps_per_epoch))
    schedules = {
        "constant": lambda: optax.constant_schedule(learning_rate),
        "exponential": lambda: optax.exponential_decay(learning_rate, decay_steps, decay_rate),
        "step": lambda: optax.exponential_decay(learning_rate, decay_steps, decay_rate, staircase=True),
        "cosine": lambda: optax.cosine_decay_schedule(learning_rate, max(1, epochs * steps_per_epoch)),
    }
    if name not in schedules:
        raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
    return schedules[name]()


def weights_only(params: Any) -> Any:
    """A mask that is True on every leaf named "W" (weights), False elsewhere (biases and others)."""
    def is_weight(path, _leaf) -> bool:
        return getattr(path[-1], "key", None) == "W"

    return jax.tree_util.tree_map_with_path(is_weight, params)


def make_optimizer(name: str, schedule: optax.Schedule, *, momentum: float = 0.9, l2: float = 0.0,
                   n_train: int = 1) -> optax.GradientTransformation:
    """An optax optimizer; with l2 > 0, Dong's L2 rule W <- W - (eta lambda / n) W - eta dC/dW.

    The L2 term is `optax.add_decayed_weights(lambda / n)` on the weights only, chained before the
    optimizer: with plain SGD that is exactly Dong's (and Nielsen's) update; with the adaptive ones it
    is the gradient of (lambda / 2n) ||W||^2 added to dC/dW, then adapted (coupled L2, not AdamW).
    """
    optimizers = {
        "sgd": lambda: optax.sgd(schedule),
        "momentum": lambda: optax.sgd(schedule, momentum=momentum),
        "nesterov": lambda: optax.sgd(schedule, momentum=momentum, nesterov=True),
        "adam": lambda: optax.adam(schedule),
        "rmsprop": lambda: optax.rmsprop(schedule),
        "adagrad": lambda: optax.adagrad(schedule),
    }
    if name not in optimizers:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    if l2 < 0:
        raise ValueError(f"l2 must be non-negative, got {l2}")
    if l2 == 0:
        return optimizers[name]()
    return optax.chain(optax.add_decayed_weights(l2 / n_train, mask=weights_only), optimizers[name]())


FEATURE_DENOMINATORS = (256, 255, 1)  # MNIST in Nielsen's pickle is pixel / 256


def compact_features(x: np.ndarray) -> tuple[np.ndarray, int | None]:
    """(uint8 codes k, d) with x == k / d exactly (bit for bit) for some d in FEATURE_DENOMINATORS,
    else (x, None).

    Gathering a mini-batch is memory-bound on a CPU: a random row of MNIST is 3,136 bytes in float32
    and 784 as uint8 codes, so storing the codes and decoding each batch in the step moves a quarter
    of the bytes, with no change to any value.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0 or not np.all(np.isfinite(x)):
        return x, None
    for d in FEATURE_DENOMINATORS:
        codes = np.rint(x * d)
        if codes.min() >= 0 and codes.max() <= 255:
            codes = codes.astype(np.uint8)
            if np.array_equal(codes.astype(x.dtype) / x.dtype.type(d), x):
                return codes, d
    return x, None


def decode_features(x: Array, denominator: int | None, params: Any) -> Array:
    """x itself, or the integer codes of `compact_features` as codes / denominator in the params' dtype."""
    if denominator is None:
        return x
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    return x.astype(dtype) / jnp.asarray(denominator, dtype)


def epoch_order(key: Array, n: int) -> Array:
    """The epoch's shuffle of range(n): argsort of n random 32-bit words.

    One sort; `jax.random.permutation` sorts twice for n = 50,000 and took twice as long on the CPU
    (about 30 ms against 15 ms per epoch). Ties among the words (probability about n^2 / 2^33) keep
    index order, a bias far below anything an experiment could see.
    """
    return jnp.argsort(jax.random.bits(key, (n,)))


GATHER_ROWS = 512  # rows gathered at once: large enough to amortise the gather, small enough for the cache


def gather_chunk(n_batches: int, batch_size: int, rows: int | None = None) -> int:
    """How many batches to gather at once: the largest divisor of n_batches with at most `rows` rows
    (at least 1).

    One gather of 10 rows per step was the largest cost of Nielsen's epoch on the CPU: XLA splits
    even so small a gather across threads, and the hand-off costs more than the copy. Gathering
    ~500 rows at once and scanning the steps over them removed most of that cost.
    """
    most = max(1, (GATHER_ROWS if rows is None else rows) // batch_size)
    return max(d for d in range(1, min(most, n_batches) + 1) if n_batches % d == 0) if n_batches else 1


class EpochStats(NamedTuple):
    mean_batch_cost: Array
    grad_norms: Any  # per parameter leaf: the mean over the epoch's steps of ||dC/dleaf||


def make_epoch(net: Network, optimizer: optax.GradientTransformation, batch_size: int, n: int,
               grad_source: str = "hand", mesh: Any = None, x_denominator: int | None = None) -> Callable:
    """A jitted `(params, opt_state, key, x, y) -> (params, opt_state, EpochStats)` for n examples.

    With `x_denominator`, x holds the integer codes of `compact_features` and each gathered batch is
    decoded to `codes / x_denominator` inside the step (the same values, a quarter of the bytes moved).

    With a device `mesh` (`fnbackprop.parallel.make_mesh`), every full batch is split across the
    devices and the per-device gradients are combined with psum (`shard_map_value_and_grad`); a last
    partial batch that does not divide evenly runs as one ordinary jit-compiled step.
    """
    if not 1 <= batch_size:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    n_full, remainder = divmod(n, batch_size)
    grad_fn = full_grad_fn = gradient_function(net, grad_source)
    if mesh is not None and mesh.devices.size > 1:
        if batch_size % mesh.devices.size:
            raise ValueError(f"batch size {batch_size} does not divide evenly among {mesh.devices.size} devices")
        full_grad_fn = shard_map_value_and_grad(net, mesh, grad_fn)
        if remainder % mesh.devices.size == 0:
            grad_fn = full_grad_fn

    stochastic = net.stochastic
    chunk = gather_chunk(n_full, batch_size)

    def step(carry, batch, grad_fn=grad_fn):
        (params, opt_state), (xb, yb, key) = carry, batch
        cost, grads = grad_fn(params, decode_features(xb, x_denominator, params), yb, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        norms = jax.tree_util.tree_map(jnp.linalg.norm, grads)
        return (optax.apply_updates(params, updates), opt_state), (cost, norms)

    def chunk_of_steps(carry, batches, x, y):
        """Gather `chunk` batches' rows at once, then scan the steps over them."""
        idx, keys = batches
        rows = idx.reshape(-1)
        xs, ys = x[rows].reshape(*idx.shape, *x.shape[1:]), y[rows].reshape(*idx.shape, *y.shape[1:])
        return jax.lax.scan(lambda c, b: step(c, b, full_grad_fn), carry, (xs, ys, keys))

    @jax.jit
    def epoch(params, opt_state, key, x, y):
        order = epoch_order(key, n)
        # keys for stochastic layers (dropout) only: splitting n/batch keys costs time in every epoch
        step_keys = jax.random.split(jax.random.fold_in(key, 1), n_full + 1) if stochastic else None
        full = order[: n_full * batch_size].reshape(n_full // chunk, chunk, batch_size)
        keys = step_keys[:n_full].reshape(n_full // chunk, chunk, *step_keys.shape[1:]) if stochastic else None
        carry, (costs, norms) = jax.lax.scan(lambda c, b: chunk_of_steps(c, b, x, y), (params, opt_state), (full, keys))
        costs, norms = costs.reshape(-1), jax.tree_util.tree_map(lambda v: v.reshape(-1), norms)
        weights = jnp.full(n_full, batch_size, costs.dtype)
        if remainder:
            last = order[n_full * batch_size:]
            carry, (cost, norm) = step(carry, (x[last], y[last], step_keys[n_full] if stochastic else None))
            costs, weights = jnp.append(costs, cost), jnp.append(weights, remainder)
            norms = jax.tree_util.tree_map(lambda ns, last: jnp.append(ns, last), norms, norm)
        steps = n_full + bool(remainder)
        mean_cost = jnp.sum(costs * weights) / n
        return (*carry, EpochStats(mean_cost, jax.tree_util.tree_map(lambda v: jnp.sum(v) / steps, norms)))

    return epoch


#: rows evaluated at once: a conv net's im2col patches of 50,000 MNIST images would take gigabytes
EVAL_CHUNK = 10_000


def split_logits(net: Network, params: Any, x: Array) -> Array:
    """Z[L] of a whole split, in chunks of EVAL_CHUNK rows (`lax.map`), the last one padded with zeros.
    (A batch-normalised network sees each chunk's statistics.)"""
    n = x.shape[0]
    if n <= EVAL_CHUNK:
        return net.logits(params, x)
    padded = jnp.concatenate([x, jnp.zeros(((-n) % EVAL_CHUNK, *x.shape[1:]), x.dtype)])
    chunks = jax.lax.map(lambda c: net.logits(params, c), padded.reshape(-1, EVAL_CHUNK, *x.shape[1:]))
    return chunks.reshape(-1, *chunks.shape[2:])[:n]


def evaluate(net: Network, task: str, params: Any, x: Array, y: Array) -> dict[str, Array]:
    """Cost and (for classifiers) accuracy on a whole split, in chunks (`split_logits`); jit-compatible."""
    z = split_logits(net, params, x)
    yhat = net.head.predict(z)
    out = {"cost": net.head.cost(z, net.targets(y, x))}
    if task == "classification":
        out["accuracy"] = jnp.mean(jnp.argmax(yhat, axis=-1) == y)
    elif task == "binary":
        out["accuracy"] = jnp.mean((yhat > 0.5) == (y > 0.5))
    return out


def initial_params(net: Network, data: Dataset, key: Array) -> Any:
    """`fit`'s starting parameters for `key`: net.init of split(key)[0], in the training data's dtype
    (one dtype throughout)."""
    return net.init(jax.random.split(key)[0], np.asarray(data.x_train).dtype)


def resume_from(out_dir: str | os.PathLike, template: Any, config: dict | None = None) -> tuple[Any, list[dict]]:
    """(the state stored in out_dir's checkpoint, in the structure of `template`, and its history).

    Refused with `checkpoint.CheckpointError` (the file left as it is) when the file is unreadable,
    when its configuration differs from `config` in anything but `RESUMABLE_OPTIONS` (a resumed run
    is the same run, continued), or when any array differs from the template in shape or dtype.
    """
    ckpt = Path(out_dir) / CHECKPOINT_NAME
    if not ckpt.is_file():
        raise FileNotFoundError(f"nothing to resume: no {CHECKPOINT_NAME} in {out_dir}")
    stored = checkpoint.read_meta(ckpt).get("config") or {}
    if config and stored:
        given = json.loads(json.dumps(config, default=str))
        differ = [k for k in sorted(set(stored) | set(given)) if k not in RESUMABLE_OPTIONS and stored.get(k) != given.get(k)]
        if differ:
            was = ", ".join(f"{k}={stored.get(k)!r}" for k in differ[:3])
            now = ", ".join(f"{k}={given.get(k)!r}" for k in differ[:3])
            raise checkpoint.CheckpointError(f"the checkpoint in {out_dir} was saved with {was}; this run asks for {now}. "
                                             "Resume with the same options, or train into another --out")
    state, meta = checkpoint.load(ckpt, template)
    return state, meta["history"]


class TrainingDiverged(RuntimeError):
    """The training cost stopped being finite; the message names the epoch and last good checkpoint."""


class TrainResult(NamedTuple):
    params: Any
    opt_state: Any
    history: list[dict]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def fit(
    net: Network,
    data: Dataset,
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    key: Array,
    grad_source: str = "hand",
    params: Any = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    config: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    mesh: Any = None,
    evaluate_train: bool = True,
) -> TrainResult:
    """Mini-batch training; each epoch one compiled call, then metrics, checkpoint and results JSON.

    With `out_dir`, after every epoch the parameters and optimizer state go to
    `out_dir/checkpoint.npz` and the configuration and metrics so far to `out_dir/results.json`.
    `resume=True` continues from that checkpoint (`resume_from`: the same configuration, shapes and
    dtypes, or a refusal). A non-finite cost raises `TrainingDiverged`.
    `mesh` trains data-parallel across its devices (see `make_epoch`).
    `evaluate_train=False` leaves the training split out of each epoch's metrics (on 250,000 images
    they cost a third of an epoch); divergence is then seen in the mean batch cost alone.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    shuffle_key = jax.random.split(key)[1]
    params = initial_params(net, data, key) if params is None else params
    opt_state = optimizer.init(params)
    history: list[dict] = []
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT_NAME if out is not None else None
    if resume:
        if out is None:
            raise FileNotFoundError("nothing to resume: no out_dir given")
        (params, opt_state), history = resume_from(out, (params, opt_state), config)
        if len(history) > epochs:
            raise checkpoint.CheckpointError(f"the checkpoint in {out} has trained {len(history)} epochs, more than the "
                                             f"{epochs} this run asks for: ask for {len(history)} or more, or train into another --out")

    codes, denominator = compact_features(data.x_train)
    x_tr, y_tr = jnp.asarray(codes), jnp.asarray(data.y_train)
    splits = {"train": (jnp.asarray(data.x_train), y_tr)} if evaluate_train else {}
    splits["test"] = (jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    if data.x_val is not None:
        splits["val"] = (jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    run_epoch = make_epoch(net, optimizer, batch_size, len(data.x_train), grad_source, mesh, denominator)
    evaluate_split = jax.jit(lambda p, x, y: evaluate(net, data.task, p, x, y))

    for epoch in range(len(history) + 1, epochs + 1):
        start = time.perf_counter()
        params, opt_state, stats = run_epoch(params, opt_state, jax.random.fold_in(shuffle_key, epoch), x_tr, y_tr)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - start
        record: dict[str, Any] = {"epoch": epoch, "seconds": seconds, "mean_batch_cost": float(stats.mean_batch_cost)}
        for split, (x, y) in splits.items():
            record.update({f"{split}_{k}": float(v) for k, v in evaluate_split(params, x, y).items()})
        record["grad_norms"] = [{k: float(v) for k, v in layer.items()} for layer in stats.grad_norms]
        bad = [record[k] for k in ("train_cost", "mean_batch_cost") if k in record and not math.isfinite(record[k])]
        if bad:
            last = f"the checkpoint of epoch {epoch - 1} at {ckpt}" if ckpt is not None and epoch > 1 else "no checkpoint"
            raise TrainingDiverged(f"training diverged in epoch {epoch}: the cost is {bad[0]}; last good: {last}")
        history.append(record)
        if out is not None and ckpt is not None:
            checkpoint.save(ckpt, (params, opt_state), {"epoch": epoch, "history": history, "config": config or {}})
            _write_json(out / "results.json", {"config": config or {}, "epochs": history})
        if on_epoch is not None:
            on_epoch(record)
    return TrainResult(params, opt_state, history)
