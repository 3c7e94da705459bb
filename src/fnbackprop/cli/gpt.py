"""`fnbackprop train --model gpt` and `fnbackprop sample`: the character-level language models on the command line
(the GPT here, the recurrent nets in `cli.rnn`; the options both read are `LM_OPTIONS`)."""

from __future__ import annotations

import argparse
import functools
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .common import (GradientCheckFailed, UsageError, console, error, gradient_check_or_stop, in_range, positive_int,
                     process_start, run_folder, seed_int, training_progress)

positive_float = in_range(float, 0, low_open=True)
non_negative_float = in_range(float, 0)
non_negative_int = in_range(int, 0)
fraction = in_range(float, 0, 1, high_open=True)

#: LMConfig fields settable on the command line: argparse type and help (nanoGPT's names)
GPT_OPTIONS = {
    "n_head": (positive_int, "attention heads per block"),
    "n_embd": (positive_int, "the residual stream's width"),
    "block_size": (positive_int, "context length in characters"),
    "dropout": (fraction, "dropout rate after attention, the MLP and the embeddings"),
    "max_iters": (positive_int, "training iterations (lr_decay_iters follows it unless given)"),
    "min_lr": (non_negative_float, "the cosine schedule's final learning rate"),
    "warmup_iters": (non_negative_int, "linear warm-up iterations"),
    "lr_decay_iters": (positive_int, "iterations of the cosine decay"),
    "beta1": (fraction, "AdamW's beta1"),
    "beta2": (fraction, "AdamW's beta2"),
    "weight_decay": (non_negative_float, "AdamW's decoupled weight decay (matrices and embeddings)"),
    "eval_iters": (positive_int, "batches per loss estimate"),
    "attention_block": (positive_int, "a memory saver of the hand-written backward: blockwise attention in blocks of this many positions"),
    "head_chunk": (positive_int, "a memory saver of the hand-written backward: the cross-entropy head in chunks of this many rows"),
    "matmul_dtype": (str, "the linear maps' products: float32, bfloat16 (operands rounded, sums kept in float32: mixed "
                          "precision) or auto (bfloat16 on a CPU with avx512_bf16 or amx_bf16, float32 elsewhere)"),
}
FLAGS = {
    "bias": "biases in linear maps and layer norms",
    "recompute_gelu": "recompute GELU's input and output in the backward instead of storing them (llm.c's -r 1)",
    "recompute_norm": "keep each layer norm's input, recompute its normalised values and output in the backward (llm.c's -r 2)",
}
#: options of every character-level language model (the GPT and the recurrent nets): type and help
LM_OPTIONS = {
    "n_layer": (positive_int, "layers: transformer blocks or stacked recurrent layers"),
    "grad_clip": (positive_float, "gpt: clip the gradient's global norm to this; rnn: clip each entry to [-c, c] "
                                  "(or the global norm, --clip global)"),
    "eval_interval": (positive_int, "iterations between evaluations"),
}
#: options of the GPT trainer alone (argparse destinations)
GPT_ONLY = (*GPT_OPTIONS, *FLAGS, "mesh", "sequence_parallel")
DEFAULT_PRESET = {"gpt": "shakespeare-char-cpu", "rnn": "char-rnn"}


def presets_of(model: str) -> dict:
    """The presets of `--model gpt` or of the recurrent nets (`rnn`, `lstm`, `gru`)."""
    if model == "gpt":
        from ..train.lm import PRESETS
    else:
        from ..train.rnn_lm import PRESETS  # type: ignore[assignment]
    return PRESETS


def preset_values(name: str, models: tuple[str, ...] = ("gpt",)) -> str:
    """`name`'s value in each preset of `models`, for the help: "preset: 4 (cpu), 6 (gpu)"."""
    def shown(value):
        return ("on" if value else "off") if value is None or isinstance(value, bool) else value

    values = {preset.rsplit("-", 1)[-1] if model == "gpt" else preset: shown(getattr(config, name))
              for model in models for preset, config in sorted(presets_of(model).items())}
    if len(set(map(str, values.values()))) == 1:
        return f"preset: {next(iter(values.values()))}"
    return "preset: " + ", ".join(f"{value} ({where})" for where, value in values.items())


def add_lm_options(train: argparse.ArgumentParser) -> None:
    """The options every language model reads: --preset and `LM_OPTIONS`."""
    group = train.add_argument_group("language models (--model gpt, rnn, lstm, gru): an option not given takes the "
                                     "preset's value")
    group.add_argument("--preset", default=None, choices=[*sorted(presets_of("gpt")), *sorted(presets_of("rnn"))],
                       help="gpt: nanoGPT's CPU or GPU configuration for Tiny Shakespeare; rnn, lstm, gru: char-rnn's or "
                            "min-char-rnn's recipe (default: shakespeare-char-cpu for gpt, char-rnn for the recurrent nets)")
    for name, (kind, text) in LM_OPTIONS.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                           help=f"{text} ({preset_values(name, ('gpt', 'rnn'))})")


def chosen_preset(args: argparse.Namespace, family: str) -> str:
    """The preset named by --preset (refused when it is the other family's), or the family's default."""
    if args.preset is None:
        return DEFAULT_PRESET[family]
    if args.preset not in presets_of(family):
        raise UsageError(f"--preset {args.preset} is not one of --model {args.model}'s: "
                         f"{', '.join(sorted(presets_of(family)))}")
    return args.preset


def add_gpt_options(train: argparse.ArgumentParser) -> None:
    """The GPT's own options on `fnbackprop train` (with --model gpt; --data-path, --lr, --batch-size, --seed,
    --grad-source, --out, --resume and --force are shared with the MLP)."""
    group = train.add_argument_group("gpt (--model gpt): an option not given takes the preset's value")
    for name, (kind, text) in GPT_OPTIONS.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=f"{text} ({preset_values(name)})")
    for name, text in FLAGS.items():
        group.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                           help=f"{text} ({preset_values(name)})")
    group.add_argument("--mesh", type=mesh_shape, default=None, metavar="data=D,model=M",
                       help="split the GPT over a D x M mesh: the batch over D devices, each layer over M (Megatron's tensor "
                            "parallelism, the backward by hand); on a CPU, D x M devices are made")
    group.add_argument("--sequence-parallel", action="store_true", default=False,
                       help="with --mesh: the layer norms and dropout on 1/M of the positions each (all-gather and "
                            "reduce-scatter at the block boundaries)")


def mesh_shape(text: str) -> tuple[int, int]:
    """--mesh data=D,model=M (either may be left out: 1) as (D, M)."""
    sizes = {"data": 1, "model": 1}
    try:
        for part in text.split(","):
            name, value = part.split("=")
            if name.strip() not in sizes or int(value) < 1:
                raise ValueError
            sizes[name.strip()] = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mesh takes data=D,model=M with positive integers (e.g. data=2,model=4), got {text!r}")
    return sizes["data"], sizes["model"]


def chosen_mesh(args: argparse.Namespace, model: Any, config: Any) -> Any:
    """The mesh of --mesh (its CPU devices made first), the split checked against the model and the batch; None
    without --mesh (--sequence-parallel alone refused)."""
    if args.mesh is None:
        if args.sequence_parallel:
            raise UsageError("--sequence-parallel needs --mesh data=D,model=M (it splits the positions over the model axis)")
        return None
    from ..parallel import ask_for_cpu_devices, make_mesh, tensor_parallel

    data, model_size = args.mesh
    ask_for_cpu_devices(data * model_size)  # a CPU's devices (a GPU's are what they are)
    mesh = make_mesh(data=data, model=model_size)
    tensor_parallel(model, mesh, args.sequence_parallel).check_shape(config.batch_size, config.block_size)
    return mesh


def gpt_config(args: argparse.Namespace):
    """The preset, with every option given on the command line in its place (ValueError for a bad one)."""
    given = {name: getattr(args, name) for name in [*LM_OPTIONS, *GPT_OPTIONS, *FLAGS] if getattr(args, name) is not None}
    shared = {"lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "grad_source": args.grad_source}
    config = replace(presets_of("gpt")[chosen_preset(args, "gpt")], **given, **{k: v for k, v in shared.items() if v is not None})
    if "max_iters" in given and "lr_decay_iters" not in given:  # nanoGPT decays over the whole run
        config = replace(config, lr_decay_iters=config.max_iters)
    return config


def run_train_gpt(args: argparse.Namespace) -> int:
    """Train the GPT: a gradient check on one batch, then the iterations with a progress display; results.json,
    loss.png and a checkpoint in the run's folder."""
    import jax

    from ..train.lm import CHECKPOINT_NAME, get_batch, initial_params, load_chars, model_of, resolved, train_lm, write_results

    try:
        config = resolved(gpt_config(args))
        preset = chosen_preset(args, "gpt")
        data = load_chars(args.data_path)
        model = model_of(config, data.vocab_size)
        mesh = chosen_mesh(args, model, config)
        out = run_folder(args.out, f"runs/gpt-{preset}-{config.grad_source}-seed{config.seed}", resume=args.resume,
                         force=args.force)
        if args.resume and not (out / CHECKPOINT_NAME).is_file():  # before the compiles and the gradient check
            raise FileNotFoundError(f"nothing to resume: no {CHECKPOINT_NAME} in {out}")
    except (ValueError, FileNotFoundError, UsageError) as err:
        error("train", str(err))
        return 2
    params = initial_params(model, jax.random.split(jax.random.PRNGKey(config.seed), 3)[0])  # train_lm's own start
    console.print(f"[bold]GPT[/bold] {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, context "
                  f"{config.block_size}: {model.n_params(params) / 1e6:.2f} M parameters; {len(data.train):,} training and "
                  f"{len(data.val):,} validation characters, vocabulary {data.vocab_size}; {config.max_iters} iterations of "
                  f"batch {config.batch_size}, {config.grad_source} gradients, products in {config.matmul_dtype}"
                  + (f", split over a data {args.mesh[0]} x model {args.mesh[1]} mesh" if mesh is not None else "")
                  + (" with sequence parallelism" if args.sequence_parallel else "") + f"; writing to {out}", highlight=False)
    x, y = jax.jit(get_batch, static_argnums=(2, 3))(jax.random.PRNGKey(1), data.train, config.batch_size, config.block_size)
    # run while the first chunk runs, in float32: it checks the derivation, and bfloat16's rounding alone would part
    # the hand-written and autodiff gradients by ~1e-3, more than its tolerance
    checked = functools.partial(gradient_check_or_stop, replace(model, matmul_dtype=None), params, x, y)
    result = train_with_progress(lambda show: train_lm(config, data, out, resume=args.resume, on_eval=show,
                                                       check_meanwhile=checked, mesh=mesh,
                                                       sequence_parallel=args.sequence_parallel), config.max_iters,
                                 lambda r: f"train loss {r['train_loss']:.4f}  val loss {r['val_loss']:.4f}")
    if isinstance(result, int):
        return result
    startup = result.first_iteration_at - process_start()
    write_results(result, data, out, {"preset": preset, "data_path": str(args.data_path or "default"),
                                      "startup_seconds": startup, "compile_cache": args.compile_cache})
    print_done(out, result.final_val_loss, "on 200 batches", result.train_seconds, config.max_iters)
    console.print(f"start-up: the first iteration began {startup:.1f} s after the command started (compile cache: "
                  f"{args.compile_cache})", highlight=False)
    return 0


def train_with_progress(train: Callable[[Callable[[dict], None]], Any], total: int, describe: Callable[[dict], str]) -> Any:
    """`train(on_eval)` under the progress display ("iteration 500/2000", `describe(record)` at each
    evaluation): its result, or the exit status after a one-line error (3 when training diverged, else 2)."""
    from ..train.checkpoint import CheckpointError

    with training_progress("iteration") as progress:
        task = progress.add_task("compiling...", total=total)

        def show(record: dict) -> None:
            progress.update(task, completed=record["iteration"], description=describe(record))

        try:
            return train(show)
        except GradientCheckFailed:
            progress.stop()
            return 1
        except (ValueError, FileNotFoundError, CheckpointError, FloatingPointError) as err:
            progress.stop()
            error("train", str(err))
            return 3 if isinstance(err, FloatingPointError) else 2


def print_done(out: Path, val_loss: float, scored_on: str, seconds: float, iterations: int) -> None:
    """The last lines of a language model's run: its validation loss, the loop's time, where its files are."""
    console.print(f"done: validation loss {val_loss:.4f} {scored_on}; training loop {seconds:.1f} s "
                  f"({1e3 * seconds / max(iterations, 1):.1f} ms per iteration)")
    console.print(f"results: {out / 'results.json'}, plot: {out / 'loss.png'}, checkpoint: {out / 'checkpoint.npz'}; "
                  f"sample with: fnbackprop sample --out {out}", highlight=False)


def add_sample_command(sub) -> None:
    sample = sub.add_parser("sample", help="print text from a language model trained with `fnbackprop train --model gpt|rnn|lstm|gru`",
                            description="Continue a prompt with the GPT or recurrent net saved in a run's folder (its checkpoint holds the "
                                        "weights and the vocabulary, so no data is read).")
    sample.add_argument("--out", required=True, help="the run's folder, as given to `fnbackprop train --model gpt|rnn|lstm|gru --out`")
    sample.add_argument("--prompt", default="\n", help="text to continue, in the characters of the training text "
                                                       "(default: a new line)")
    sample.add_argument("--tokens", type=positive_int, default=500, help="characters to generate")
    sample.add_argument("--temperature", type=in_range(float, 0, low_open=True), default=0.8,
                        help="divides the logits: lower is more conservative")
    sample.add_argument("--top-k", type=positive_int, default=200, help="sample among the k likeliest characters")
    sample.add_argument("--seed", type=seed_int, default=0, help="the sampling's random key")
    sample.add_argument("--data-path", help=argparse.SUPPRESS)  # refused: the vocabulary comes from the checkpoint
    sample.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    """Print text generated by a saved run (a GPT's or a recurrent net's)."""
    import jax

    from ..train import rnn_lm
    from ..train.checkpoint import CheckpointError, read_meta
    from ..train.lm import CHECKPOINT_NAME, NotALanguageModel, generate, load_run

    if "data_path" in args.given:
        error("sample", "--data-path does not apply: the vocabulary and the weights come from the run's checkpoint (--out)")
        return 2
    try:
        saved = Path(args.out) / CHECKPOINT_NAME
        meta = read_meta(saved) if saved.is_file() else {}
        recurrent = meta.get("model") == "rnn"
        key = jax.random.PRNGKey(args.seed)
        if recurrent:
            rnn_model, params, data, _ = rnn_lm.load_rnn(Path(args.out), meta)
            tokens = rnn_lm.generate(rnn_model, params, data.encode(args.prompt or "\n"), args.tokens, key,
                                     args.temperature, args.top_k)
        else:
            model, params, data, _ = load_run(args.out)
            tokens = generate(model, params, data.encode(args.prompt or "\n"), args.tokens, key, args.temperature, args.top_k)
    except (CheckpointError, ValueError, FileNotFoundError, NotALanguageModel) as err:
        error("sample", str(err))
        return 2
    print(data.decode(tokens))
    return 0
