"""`fnbackprop train`: an MLP or conv net (the default), or a character-level language model: the GPT
(`--model gpt`) or a recurrent net (`--model rnn|lstm|gru`).

A gradient check on one batch, then the training with a progress display; results.json, a plot and a
checkpoint in the run's folder. Options of one model given to the other are refused in one line, never
ignored and never recorded."""

from __future__ import annotations

import argparse

from .common import (UsageError, console, error, gradient_check_passes, in_range, int_list, name_list, not_applicable,
                     positive_int, run_folder, seed_int, training_progress)
from .gpt import GPT_ONLY, LM_OPTIONS, add_gpt_options, add_lm_options, run_train_gpt
from .rnn import RNN_ONLY, add_rnn_options, run_train_rnn

DEFAULT_HEADS = {"classification": ("softmax", "cross_entropy"), "binary": ("sigmoid", "bce"), "regression": ("identity", "mse")}
DATASETS = ("digits", "breast_cancer", "diabetes", "mnist")
#: options of the MLP and conv trainer alone (argparse destinations)
MLP_ONLY = ("dataset", "widths", "layers", "activation", "output", "loss", "init", "momentum", "schedule",
            "decay_rate", "decay_epochs", "l2", "epochs", "devices")
#: options every trainer takes
SHARED = ("model", "data_path", "lr", "batch_size", "seed", "grad_source", "out", "resume", "force")
LANGUAGE_MODEL = ("preset", *LM_OPTIONS)
RECURRENT = ("rnn", "lstm", "gru")
#: what each --model reads besides SHARED
OPTIONS_OF = {"mlp": (*MLP_ONLY, "optimizer"), "gpt": (*LANGUAGE_MODEL, *GPT_ONLY),
              **{cell: (*LANGUAGE_MODEL, *RNN_ONLY, "optimizer") for cell in RECURRENT}}
MLP_DEFAULTS = {"lr": 0.05, "batch_size": 32, "optimizer": "momentum"}


def add_train_command(sub) -> None:
    train = sub.add_parser("train", help="train an MLP or conv net (default: the bundled digits), or a character-level GPT or recurrent net",
                           description="Train with the hand-coded backward (checked against jax.grad on one batch first). "
                                       "--model mlp (the default) trains an MLP or, with --layers, any stack of layers on a "
                                       "dataset; --model gpt trains nanoGPT's character-level GPT on a text, --model rnn, lstm or gru "
                                       "char-rnn's recurrent nets. Options of one model are refused with another.")
    both = train.add_argument_group("every model")
    both.add_argument("--model", default="mlp", choices=["mlp", "gpt", *RECURRENT], help="what to train")
    both.add_argument("--data-path", default=None,
                      help="mlp: MNIST as mnist.pkl.gz or a folder of its IDX files (implies --dataset mnist; else "
                           "$FNBACKPROP_MNIST, ../shared/data); gpt, rnn, lstm, gru: a UTF-8 text file or a folder holding "
                           "tinyshakespeare/input.txt (else $FNBACKPROP_TEXT, ../shared/data)")
    both.add_argument("--lr", type=in_range(float, 0, low_open=True), default=None,
                      help=f"learning rate (default: {MLP_DEFAULTS['lr']} for mlp; for the language models the preset's)")
    both.add_argument("--batch-size", type=positive_int, default=None,
                      help=f"examples (sequences) per step (default: {MLP_DEFAULTS['batch_size']} for mlp; for the language "
                           "models the preset's)")
    both.add_argument("--seed", type=seed_int, default=0, help="initialisation, shuffles and dropout")
    both.add_argument("--grad-source", default="hand", choices=["hand", "autodiff"],
                      help="hand: the hand-coded backward; autodiff: jax.grad")
    both.add_argument("--out", default=None,
                      help="the run's folder (default: a fresh runs/DATASET-SOURCE-seedN or runs/MODEL-PRESET-SOURCE-seedN); "
                           "one that holds a run needs --resume or --force")
    both.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    both.add_argument("--force", action="store_true", help="overwrite the run in --out")
    both.add_argument("--text", help=argparse.SUPPRESS)  # the old name of --data-path: refused with a pointer

    mlp = train.add_argument_group("mlp (--model mlp)")
    mlp.add_argument("--dataset", default="digits", choices=DATASETS,
                     help="digits, breast_cancer and diabetes are bundled with scikit-learn; mnist is read from --data-path "
                          "(default: digits, or mnist with --data-path)")
    mlp.add_argument("--widths", type=int_list, default=[64], help="hidden layer widths, comma-separated")
    mlp.add_argument("--layers", default=None,
                     help='any architecture instead of --widths/--activation, e.g. "conv(20,5) relu maxpool(2) dense(100) relu" '
                          "(see fnbackprop.models.architecture); the output layer is added")
    mlp.add_argument("--activation", type=name_list, default=["relu"], help="hidden activation, or one per hidden layer")
    mlp.add_argument("--output", default=None, help="output activation (default: by task: softmax, sigmoid or identity)")
    mlp.add_argument("--loss", default=None, help="loss (default: by task: cross_entropy, bce or mse)")
    mlp.add_argument("--init", default="he", help="weight init: lecun, he, nielsen, nielsen_large")
    both.add_argument("--optimizer", default=None,
                      help="mlp: sgd, momentum, nesterov, adam, rmsprop, adagrad; rnn, lstm, gru: rmsprop, adam, adagrad; "
                           "gpt: always AdamW (default: momentum for mlp, the preset's for the recurrent nets)")
    mlp.add_argument("--momentum", type=in_range(float, 0, 1, high_open=True), default=0.9,
                     help="momentum and nesterov: the velocity's decay")
    mlp.add_argument("--schedule", default="constant", help="learning-rate schedule: constant, exponential, step, cosine")
    mlp.add_argument("--decay-rate", type=in_range(float, 0, 1, low_open=True), default=0.5,
                     help="exponential and step schedules: the factor per --decay-epochs")
    mlp.add_argument("--decay-epochs", type=in_range(float, 0, low_open=True), default=10,
                     help="exponential and step schedules: epochs per factor")
    mlp.add_argument("--l2", type=in_range(float, 0), default=0.0, help="lambda of Dong's L2 rule W -= (eta lambda / n) W")
    mlp.add_argument("--epochs", type=positive_int, default=30, help="passes over the training set")
    mlp.add_argument("--devices", type=positive_int, default=1,
                     help="data-parallel over N devices (on a CPU, N devices are made: one per core is the useful count)")
    add_lm_options(train)
    add_gpt_options(train)
    add_rnn_options(train)
    train.set_defaults(func=run_train)


def refusal(args: argparse.Namespace) -> str | None:
    """Why this command line cannot run as written (one line), or None."""
    given = args.given
    if "text" in given:
        return "--text is now --data-path (one option for the data of every model)"
    wrong = not_applicable(given, set(given) - set(SHARED) - set(OPTIONS_OF[args.model]),
                           f"to --model {args.model} (its options: fnbackprop train --help)")
    if wrong:
        return wrong
    if "data_path" in given and "dataset" in given and args.dataset != "mnist":
        return f"--data-path is read for --dataset mnist only; {args.dataset} is bundled with scikit-learn"
    return None


def run_train(args: argparse.Namespace) -> int:
    """Refuse what does not apply, then train the chosen model."""
    reason = refusal(args)
    if reason:
        error("train", reason)
        return 2
    if args.model == "gpt":
        return run_train_gpt(args)
    if args.model in RECURRENT:
        return run_train_rnn(args)
    return run_train_mlp(args)


def mlp_config(args: argparse.Namespace) -> dict:
    """The MLP run's options as recorded in results.json and the checkpoint (its own and the shared ones)."""
    return {name: getattr(args, name) for name in (*SHARED, *OPTIONS_OF["mlp"])}


def run_train_mlp(args: argparse.Namespace) -> int:
    """Train an MLP; check the hand-coded gradient on one batch first; JSON, checkpoint and a plot."""
    import jax

    from ..models.network import mlp
    from ..train import data as datasets
    from ..train.checkpoint import CheckpointError
    from ..train.epochs import TrainingDiverged, fit, initial_params, make_optimizer, make_schedule, resume_from
    from ..train.plot import plot_history

    if "data_path" in args.given and "dataset" not in args.given:
        args.dataset = "mnist"
    for name, value in MLP_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        ds = datasets.load(args.dataset, args.data_path)
    except (FileNotFoundError, ValueError, TypeError) as err:
        error("train", str(err))
        return 2
    output, loss = DEFAULT_HEADS[ds.task]
    output, loss = args.output or output, args.loss or loss
    sizes = [ds.n_features, *args.widths, ds.n_outputs]
    hidden = args.activation if len(args.activation) > 1 else args.activation[0]
    try:
        if args.layers:
            from ..models.architecture import layers_from_spec
            from ..models.network import network

            net = network(layers_from_spec(args.layers, ds.n_outputs, datasets.IMAGE_SHAPES.get(args.dataset), ds.n_features),
                          (ds.n_features,), output=output, loss=loss)
            described = " ".join(layer.name for layer in net.layers)
        else:
            net = mlp(sizes, hidden=hidden, output=output, loss=loss, init=args.init)
            described = f"MLP {sizes}, {hidden} hidden"
        steps = -(-len(ds.x_train) // args.batch_size)
        schedule = make_schedule(args.schedule, args.lr, steps, args.epochs, args.decay_rate, args.decay_epochs)
        optimizer = make_optimizer(args.optimizer, schedule, momentum=args.momentum, l2=args.l2, n_train=len(ds.x_train))
        out = run_folder(args.out, f"runs/{args.dataset}-{args.grad_source}-seed{args.seed}", resume=args.resume,
                         force=args.force)
        mesh = None
        if args.devices > 1:  # a batch size that does not divide among the devices is refused by fit (make_epoch), exit 2
            from ..parallel import ask_for_cpu_devices, make_mesh

            ask_for_cpu_devices(args.devices)  # a CPU's devices (a GPU's are what they are)
            mesh = make_mesh(args.devices)
    except (ValueError, UsageError) as err:
        error("train", str(err))
        return 2
    config = mlp_config(args) | {"sizes": sizes, "output": output, "loss": loss, "out": str(out)}
    key = jax.random.PRNGKey(args.seed)
    probe = initial_params(net, ds, key)  # the parameters fit starts from
    if args.resume:  # refuse a checkpoint that does not fit before any work, leaving it as it is
        try:
            _, done = resume_from(out, (probe, optimizer.init(probe)), config)
        except (FileNotFoundError, CheckpointError) as err:
            error("train", str(err))
            return 2
        if len(done) >= args.epochs:
            error("train", f"the checkpoint in {out} already holds {len(done)} epochs; ask for more with --epochs")
            return 2
    console.print(f"[bold]{args.dataset}[/bold]: {len(ds.x_train)} train / {len(ds.x_test)} test examples; "
                  f"{described}, {output} + {loss}; {args.optimizer} lr {args.lr}, batch {args.batch_size}"
                  + (f", data-parallel over {args.devices} {jax.devices()[0].platform} devices" if mesh else "")
                  + f"; writing to {out}", highlight=False)
    if not gradient_check_passes(net, probe, ds.x_train[: args.batch_size], ds.y_train[: args.batch_size]):
        return 1
    with training_progress("epoch") as progress:
        task = progress.add_task("compiling...", total=args.epochs)

        def show(record: dict) -> None:
            acc = f"  test acc {100 * record['test_accuracy']:.2f}%" if "test_accuracy" in record else ""
            progress.update(task, completed=record["epoch"], description=f"train cost {record['train_cost']:.4f}{acc}")

        try:
            result = fit(net, ds, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size, key=key,
                         grad_source=args.grad_source, out_dir=out, resume=args.resume, config=config, on_epoch=show,
                         mesh=mesh)
        except (TrainingDiverged, FileNotFoundError, ValueError) as err:
            progress.stop()
            error("train", str(err))
            return 3 if isinstance(err, TrainingDiverged) else 2
    history = result.history
    plot_history(history, out / "curves.png", f"{args.dataset}: MLP {sizes}, {args.optimizer}, {args.grad_source} gradients")
    last = history[-1]
    summary = f"test cost {last['test_cost']:.4f}"
    if "test_accuracy" in last:
        summary = f"test accuracy {100 * last['test_accuracy']:.2f}% (best {100 * max(h['test_accuracy'] for h in history):.2f}%), " + summary
    console.print(f"done after {last['epoch']} epochs: {summary}")
    console.print(f"results: {out / 'results.json'}, plot: {out / 'curves.png'}, checkpoint: {out / 'checkpoint.npz'}")
    return 0
