"""Nielsen chapter 3: network2.py's cross-entropy cost, L2 regularisation and weight initialisation.

    python experiments/ch3_cross_entropy.py [--quick] [--seeds 3] [--data-path PATH]

Sigmoid layers with the cross-entropy cost (our sigmoid output + "bce", whose backward is the fused
dZ = (A - Y)/m), SGD with mini-batch 10. L2 is Nielsen's rule w <- (1 - eta lambda / n) w - eta dC/dw
with n = 50,000. Published figures (best accuracy over the epochs):

    [784, 30, 10]  eta 0.5, N(0,1) weights, 30 epochs, test              95.49%
    [784, 100, 10] eta 0.5, N(0,1) weights, 30 epochs, test              96.82%
    [784, 30, 10]  eta 0.5, lambda 5.0, N(0,1) weights, 30 epochs, test  96.49%
    [784, 100, 10] eta 0.5, lambda 5.0, N(0,1), 30 epochs, validation    97.92%
    [784, 100, 10] eta 0.1, lambda 5.0, N(0,1), 60 epochs, validation    98.04%
    eta 0.1, lambda 5.0, 30 epochs, validation, N(0, 1/n_in) vs N(0, 1) weights:
        30 hidden 96.50% vs 96.37%, 100 hidden 97.81% vs 97.42%; after epoch 1 about 93% vs under 87%

Writes results/ch3_cross_entropy.{json,png} (published vs ours) and ch3_init.png (the two inits).
"""

import matplotlib.pyplot as plt
import numpy as np

from _common import epochs, mnist, parser, save, save_figure, seeds, spread, train_all

CONFIGS = [  # label, hidden, eta, lambda, init, epochs, split, published
    ("30 hidden, eta 0.5", 30, 0.5, 0.0, "nielsen_large", 30, "test", 95.49),
    ("100 hidden, eta 0.5", 100, 0.5, 0.0, "nielsen_large", 30, "test", 96.82),
    ("30 hidden, eta 0.5, L2 5.0", 30, 0.5, 5.0, "nielsen_large", 30, "test", 96.49),
    ("100 hidden, eta 0.5, L2 5.0", 100, 0.5, 5.0, "nielsen_large", 30, "val", 97.92),
    ("100 hidden, eta 0.1, L2 5.0, 60 epochs", 100, 0.1, 5.0, "nielsen_large", 60, "val", 98.04),
    ("30 hidden, init N(0,1/n_in)", 30, 0.1, 5.0, "nielsen", 30, "val", 96.50),
    ("30 hidden, init N(0,1)", 30, 0.1, 5.0, "nielsen_large", 30, "val", 96.37),
    ("100 hidden, init N(0,1/n_in)", 100, 0.1, 5.0, "nielsen", 30, "val", 97.81),
    ("100 hidden, init N(0,1)", 100, 0.1, 5.0, "nielsen_large", 30, "val", 97.42),
]


def runs(args) -> list[dict]:
    return [{"label": label, "sizes": [784, h, 10], "hidden": "sigmoid", "output": "sigmoid", "loss": "bce",
             "init": init, "optimizer": "sgd", "eta": eta, "l2": lam, "batch": 10, "epochs": epochs(args, n_epochs),
             "split": split, "seed": s, "published": published}
            for label, h, eta, lam, init, n_epochs, split, published in CONFIGS for s in seeds(args)]


def comparison_figure(summary: dict):
    labels = list(summary)
    ours = [summary[k]["best"]["mean"] for k in labels]
    errs = [summary[k]["best"]["std"] for k in labels]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    y = np.arange(len(labels))
    ax.barh(y - 0.2, [summary[k]["published"] for k in labels], 0.4, label="published (Nielsen)", color="0.6")
    ax.barh(y + 0.2, ours, 0.4, xerr=errs, label="fnbackprop, hand-coded backward (mean ± sd over seeds)",
            color="tab:blue")
    ax.set_yticks(y, [f"{k} ({summary[k]['split']})" for k in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(94, 99), xlabel="best accuracy over the epochs (%)",
           title="Nielsen ch. 3: cross-entropy, L2 and initialisation, published vs reproduced")
    ax.legend(loc="upper center", bbox_to_anchor=(0.4, -0.12), ncol=2, fontsize=8)
    return fig


def init_figure(done: list[dict]):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, colour in (("30 hidden, init N(0,1/n_in)", "tab:blue"), ("30 hidden, init N(0,1)", "tab:cyan"),
                          ("100 hidden, init N(0,1/n_in)", "tab:red"), ("100 hidden, init N(0,1)", "tab:orange")):
        curves = np.array([r["accuracy"] for r in done if r["label"] == label])
        x = np.arange(1, curves.shape[1] + 1)
        ax.plot(x, curves.mean(0), color=colour, label=label)
        ax.fill_between(x, curves.min(0), curves.max(0), color=colour, alpha=0.2)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%), mean and range over seeds", ylim=(85, 99),
           title="Weights N(0, 1/n_in) learn faster than N(0, 1)\n(sigmoid + cross-entropy, eta 0.1, lambda 5.0, batch 10)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def main() -> None:
    args = parser(__doc__).parse_args()
    done = train_all(runs(args), mnist(args), "chapter 3")
    summary = {}
    for label, *_, split, published in CONFIGS:
        mine = [r for r in done if r["label"] == label]
        summary[label] = {"published": published, "split": split, "best": spread([r["best"] for r in mine]),
                          "first_epoch": spread([r["accuracy"][0] for r in mine]),
                          "final": spread([r["final"] for r in mine])}
        print(f"{label:42s} published {published:.2f}%  ours {summary[label]['best']['mean']:.2f}% "
              f"± {summary[label]['best']['std']:.2f} (after epoch 1: {summary[label]['first_epoch']['mean']:.2f}%)")
    save(args, "ch3_cross_entropy", {"summary": summary, "runs": done}, comparison_figure(summary))
    save_figure(args, "ch3_init", init_figure(done))


if __name__ == "__main__":
    main()
