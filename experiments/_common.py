"""What every experiment script shares: arguments, MNIST, one training run, progress, JSON, figures.

A run is described by a plain dict (its JSON record), so every number in experiments/results/ can be
traced to the configuration that produced it:

    {"sizes": [784, 30, 10], "hidden": "sigmoid", "output": "sigmoid", "loss": "quadratic",
     "init": "nielsen_large", "optimizer": "sgd", "eta": 3.0, "l2": 0.0, "batch": 10, "epochs": 30,
     "split": "test", "seed": 0}
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import jax
import matplotlib
import numpy as np
import optax
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import fnbackprop as fb
from fnbackprop.train.data import Dataset, load_mnist
from fnbackprop.train.checkpoint import read_meta
from fnbackprop.train.epochs import CHECKPOINT_NAME, fit, make_optimizer, split_logits

matplotlib.use("Agg")

RESULTS = Path(__file__).resolve().parent / "results"
STARTED = time.perf_counter()  # the script's wall time, JAX start-up and compilation included, goes in its JSON
QUICK_TRAIN = 5_000  # --quick: the first 5,000 training images, 2 epochs, 1 seed


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test: 5,000 training images, 2 epochs, 1 seed")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--data-path", help="mnist.pkl.gz or a folder of IDX files (default: $FNBACKPROP_MNIST, ../shared/data)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and PNG (default experiments/results)")
    return p


def mnist(args: argparse.Namespace) -> Dataset:
    """Nielsen's split; with --quick only the first QUICK_TRAIN training images."""
    data = load_mnist(args.data_path)
    if args.quick:
        data = data._replace(x_train=data.x_train[:QUICK_TRAIN], y_train=data.y_train[:QUICK_TRAIN])
    return data


def seeds(args: argparse.Namespace) -> list[int]:
    return [0] if args.quick else list(range(args.seeds))


def epochs(args: argparse.Namespace, published: int) -> int:
    return 2 if args.quick else published


def build(run: dict) -> fb.Network:
    """An MLP from run["sizes"], or any network from run["layers"] (`fnbackprop.models.architecture`, on MNIST images)."""
    if "layers" in run:
        from fnbackprop.models.architecture import layers_from_spec
        from fnbackprop.train.data import IMAGE_SHAPES

        return fb.network(layers_from_spec(run["layers"], 10, IMAGE_SHAPES["mnist"], 784), (784,), output=run["output"],
                          loss=run["loss"])
    return fb.mlp(run["sizes"], hidden=run["hidden"], output=run["output"], loss=run["loss"], init=run["init"])


def optimizer(run: dict, n_train: int) -> optax.GradientTransformation:
    return make_optimizer(run.get("optimizer", "sgd"), optax.constant_schedule(run["eta"]), l2=run.get("l2", 0.0),
                          n_train=n_train)


def checkpointed_epochs(folder: Path | None) -> list[dict]:
    """The epochs already done by the run checkpointed in `folder` (none without a checkpoint)."""
    if folder is None or not (folder / CHECKPOINT_NAME).exists():
        return []
    return read_meta(folder / CHECKPOINT_NAME).get("history", [])


def train(run: dict, data: Dataset, on_epoch: Callable[[dict], None] | None = None,
          checkpoint_dir: Path | None = None) -> dict:
    """One training run; the record gains the per-epoch accuracy on run["split"], its best and last.

    With `checkpoint_dir` the parameters are saved there after every epoch and a run whose checkpoint
    is there continues from it (`fit`'s resume: the same batches, the same end, or a refusal when the
    stored run's configuration differs). run["evaluate_train"] False leaves the training split's
    metrics out of each epoch."""
    start = time.perf_counter()
    net = build(run)
    resume = bool(checkpointed_epochs(checkpoint_dir))
    result = fit(net, data, optimizer=optimizer(run, len(data.x_train)), epochs=run["epochs"],
                 batch_size=run["batch"], key=jax.random.PRNGKey(run["seed"]), grad_source=run.get("grad", "hand"),
                 on_epoch=on_epoch, out_dir=checkpoint_dir, resume=resume, config=run,
                 evaluate_train=run.get("evaluate_train", True))
    curve = [100 * h[f"{run['split']}_accuracy"] for h in result.history]
    x, y = (data.x_val, data.y_val) if run["split"] == "val" else (data.x_test, data.y_test)
    curves = {split: [100 * h[f"{split}_accuracy"] for h in result.history] for split in ("val", "test")
              if f"{split}_accuracy" in result.history[0]}
    extra = {}
    if run.get("keep_test_predictions"):  # for ensembles: the final network's class for every test image
        extra["test_predictions"] = np.asarray(split_logits(net, result.params, data.x_test)).argmax(-1).tolist()
    return {**run, "accuracy": curve, "best": max(curve), "final": curve[-1], "curves": curves, **extra,
            **final_outputs(net, result.params, x, y),
            "cost": [h["mean_batch_cost"] for h in result.history],
            "seconds_per_epoch": float(np.median([h["seconds"] for h in result.history])),
            "wall_seconds": time.perf_counter() - start, **({"resumed": True} if resume else {})}


def final_outputs(net: fb.Network, params: Any, x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Per class: the % of its images classified correctly (a class never predicted shows as 0), and per
    output neuron the largest activation A[L] over all the images (a saturated, silent neuron's is ~0)."""
    a = np.asarray(jax.jit(net.apply)(params, x))
    predicted = a.argmax(-1)
    return {"final_recall_per_class": [float(100 * np.mean(predicted[y == c] == c)) for c in range(net.n_out)],
            "final_max_output_per_neuron": a.max(0).astype(float).tolist()}


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn())


def train_all(runs: list[dict], data: Dataset, title: str, on_run: Callable[[dict], None] | None = None,
              on_epoch: Callable[[dict, list[dict]], None] | None = None,
              checkpoint_dir: Callable[[dict], Path] | None = None) -> list[dict]:
    """Every run in turn, one progress display over all their epochs; `on_run` gets each record as it is done
    (to save it before the next run starts), `on_epoch` the run and its epochs so far after each epoch;
    `checkpoint_dir(run)`, when given, is the folder each run is checkpointed in and resumed from."""
    done = []
    with progress() as shown:
        task = shown.add_task(title, total=sum(r["epochs"] for r in runs))
        for run in runs:
            shown.update(task, description=f"{title}: {run.get('label', '')} seed {run['seed']}")
            folder = checkpoint_dir(run) if checkpoint_dir is not None else None
            history: list[dict] = checkpointed_epochs(folder)
            shown.advance(task, len(history))

            def epoch_done(record: dict, run: dict = run, history: list[dict] = history) -> None:
                shown.advance(task)
                history.append(record)
                if on_epoch is not None:
                    on_epoch(run, history)
            done.append(train(run, data, on_epoch=epoch_done, checkpoint_dir=folder))
            if on_run is not None:
                on_run(done[-1])
    return done


def spread(values: list[float]) -> dict:
    """mean, sample standard deviation, min, max (the spread over seeds)."""
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def machine() -> str:
    return f"{platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s), {platform.processor() or 'cpu'}"


def result_stem(args: argparse.Namespace, name: str) -> Path:
    """experiments/results/NAME, or NAME-quick for --quick, so a smoke test never overwrites a full run."""
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out / (name + ("-quick" if args.quick else ""))


def save_figure(args: argparse.Namespace, name: str, fig: Any) -> None:
    path = result_stem(args, name).with_suffix(".png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def save(args: argparse.Namespace, name: str, payload: dict[str, Any], fig: Any) -> None:
    """NAME.json (the configuration, every run and a summary) and NAME.png."""
    path = result_stem(args, name).with_suffix(".json")
    path.write_text(json.dumps({"experiment": name, "quick": args.quick, "machine": machine(),
                                "wall_seconds": time.perf_counter() - STARTED, **payload}, indent=1))
    print(f"wrote {path}")
    save_figure(args, name, fig)
