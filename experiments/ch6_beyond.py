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
`--epochs 1` measures an epoch of each. Writes results/ch6_beyond.{json,png}, or
results/ch6_beyond-NAME.{json,png} with --only NAME (so each configuration can run in its own process,
and a finished one is kept when a later one is stopped).
"""

import matplotlib.pyplot as plt
import numpy as np

from _common import mnist, parser, save, spread, train_all
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


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--only", choices=["expanded", "dropout", "ensemble"], default=None)
    p.add_argument("--epochs", type=int, default=None, help="override the published epochs (e.g. 1 to time an epoch)")
    p.set_defaults(seeds=1)
    args = p.parse_args()
    data = mnist(args)
    x, y = expand(data.x_train, data.y_train)
    data = data._replace(x_train=x, y_train=y)
    wanted = {"expanded": ["expanded"], "dropout": ["dropout"], "ensemble": ["dropout"], None: ["expanded", "dropout"]}[args.only]
    runs = []
    for name in wanted:
        layers, eta, l2, epochs, published = CONFIGS[name]
        n_seeds = ENSEMBLE if args.only == "ensemble" else args.seeds
        runs += [{"label": name, "layers": layers, "output": "softmax", "loss": "cross_entropy", "optimizer": "sgd", "eta": eta,
                  "l2": l2, "batch": 10, "epochs": args.epochs or (2 if args.quick else epochs), "split": "val", "seed": s,
                  "published": published, "keep_test_predictions": args.only == "ensemble"} for s in range(n_seeds)]
    done = train_all(runs, data, "chapter 6, expanded data")
    summary = {}
    for name in wanted:
        mine = [r for r in done if r["label"] == name]
        scores = [test_at_best_validation(r) for r in mine]
        summary[name] = {"published": CONFIGS[name][4], "test_at_best_val": spread(scores), "best_of_seeds": max(scores),
                         "epochs": mine[0]["epochs"], "seconds_per_epoch": float(np.median([r["seconds_per_epoch"] for r in mine])),
                         "minutes_per_run": float(np.mean([r["wall_seconds"] for r in mine]) / 60)}
        print(f"{name}: test at best validation {max(scores):.2f}% (best of {len(scores)}), published {CONFIGS[name][4]:.2f}%; "
              f"{summary[name]['seconds_per_epoch']:.0f} s per epoch of 250,000 images")
    if args.only == "ensemble":
        vote = majority_vote([r.pop("test_predictions") for r in done])
        summary["ensemble"] = {"published": ENSEMBLE_PUBLISHED, "networks": len(done),
                               "test_accuracy": float(100 * np.mean(vote == data.y_test))}
        print(f"ensemble of {len(done)}: {summary['ensemble']['test_accuracy']:.2f}% (published {ENSEMBLE_PUBLISHED}%)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in done:
        ax.plot(np.arange(1, len(r["curves"]["test"]) + 1), r["curves"]["test"], label=f"{r['label']} seed {r['seed']}")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Nielsen ch. 6 on the expanded data")
    ax.legend(fontsize=8)
    name = "ch6_beyond" + ("" if args.only is None else f"-{args.only}") + ("" if args.epochs is None else f"-{args.epochs}epochs")
    save(args, name, {"runs": done, "summary": summary}, fig)


if __name__ == "__main__":
    main()
