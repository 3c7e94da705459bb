"""Nielsen chapter 1: network.py on MNIST, reproduced with the hand-coded backward.

    python experiments/ch1_sgd.py [--quick] [--seeds 3] [--data-path PATH]

Quadratic cost, sigmoid layers, N(0, 1) weights and biases, SGD eta = 3.0, mini-batch 10, 30 epochs,
accuracy on the 10,000 test images. Published: [784, 30, 10] peaks at 95.42% (best of three runs);
[784, 100, 10] 96.59% (the book warns some runs do much worse). Writes results/ch1_sgd.{json,png}.
"""

import matplotlib.pyplot as plt

from _common import epochs, mnist, parser, save, seeds, spread, train_all

PUBLISHED = {30: 95.42, 100: 96.59}


def runs(args) -> list[dict]:
    return [{"label": f"[784, {h}, 10]", "sizes": [784, h, 10], "hidden": "sigmoid", "output": "sigmoid",
             "loss": "quadratic", "init": "nielsen_large", "optimizer": "sgd", "eta": 3.0, "batch": 10,
             "epochs": epochs(args, 30), "split": "test", "seed": s} for h in PUBLISHED for s in seeds(args)]


def main() -> None:
    args = parser(__doc__).parse_args()
    done = train_all(runs(args), mnist(args), "chapter 1")
    summary = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for hidden, colour in zip(PUBLISHED, ("tab:blue", "tab:orange")):
        mine = [r for r in done if r["sizes"][1] == hidden]
        summary[hidden] = {"published": PUBLISHED[hidden], "best": spread([r["best"] for r in mine]),
                           "best_of_seeds": max(r["best"] for r in mine), "final": spread([r["final"] for r in mine]),
                           "seconds_per_epoch": spread([r["seconds_per_epoch"] for r in mine]),
                           "digits_never_predicted": {r["seed"]: [c for c, v in enumerate(r["final_recall_per_class"]) if v < 5]
                                                      for r in mine}}
        for r in mine:
            ax.plot(range(1, len(r["accuracy"]) + 1), r["accuracy"], color=colour, alpha=0.7,
                    label=f"[784, {hidden}, 10] (one line per seed)" if r is mine[0] else None)
        ax.axhline(PUBLISHED[hidden], color=colour, ls="--", lw=1, label=f"published peak {PUBLISHED[hidden]}%")
        per_seed = ", ".join(f"{r['best']:.2f}" for r in mine)
        print(f"[784, {hidden}, 10]: best {summary[hidden]['best']['mean']:.2f}% mean (seeds: {per_seed}), "
              f"published {PUBLISHED[hidden]}%")
        for r in mine:
            dead = summary[hidden]["digits_never_predicted"][r["seed"]]
            peaks = ", ".join(f"{r['final_max_output_per_neuron'][c]:.1e}" for c in dead)
            print(f"  seed {r['seed']}: digits (almost) never predicted at the end (recall < 5%): {dead or 'none'}"
                  + (f"; their output neurons' largest activation over all test images: {peaks}" if dead else ""))
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(40, 100),
           title="Nielsen ch. 1: sigmoid + quadratic cost, SGD eta 3.0, batch 10")
    ax.legend(loc="lower right", fontsize=8)
    save(args, "ch1_sgd", {"summary": summary, "runs": done}, fig)


if __name__ == "__main__":
    main()
