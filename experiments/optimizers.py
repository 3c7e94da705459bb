"""Steepest descent vs momentum vs adaptive learning rates, on one network and MNIST.

    python experiments/optimizers.py [--quick] [--seeds 3] [--epochs 15] [--data-path PATH]

[784, 100, 10], ReLU hidden layer (He init), softmax + cross-entropy (fused dZ = (A - Y)/m), batch 32,
the hand-coded backward throughout; optax's sgd, momentum (0.9), Nesterov (0.9), RMSProp and Adam,
each over a 3-point learning-rate sweep. Reported: for each optimizer at its best rate, the best test
accuracy and the first epoch that reaches 97%, means over seeds. Writes results/optimizers.{json,png}.
"""

import matplotlib.pyplot as plt
import numpy as np

from _common import mnist, parser, save, seeds, spread, train_all

SWEEP = {  # factors of about 3 around each optimizer's usual rate; momentum 0.9 multiplies the step by ~10
    "sgd": (0.1, 0.3, 1.0),
    "momentum": (0.01, 0.03, 0.1),
    "nesterov": (0.01, 0.03, 0.1),
    "rmsprop": (3e-4, 1e-3, 3e-3),
    "adam": (3e-4, 1e-3, 3e-3),
}
TARGET = 97.0


def runs(args) -> list[dict]:
    n_epochs = 2 if args.quick else args.epochs
    sweep = {k: v[1:2] for k, v in SWEEP.items()} if args.quick else SWEEP
    return [{"label": f"{name} {eta:g}", "name": name, "sizes": [784, 100, 10], "hidden": "relu", "output": "softmax",
             "loss": "cross_entropy", "init": "he", "optimizer": name, "eta": eta, "batch": 32, "epochs": n_epochs,
             "split": "test", "seed": s} for name, etas in sweep.items() for eta in etas for s in seeds(args)]


def epochs_to(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, a in enumerate(curve) if a >= target), None)


def summarise(done: list[dict]) -> dict:
    table = {}
    for name in SWEEP:
        by_rate = {}
        for eta in sorted({r["eta"] for r in done if r["name"] == name}):
            mine = [r for r in done if r["name"] == name and r["eta"] == eta]
            reach = [epochs_to(r["accuracy"], TARGET) for r in mine]
            by_rate[eta] = {"best": spread([r["best"] for r in mine]),
                            "epochs_to_97": None if None in reach else float(np.mean(reach)),
                            "cost": np.mean([r["cost"] for r in mine], 0).tolist()}
        best_eta = max(by_rate, key=lambda e: by_rate[e]["best"]["mean"])
        table[name] = {"best_eta": best_eta, "by_rate": by_rate}
    return table


def figure(table: dict):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in table.items():
        cost = row["by_rate"][row["best_eta"]]["cost"]
        ax.plot(range(1, len(cost) + 1), cost, marker=".", label=f"{name} (eta {row['best_eta']:g})")
    ax.set(yscale="log", xlabel="epoch", ylabel="training cross-entropy (mean over the epoch's batches and seeds)",
           title="Optimizers on [784, 100, 10] ReLU, each at its best swept rate")
    ax.legend(fontsize=8)
    return fig


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args()
    done = train_all(runs(args), mnist(args), "optimizers")
    table = summarise(done)
    for name, row in table.items():
        r = row["by_rate"][row["best_eta"]]
        reach = "not reached" if r["epochs_to_97"] is None else f"{r['epochs_to_97']:.1f}"
        print(f"{name:9s} best eta {row['best_eta']:<7g} best test {r['best']['mean']:.2f}% ± {r['best']['std']:.2f}  "
              f"epochs to {TARGET:g}% (mean over seeds): {reach}")
    save(args, "optimizers", {"target": TARGET, "table": table, "runs": done}, figure(table))


if __name__ == "__main__":
    main()
