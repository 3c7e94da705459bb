"""`fnbackprop train --model gpt` and `fnbackprop sample`: the character-level GPT on the command line."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

#: LMConfig fields settable on the command line (argparse dest -> type); None means "the preset's value"
GPT_OPTIONS = {
    "n_layer": int, "n_head": int, "n_embd": int, "block_size": int, "dropout": float, "max_iters": int, "min_lr": float,
    "warmup_iters": int, "lr_decay_iters": int, "beta1": float, "beta2": float, "weight_decay": float, "grad_clip": float,
    "eval_interval": int, "eval_iters": int, "attention_block": int, "head_chunk": int,
}


def add_gpt_options(train: argparse.ArgumentParser) -> None:
    """The GPT's options on `fnbackprop train` (used with --model gpt; --lr, --batch-size, --seed, --grad-source,
    --out and --resume are shared with the MLP)."""
    from .lm import PRESETS

    group = train.add_argument_group("GPT (--model gpt): unset options take the preset's value")
    group.add_argument("--preset", default="shakespeare-char-cpu", choices=sorted(PRESETS),
                       help="nanoGPT's CPU or GPU configuration for Tiny Shakespeare")
    group.add_argument("--text", default=None, help="a UTF-8 text file (else $FNBACKPROP_TEXT, ../shared/data/tinyshakespeare)")
    for name, kind in GPT_OPTIONS.items():
        saver = name in ("attention_block", "head_chunk")
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                           help=f"{name}: " + ("a memory saver of the hand-written backward (fb.gpt)" if saver else "nanoGPT's name"))
    group.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None, help="biases in linear maps and layer norms")
    group.add_argument("--recompute-gelu", action=argparse.BooleanOptionalAction, default=None,
                       help="recompute GELU's input and output in the backward instead of storing them (llm.c's -r 1)")
    group.add_argument("--recompute-norm", action=argparse.BooleanOptionalAction, default=None,
                       help="keep each layer norm's input, recompute its normalised values and output in the backward (llm.c's -r 2)")


def gpt_config(args: argparse.Namespace):
    """The preset, with every option given on the command line in its place (ValueError for a bad one)."""
    from .lm import PRESETS

    given = {name: getattr(args, name) for name in [*GPT_OPTIONS, "bias", "recompute_gelu", "recompute_norm"] if getattr(args, name) is not None}
    shared = {"lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "grad_source": args.grad_source}
    config = replace(PRESETS[args.preset], **given, **{k: v for k, v in shared.items() if v is not None})
    if "max_iters" in given and "lr_decay_iters" not in given:  # nanoGPT decays over the whole run
        config = replace(config, lr_decay_iters=config.max_iters)
    return config


def run_train_gpt(args: argparse.Namespace) -> int:
    """Train the GPT: a gradient check on one batch, then the iterations with a progress bar; results.json,
    loss.png and a checkpoint in --out."""
    import jax

    from .checkpoint import CheckpointError
    from .cli import _error, console, gradient_check_passes, training_progress
    from .lm import get_batch, load_chars, model_of, train_lm, write_results

    try:
        config = gpt_config(args)
        data = load_chars(args.text)
        model = model_of(config, data.vocab_size)
    except (ValueError, FileNotFoundError) as err:
        _error(str(err))
        return 2
    out = Path(args.out or f"runs/gpt-{args.preset}-{config.grad_source}-seed{config.seed}")
    params = model.init(jax.random.PRNGKey(config.seed))
    console.print(f"[bold]GPT[/bold] {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, context "
                  f"{config.block_size}: {model.n_params(params) / 1e6:.2f} M parameters; {len(data.train):,} training and "
                  f"{len(data.val):,} validation characters, vocabulary {data.vocab_size}; {config.max_iters} iterations of "
                  f"batch {config.batch_size}, {config.grad_source} gradients")
    x, y = get_batch(jax.random.PRNGKey(1), jax.numpy.asarray(data.train), config.batch_size, config.block_size)
    if not gradient_check_passes(model, params, x, y):
        return 1
    with training_progress("iteration") as progress:
        task = progress.add_task("compiling...", total=config.max_iters)

        def show(record: dict) -> None:
            progress.update(task, completed=record["iteration"],
                            description=f"train loss {record['train_loss']:.4f}  val loss {record['val_loss']:.4f}")

        try:
            result = train_lm(config, data, out, resume=args.resume, on_eval=show)
        except (ValueError, FileNotFoundError, CheckpointError, FloatingPointError) as err:
            progress.stop()
            _error(str(err))
            return 3 if isinstance(err, FloatingPointError) else 2
    write_results(result, data, out, {"preset": args.preset, "text": str(args.text or "default")})
    console.print(f"done: validation loss {result.final_val_loss:.4f} on 200 batches; training loop {result.train_seconds:.1f} s "
                  f"({1e3 * result.train_seconds / config.max_iters:.1f} ms per iteration)")
    console.print(f"results: {out / 'results.json'}, plot: {out / 'loss.png'}, checkpoint: {out / 'checkpoint.npz'}; "
                  f"sample with: fnbackprop sample --out {out}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """Print text generated by a saved run."""
    import jax

    from .checkpoint import CheckpointError
    from .cli import _error
    from .lm import generate, load_run

    try:
        model, params, data, _ = load_run(args.out)
        prompt = data.encode(args.prompt or "\n")
        tokens = generate(model, params, prompt, args.tokens, jax.random.PRNGKey(args.seed), args.temperature, args.top_k)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        _error(str(err))
        return 2
    print(data.decode(tokens))
    return 0


def add_sample_command(sub) -> None:
    from .cli import in_range, positive_int, seed_int

    sample = sub.add_parser("sample", help="print text from a GPT trained with `fnbackprop train --model gpt`",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("--out", required=True, help="the run's folder (its checkpoint.npz)")
    sample.add_argument("--prompt", default="\n", help="text to continue (characters of the training text only)")
    sample.add_argument("--tokens", type=positive_int, default=500, help="characters to generate")
    sample.add_argument("--temperature", type=in_range(float, 0, low_open=True), default=0.8)
    sample.add_argument("--top-k", type=positive_int, default=200, help="sample among the k likeliest characters")
    sample.add_argument("--seed", type=seed_int, default=0)
    sample.set_defaults(func=run_sample)

