"""The hand-coded backward against jax.grad, end to end: every step's gradients, then whole runs.

    python experiments/hand_vs_autodiff.py [--quick] [--seeds 3] [--data-path PATH]

Two networks on MNIST, float32:
- Nielsen's first network ([784, 30, 10], sigmoid, quadratic cost, N(0,1), SGD eta 3.0, batch 10,
  30 epochs), where the hand-coded equations and autodiff's happen to be the same float operations;
- [784, 100, 10] ReLU with softmax + cross-entropy (SGD eta 0.3, batch 32, 15 epochs), where the
  fused dZ = (A - Y)/m and autodiff's derivative of log-softmax round differently.
(1) Along each hand-coded run, at every step, both gradients of the same mini-batch and their
relative difference ||g_hand - g_autodiff|| / ||g_autodiff|| over all parameters.
(2) Whole runs with each source, same seeds: test accuracy per epoch side by side.
Writes results/hand_vs_autodiff.{json,png}.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from _common import build, epochs, mnist, parser, save, seeds, spread, train_all
from fnbackprop.train.epochs import epoch_order, gradient_function

EPS32 = float(jnp.finfo(jnp.float32).eps)
NETWORKS = {
    "nielsen": {"sizes": [784, 30, 10], "hidden": "sigmoid", "output": "sigmoid", "loss": "quadratic",
                "init": "nielsen_large", "optimizer": "sgd", "eta": 3.0, "batch": 10, "epochs": 30, "split": "test"},
    "softmax": {"sizes": [784, 100, 10], "hidden": "relu", "output": "softmax", "loss": "cross_entropy",
                "init": "he", "optimizer": "sgd", "eta": 0.3, "batch": 32, "epochs": 15, "split": "test"},
}
TITLES = {"nielsen": "[784, 30, 10] sigmoid + quadratic", "softmax": "[784, 100, 10] ReLU, softmax + cross-entropy"}


def global_rel_diff(a, b) -> jax.Array:
    """||a - b||_2 / ||b||_2 over all leaves (jit-able, inside the scan); infinite if anything is non-finite."""
    diff = sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    ref = sum(jnp.sum(y ** 2) for y in jax.tree_util.tree_leaves(b))
    ratio = jnp.sqrt(diff / ref)
    return jnp.where(jnp.isfinite(ratio), ratio, jnp.inf)


def per_step_differences(run: dict, x, y) -> np.ndarray:
    """(epochs, steps) relative differences along the hand-coded trajectory."""
    net = build(run)
    hand, autodiff = gradient_function(net, "hand"), gradient_function(net, "autodiff")
    opt = optax.sgd(run["eta"])
    batch, n = run["batch"], len(x)

    def step(carry, idx):
        params, state = carry
        _, g_hand = hand(params, x[idx], y[idx])
        _, g_auto = autodiff(params, x[idx], y[idx])
        updates, state = opt.update(g_hand, state, params)
        return (optax.apply_updates(params, updates), state), global_rel_diff(g_hand, g_auto)

    @jax.jit
    def epoch(carry, key):
        order = epoch_order(key, n)[: n // batch * batch].reshape(-1, batch)
        return jax.lax.scan(step, carry, order)

    params = net.init(jax.random.PRNGKey(run["seed"]))
    carry, rows = (params, opt.init(params)), []
    for e in range(run["epochs"]):
        carry, diffs = epoch(carry, jax.random.PRNGKey(1000 + e))
        rows.append(np.asarray(diffs))
    return np.array(rows)


def figure(diffs: dict[str, np.ndarray], done: list[dict]):
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    left = axes[0]
    for (name, d), colour in zip(diffs.items(), ("tab:blue", "tab:green")):
        flat = d.reshape(-1)
        if flat.max() == 0:
            left.text(0.03, 0.05, f"{TITLES[name]}: every one of the {flat.size:,} steps\ndiffers by exactly 0 "
                      "(the same float operations)", transform=left.transAxes, fontsize=8, color=colour)
            continue
        steps = np.arange(1, flat.size + 1)
        left.plot(steps, np.where(flat > 0, flat, np.nan), ",", alpha=0.3, color=colour)
        left.plot(steps[::d.shape[1]], np.median(d, 1), color=colour, label=f"{TITLES[name]}: median per epoch")
    left.axhline(EPS32, color="k", ls="--", lw=1, label="float32 epsilon")
    left.set(yscale="log", xlabel="training step", ylabel="||g_hand - g_jax.grad|| / ||g_jax.grad||",
             title="Per-step gradient difference along the hand-coded run")
    left.legend(fontsize=8, loc="center right")
    for ax, name in zip(axes[1:], NETWORKS):
        for source, colour, style in (("hand", "tab:blue", "-"), ("autodiff", "tab:orange", ":")):
            mine = [r for r in done if r["grad"] == source and r["network"] == name]
            for r in mine:
                ax.plot(range(1, len(r["accuracy"]) + 1), r["accuracy"], color=colour, ls=style, alpha=0.8,
                        label=f"{source} (one line per seed)" if r is mine[0] else None)
        same = all(h["accuracy"] == a["accuracy"] for h in done for a in done if h["network"] == a["network"] == name
                   and (h["grad"], a["grad"]) == ("hand", "autodiff") and h["seed"] == a["seed"])
        ax.set(xlabel="epoch", ylabel="test accuracy (%)",
               title=f"Whole runs, {TITLES[name]}" + ("\n(hand and autodiff curves identical)" if same else ""))
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("The hand-coded backward and jax.grad, end to end (float32, MNIST)")
    return fig


def main() -> None:
    args = parser(__doc__).parse_args()
    data = mnist(args)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    runs = {name: {**cfg, "epochs": epochs(args, cfg["epochs"])} for name, cfg in NETWORKS.items()}
    diffs = {name: per_step_differences({**run, "seed": 0}, x, y) for name, run in runs.items()}
    for name, d in diffs.items():
        print(f"{TITLES[name]}: per-step relative difference median {np.median(d):.1e}, max {d.max():.1e} "
              f"over {d.size} steps (float32 eps {EPS32:.1e})")
    done = train_all([{**run, "network": name, "label": f"{name} {source}", "grad": source, "seed": s}
                      for name, run in runs.items() for s in seeds(args) for source in ("hand", "autodiff")],
                     data, "hand vs autodiff")
    final = {}
    for name in runs:
        pairs = [(h, a) for h in done for a in done if h["network"] == a["network"] == name
                 and (h["grad"], a["grad"]) == ("hand", "autodiff") and h["seed"] == a["seed"]]
        final[name] = {"hand": spread([h["final"] for h, _ in pairs]), "autodiff": spread([a["final"] for _, a in pairs]),
                       "max_abs_difference": max(abs(h["final"] - a["final"]) for h, a in pairs),
                       "identical_curves": all(h["accuracy"] == a["accuracy"] for h, a in pairs)}
        for h, a in pairs:
            print(f"{TITLES[name]}, seed {h['seed']}: final test accuracy hand {h['final']:.2f}%, autodiff {a['final']:.2f}%")
    payload = {
        "per_step": {name: {"median": float(np.median(d)), "max": float(d.max()), "steps": int(d.size),
                            "exactly_zero_steps": int(np.sum(d == 0)),
                            "per_epoch_median": np.median(d, 1).tolist(), "per_epoch_max": d.max(1).tolist()}
                     for name, d in diffs.items()},
        "final": final, "runs": done,
    }
    save(args, "hand_vs_autodiff", payload, figure(diffs, done))


if __name__ == "__main__":
    main()
