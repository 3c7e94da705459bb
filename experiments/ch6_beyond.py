"""Nielsen chapter 6 beyond the four basic networks: expanded training data, dropout, an ensemble of five.

    python experiments/ch6_beyond.py [--only expanded|dropout|ensemble] [--epochs N] [--data-path PATH]

Published (test accuracy at the epoch of best validation accuracy; mini-batch 10; network3.py):

    two conv-pool + FC 100, ReLU, eta 0.03, L2 0.1, on the expanded data, 60 epochs      99.37%
    two conv-pool + FC 1000 + FC 1000 (ReLU, dropout 0.5 on each FC and softmax input),
        eta 0.03, no L2, on the expanded data, 40 epochs                                  99.60%
    an ensemble of five such dropout networks (majority vote)                             99.67%

The expanded data: every training image and its four shifts by one pixel (up, down, left, right),
the uncovered row or column filled with 0 (Nielsen's expand_mnist.py): 250,000 images. network3 drops
the *inputs* of a dropout layer, so our spec has dropout(0.5) before each dense layer and the output.
On 2 CPU cores these runs take hours (see experiments/README.md for the measured seconds per epoch);
`--epochs 1` measures an epoch of each. After each epoch the validation and test accuracies are
computed, not the training split's (250,000 images: a third of an epoch's time). `--only NAME` runs
one configuration; `--first-seed S` with `--seeds N` trains seeds S..S+N-1.

Each finished network is written at once to results/ch6_beyond-runs/NAME-seedS.json (with its class
for every test image), so a run cut short keeps what it finished; while a network trains, its epochs
so far are in NAME-seedS.partial.json (drawn dashed in the figure), and the network itself after
each epoch in NAME-seedS.checkpoint/ (not committed), from which the next run of that network on the
same machine continues (so a run cut short loses at most one epoch; a fresh clone starts it over). `--figure-only` trains nothing and
redraws the figure and the summary from the saved files. `--only ensemble` trains only the
dropout networks of seeds 0-4 not already there, one at a time, and votes once all five are: the
ensemble can be built over several runs. Whenever three or four of them are saved, the dropout summary
holds their vote as `ensemble_so_far`. The summary and the figure go to
results/ch6_beyond[-NAME].{json,png}, over every saved network of each configuration.
"""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from _common import mnist, parser, result_stem, save, save_figure, spread, train_all
from ch6_conv import test_at_best_validation

CONV2 = "conv(20,5) maxpool(2) relu conv(40,5) maxpool(2) relu"
CONFIGS = {  # name: (layers, eta, l2 ours = network3's lambda x mini-batch, epochs, published)
    "expanded": (CONV2 + " dense(100) relu", 0.03, 1.0, 60, 99.37),
    "dropout": (CONV2 + " dropout(0.5) dense(1000) relu dropout(0.5) dense(1000) relu dropout(0.5)", 0.03, 0.0, 40, 99.60),
}
ENSEMBLE = 5
ENSEMBLE_PUBLISHED = 99.67


def expand(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each 28x28 image, then its shifts by one pixel down, up, right and left, zeros where nothing moved in."""
    images = x.reshape(-1, 28, 28)
    shifted = [images]
    for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        moved = np.roll(images, step, axis=axis)
        edge = 0 if step == 1 else -1
        if axis == 1:
            moved[:, edge, :] = 0
        else:
            moved[:, :, edge] = 0
        shifted.append(moved)
    return np.stack(shifted, axis=1).reshape(-1, 784), np.repeat(y, 5)


def majority_vote(predictions: list[list[int]]) -> np.ndarray:
    """Each test image's most frequent class among the networks (ties to the smallest class)."""
    votes = np.asarray(predictions)  # (networks, images)
    counts = np.stack([(votes == c).sum(0) for c in range(10)], axis=1)
    return counts.argmax(1)


def run_file(args, run: dict, partial: bool = False) -> Path:
    """results/ch6_beyond-runs/NAME-seedS[-Eepochs][.partial].json (the epochs named when not the published number)."""
    folder = result_stem(args, "ch6_beyond-runs")
    folder.mkdir(exist_ok=True)
    suffix = "" if run["epochs"] == CONFIGS[run["label"]][3] else f"-{run['epochs']}epochs"
    return folder / f"{run['label']}-seed{run['seed']}{suffix}{'.partial' if partial else ''}.json"


def saved(args, name: str, epochs: int, partial: bool = False) -> dict[int, dict]:
    """The networks of configuration `name` trained for `epochs` and saved, by seed (or those cut short)."""
    runs = [json.loads(path.read_text()) for path in sorted(result_stem(args, "ch6_beyond-runs").glob(f"{name}-seed*.json"))
            if path.name.endswith(".partial.json") == partial]
    return {run["seed"]: run for run in runs if run["epochs"] == epochs}


def checkpoint_dir(args, run: dict) -> Path:
    """results/ch6_beyond-runs/NAME-seedS[-Eepochs].checkpoint/: the network after its last finished epoch,
    which a later run of the same configuration and epochs continues from (not committed: 7 MB for the
    dropout network)."""
    return run_file(args, run).with_suffix(".checkpoint")


def save_partial(args, run: dict, history: list[dict]) -> None:
    """The epochs a network has finished so far (kept if the run is stopped before it ends)."""
    run_file(args, run, partial=True).write_text(json.dumps({**run, "epochs_done": history}, indent=1))


def save_finished(args, run: dict) -> None:
    run_file(args, run).write_text(json.dumps(run, indent=1))
    run_file(args, run, partial=True).unlink(missing_ok=True)


def figure(args, names: list[str], n_epochs: dict[str, int], vote: dict | None = None):
    """Test accuracy per epoch of every saved network (solid) and every one cut short (dashed), the
    published figures dotted; with `vote` (the summary's ensemble or ensemble so far) the ensemble's
    accuracy as a black line and its published figure dotted in black."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(names):
        for k, run in enumerate(saved(args, name, n_epochs[name]).values()):  # one marker per seed
            ax.plot(np.arange(1, len(run["curves"]["test"]) + 1), run["curves"]["test"], color=f"C{i}", lw=1,
                    marker="os^Dv"[k % 5], markersize=3, label=f"{name} seed {run['seed']}")
        for run in saved(args, name, n_epochs[name], partial=True).values():
            test = [100 * h["test_accuracy"] for h in run["epochs_done"]]
            ax.plot(np.arange(1, len(test) + 1), test, color=f"C{i}", ls="--",
                    label=f"{name} seed {run['seed']} ({len(test)} of {run['epochs']} epochs, cut short)")
        ax.axhline(CONFIGS[name][4], color=f"C{i}", ls=":", lw=1, label=f"{name}, published {CONFIGS[name][4]}%")
    if vote is not None:
        ax.axhline(vote["test_accuracy"], color="k", lw=1.5,
                   label=f"majority vote of {vote['networks']} (after epoch {n_epochs['dropout']}): {vote['test_accuracy']:.2f}%")
        ax.axhline(vote["published"], color="k", ls=":", lw=1, label=f"ensemble of five, published {vote['published']}%")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Nielsen ch. 6 on the expanded data")
    ax.legend(fontsize=8)
    return fig


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--only", choices=["expanded", "dropout", "ensemble"], default=None)
    p.add_argument("--epochs", type=int, default=None, help="override the published epochs (e.g. 1 to time an epoch)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed to train (default 0)")
    p.add_argument("--figure-only", action="store_true", help="train nothing: redraw the figure from the saved networks")
    p.set_defaults(seeds=1)
    args = p.parse_args()
    names = {"expanded": ["expanded"], "dropout": ["dropout"], "ensemble": ["dropout"], None: ["expanded", "dropout"]}[args.only]
    n_epochs = {name: args.epochs or (2 if args.quick else CONFIGS[name][3]) for name in names}
    if args.figure_only:
        wanted = []
    elif args.only == "ensemble":
        wanted = [s for s in range(ENSEMBLE) if s not in saved(args, "dropout", n_epochs["dropout"])]
        print(f"ensemble: {ENSEMBLE - len(wanted)} of {ENSEMBLE} dropout networks already saved; training seeds {wanted}")
    else:
        wanted = list(range(args.first_seed, args.first_seed + args.seeds))
    runs = []
    for name in names:
        layers, eta, l2, _, published = CONFIGS[name]
        runs += [{"label": name, "layers": layers, "output": "softmax", "loss": "cross_entropy", "optimizer": "sgd", "eta": eta,
                  "l2": l2, "batch": 10, "epochs": n_epochs[name], "split": "val", "seed": s, "published": published,
                  "keep_test_predictions": True, "evaluate_train": False} for s in wanted]
    data = mnist(args)
    if runs:
        x, y = expand(data.x_train, data.y_train)
        train_all(runs, data._replace(x_train=x, y_train=y), "chapter 6, expanded data",
                  on_run=lambda run: save_finished(args, run), on_epoch=lambda run, history: save_partial(args, run, history),
                  checkpoint_dir=lambda run: checkpoint_dir(args, run))
    summary, done = {}, []
    for name in names:
        mine = list(saved(args, name, n_epochs[name]).values())
        if not mine:
            print(f"{name}: no network trained for {n_epochs[name]} epochs is saved yet")
            continue
        done += mine
        scores = [test_at_best_validation(r) for r in mine]
        summary[name] = {"published": CONFIGS[name][4], "seeds": [r["seed"] for r in mine], "test_at_best_val": spread(scores),
                         "best_of_seeds": max(scores), "epochs": n_epochs[name],
                         "seconds_per_epoch": float(np.median([r["seconds_per_epoch"] for r in mine])),
                         "minutes_per_run": float(np.mean([r["wall_seconds"] for r in mine]) / 60)}
        print(f"{name}: test at best validation {spread(scores)['mean']:.2f}% (mean of {len(scores)} seeds), published "
              f"{CONFIGS[name][4]:.2f}%; {summary[name]['seconds_per_epoch']:.0f} s per epoch of the expanded data")
    if "dropout" in summary:
        members = [r for r in done if r["label"] == "dropout" and r["seed"] < ENSEMBLE]
        if len(members) >= 3:  # fewer than five: the vote so far, named as such
            vote = majority_vote([r["test_predictions"] for r in members])
            key = "ensemble" if len(members) == ENSEMBLE else "ensemble_so_far"
            summary[key] = {"published": ENSEMBLE_PUBLISHED, "networks": len(members), "seeds": [r["seed"] for r in members],
                            "test_accuracy": float(100 * np.mean(vote == data.y_test))}
            print(f"ensemble of {len(members)} (of {ENSEMBLE}): {summary[key]['test_accuracy']:.2f}% "
                  f"(published, of five: {ENSEMBLE_PUBLISHED}%)")
        if len(members) < ENSEMBLE:
            print(f"ensemble: {len(members)} of {ENSEMBLE} networks saved; run again to train the rest")
    for r in done:
        r.pop("test_predictions", None)
    vote = summary.get("ensemble", summary.get("ensemble_so_far"))
    name = "ch6_beyond" + ("" if args.only is None else f"-{args.only}") + ("" if args.epochs is None else f"-{args.epochs}epochs")
    if args.figure_only:  # the summary is redone; the JSON keeps the wall time of the run that trained
        path = result_stem(args, name).with_suffix(".json")
        if path.exists():
            path.write_text(json.dumps({**json.loads(path.read_text()), "runs": done, "summary": summary}, indent=1))
        save_figure(args, name, figure(args, names, n_epochs, vote))
    else:
        save(args, name, {"runs": done, "summary": summary}, figure(args, names, n_epochs, vote))


if __name__ == "__main__":
    main()
