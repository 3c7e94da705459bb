"""Nielsen chapter 6: convolutional networks (network3.py) with hand-derived conv and pool backward passes.

    python experiments/ch6_conv.py [--quick] [--seeds 1] [--only TEXT] [--data-path PATH]

Published (test accuracy at the epoch of best validation accuracy, best of three runs; mini-batch 10,
60 epochs, SGD; conv 5x5 stride 1, max-pool 2x2; softmax + log-likelihood):

    [784, 100, 10] sigmoid, eta 0.1                                        97.80%
    conv 20 + pool, FC 100 sigmoid, eta 0.1                                98.78%
    conv 20 + pool, conv 40 + pool, FC 100 sigmoid, eta 0.1                99.06%
    the same with ReLU everywhere, eta 0.03, L2 lambda 0.1                 99.23%

network3's ConvPoolLayer pools the raw convolution, then adds the bias and applies the activation; ours
adds the bias before pooling (max_pool(z + b) = max_pool(z) + b per map) and applies the activation
after the pool, the same function. network3 adds 0.5 lambda ||w||^2 / (number of mini-batches) to each
mini-batch's cost, a weight decay of eta lambda m / n per step; ours decays by eta l2 / n, so its
l2 = lambda m = 0.1 x 10 = 1.0. Inits differ (ours: He for conv, LeCun for dense, zero biases;
network3: N(0, 1/n_out) weights, N(0, 1) biases, a zero softmax layer).

Writes results/ch6_conv.{json,png}.
"""

import matplotlib.pyplot as plt
import numpy as np

from _common import epochs, mnist, parser, save, seeds, spread, train_all

CONV1 = "conv(20,5) maxpool(2) {g}"
CONV2 = CONV1 + " conv(40,5) maxpool(2) {g}"
CONFIGS = [  # label, layers, eta, l2 (ours = network3's lambda x mini-batch), published
    ("[784, 100, 10] sigmoid", "dense(100) sigmoid", 0.1, 0.0, 97.80),
    ("conv-pool, FC 100 sigmoid", (CONV1 + " dense(100) {g}").format(g="sigmoid"), 0.1, 0.0, 98.78),
    ("two conv-pool, FC 100 sigmoid", (CONV2 + " dense(100) {g}").format(g="sigmoid"), 0.1, 0.0, 99.06),
    ("two conv-pool, ReLU, L2 0.1", (CONV2 + " dense(100) {g}").format(g="relu"), 0.03, 1.0, 99.23),
]


def runs(args) -> list[dict]:
    return [{"label": label, "layers": layers, "output": "softmax", "loss": "cross_entropy", "optimizer": "sgd", "eta": eta,
             "l2": l2, "batch": 10, "epochs": epochs(args, 60), "split": "val", "seed": s, "published": published}
            for label, layers, eta, l2, published in CONFIGS for s in seeds(args)
            if args.only is None or args.only in label]


def test_at_best_validation(run: dict) -> float:
    """Nielsen's figure: the test accuracy at the epoch of best validation accuracy."""
    return run["curves"]["test"][int(np.argmax(run["curves"]["val"]))]


def figure(done: list[dict]):
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (label, *_, published) in enumerate(c for c in CONFIGS if any(r["label"] == c[0] for r in done)):
        colour = f"C{i}"
        for r in (r for r in done if r["label"] == label):
            ax.plot(np.arange(1, len(r["curves"]["test"]) + 1), r["curves"]["test"], color=colour, alpha=0.8,
                    label=f"{label} (published {published:.2f}%)" if r["seed"] == 0 else None)
        ax.axhline(published, color=colour, ls=":", lw=1)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(96.5, 99.6),
           title="Nielsen ch. 6 reproduced: hand-derived conv and pool backward (dotted: published)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(seeds=1)
    p.add_argument("--only", default=None, help="run only the configurations whose label contains this text")
    args = p.parse_args()
    done = train_all(runs(args), mnist(args), "chapter 6")
    summary = {}
    for label, layers, eta, l2, published in CONFIGS:
        mine = [r for r in done if r["label"] == label]
        if mine:
            scores = [test_at_best_validation(r) for r in mine]
            summary[label] = {"published": published, "layers": layers, "eta": eta, "l2": l2,
                              "test_at_best_val": spread(scores), "best_of_seeds": max(scores),
                              "minutes_per_run": float(np.mean([r["wall_seconds"] for r in mine]) / 60),
                              "seconds_per_epoch": float(np.median([r["seconds_per_epoch"] for r in mine]))}
            print(f"{label}: test at best validation {max(scores):.2f}% (best of {len(scores)}), published {published:.2f}%; "
                  f"{summary[label]['minutes_per_run']:.1f} min per run")
    save(args, "ch6_conv", {"runs": done, "summary": summary}, figure(done))


if __name__ == "__main__":
    main()
