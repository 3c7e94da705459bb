"""`fnbackprop train --model rnn|lstm|gru`: char-rnn's character-level recurrent nets on the command line."""

from __future__ import annotations

import argparse
from dataclasses import replace

from .common import UsageError, console, error, gradient_check_passes, in_range, positive_int, run_folder
from .gpt import LM_OPTIONS, chosen_preset, preset_values, presets_of, print_done, train_with_progress

#: RNNConfig fields settable on the command line and only by the recurrent nets: argparse type and help
RNN_OPTIONS = {
    "hidden": (positive_int, "hidden units per layer (char-rnn's rnn_size)"),
    "seq_length": (positive_int, "characters per chunk: the steps of truncated backpropagation through time"),
    "max_epochs": (in_range(float, 0, low_open=True), "passes over the training text (fractions allowed)"),
    "rms_decay": (in_range(float, 0, 1, high_open=True), "RMSprop's moving-average decay of squared gradients"),
    "lr_decay": (in_range(float, 0, 1, low_open=True), "the learning rate's factor per epoch ..."),
    "lr_decay_after": (in_range(int, 0), "... from the end of this epoch on"),
    "clip": (str, "elementwise: clamp each gradient entry to [-grad_clip, grad_clip] (char-rnn); global: its global norm"),
    "batching": (str, "carry: consecutive chunks with the state carried (char-rnn); random: random windows from a "
                      "zero state (nanoGPT)"),
    "forget_bias": (float, "the LSTM's forget-gate bias at initialisation"),
}
RNN_ONLY = tuple(RNN_OPTIONS)
CONFIG_NAME = {"rms_decay": "decay_rate"}  # the option's name where it differs from RNNConfig's field
RNN_OPTIMIZERS = "rmsprop, adam, adagrad"


def add_rnn_options(train: argparse.ArgumentParser) -> None:
    """The recurrent nets' own options (--preset, --n-layer, --grad-clip, --eval-interval are the language
    models' and --optimizer is shared with the MLP)."""
    group = train.add_argument_group("rnn, lstm, gru (--model rnn|lstm|gru): an option not given takes the preset's value")
    for name, (kind, text) in RNN_OPTIONS.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                           help=f"{text} ({preset_values(CONFIG_NAME.get(name, name), ('rnn',))})")


def rnn_config(args: argparse.Namespace):
    """The preset, the cell of --model, and every option given on the command line (ValueError for a bad one)."""
    given = {CONFIG_NAME.get(name, name): getattr(args, name) for name in [*LM_OPTIONS, *RNN_OPTIONS]
             if getattr(args, name) is not None}
    shared = {"lr": args.lr, "batch_size": args.batch_size, "optimizer": args.optimizer, "seed": args.seed,
              "grad_source": args.grad_source}
    config = replace(presets_of("rnn")[chosen_preset(args, "rnn")], cell=args.model, **given,
                     **{k: v for k, v in shared.items() if v is not None})
    if "forget_bias" in args.given and config.cell != "lstm":
        raise UsageError(f"--forget-bias does not apply to --model {config.cell}: only the LSTM has a forget gate")
    if "rms_decay" in args.given and config.optimizer != "rmsprop":
        raise UsageError(f"--rms-decay does not apply to --optimizer {config.optimizer}: it is RMSprop's")
    return config


def run_train_rnn(args: argparse.Namespace) -> int:
    """Train a recurrent net: a gradient check on one batch, then the iterations with a progress display;
    results.json, loss.png and a checkpoint in the run's folder."""
    import jax
    import jax.numpy as jnp

    from ..train.lm import CHECKPOINT_NAME, load_chars
    from ..train.rnn_lm import (batches_per_epoch, initial_params, model_of, streams, total_iterations, train_rnn,
                                write_results)

    try:
        config = rnn_config(args)
        preset = chosen_preset(args, "rnn")
        data = load_chars(args.data_path)
        per_epoch = batches_per_epoch(config, len(data.train))
        model = model_of(config, data.vocab_size)
        out = run_folder(args.out, f"runs/{config.cell}-{preset}-{config.grad_source}-seed{config.seed}",
                         resume=args.resume, force=args.force)
        if args.resume and not (out / CHECKPOINT_NAME).is_file():
            raise FileNotFoundError(f"nothing to resume: no {CHECKPOINT_NAME} in {out}")
    except (ValueError, FileNotFoundError, UsageError) as err:
        error("train", str(err))
        return 2
    params = initial_params(model, config, jax.random.PRNGKey(config.seed))
    total = total_iterations(config, len(data.train))
    console.print(f"[bold]{config.cell.upper()}[/bold] {config.n_layer} x {config.hidden}: {model.n_params(params) / 1e6:.3f} M "
                  f"parameters; {len(data.train):,} training and {len(data.val):,} validation characters, vocabulary "
                  f"{data.vocab_size}; {config.max_epochs:g} epochs of {per_epoch} batches of {config.batch_size} x "
                  f"{config.seq_length} ({config.batching}), {config.optimizer} lr {config.lr:g}, {config.grad_source} "
                  f"gradients; writing to {out}", highlight=False)
    xs, ys = streams(data.train, config.batch_size)
    T = config.seq_length
    if not gradient_check_passes(model, params, jnp.asarray(xs[:, :T]), jnp.asarray(ys[:, :T])):
        return 1
    result = train_with_progress(lambda show: train_rnn(config, data, out, resume=args.resume, on_eval=show), total,
                                 lambda r: f"epoch {r['epoch']:.2f}  train loss {r['train_loss']:.4f}  val loss {r['val_loss']:.4f}")
    if isinstance(result, int):
        return result
    write_results(result, data, out, {"preset": preset, "data_path": str(args.data_path or "default")})
    print_done(out, result.final_val_loss, "on every validation character", result.train_seconds, result.iterations)
    return 0
