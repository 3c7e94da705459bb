"""Nielsen chapter 5: the vanishing gradient, measured through the hand-coded backward's dZ.

    python experiments/ch5_unstable_gradients.py [--quick] [--seeds 3] [--init-seeds 10] [--data-path PATH]

Sigmoid layers, cross-entropy cost (sigmoid output + "bce"), N(0, 1/n_in) weights, N(0, 1) biases.
The "speed of learning" of hidden layer l is ||dC/db[l]||, with dC/db[l] = sum_i dZ[l]_i taken from
`MLP.intermediates` (our dZ carries the 1/m, so this is the gradient averaged over the images), over
the first 1,000 training images. Published (single seeds, which vary about 2x; we compare medians):

    [784, 30, 30, 10]            0.066, 0.309
    [784, 30, 30, 30, 10]        0.012, 0.060, 0.283
    [784, 30, 30, 30, 30, 10]    0.0030, 0.017, 0.070, 0.285

Then the same norms during batch gradient descent on those 1,000 images (eta 0.1, lambda 5.0, 500
epochs), and the accuracies of [784, 30, 10] and the three deeper networks (30 epochs, batch 10,
eta 0.1, lambda 5.0, validation): published 96.48%, 96.90%, 96.57%, 96.53%.
Writes results/ch5_unstable_gradients.{json,png} and ch5_accuracy.png.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from _common import build, epochs, mnist, parser, save, save_figure, seeds, spread, train_all
from fnbackprop.train.epochs import make_optimizer

PUBLISHED_SPEEDS = {2: [0.066, 0.309], 3: [0.012, 0.060, 0.283], 4: [0.0030, 0.017, 0.070, 0.285]}
PUBLISHED_ACCURACY = {1: 96.48, 2: 96.90, 3: 96.57, 4: 96.53}
N_IMAGES = 1_000


def spec(depth: int, seed: int, n_epochs: int) -> dict:
    return {"label": f"{depth} hidden", "sizes": [784] + [30] * depth + [10], "hidden": "sigmoid", "output": "sigmoid",
            "loss": "bce", "init": "nielsen", "optimizer": "sgd", "eta": 0.1, "l2": 5.0, "batch": 10,
            "epochs": n_epochs, "split": "val", "seed": seed}


def hidden_speeds(net, params, x, y) -> jax.Array:
    """||dC/db[l]|| for every hidden layer l, with dC/db[l] = sum_i dZ[l]_i from the hand-coded backward."""
    dz = net.intermediates(params, x, y)["dZ"][:-1]
    return jnp.stack([jnp.linalg.norm(jnp.sum(d, axis=0)) for d in dz])


def speeds_during_training(depth: int, seed: int, x, y, n_epochs: int) -> np.ndarray:
    """Batch gradient descent on the 1,000 images; the hidden-layer speeds before every step (epochs+1, depth)."""
    net = build(spec(depth, seed, n_epochs))
    params = net.init(jax.random.PRNGKey(seed))
    opt = make_optimizer("sgd", optax.constant_schedule(0.1), l2=5.0, n_train=len(x))

    def epoch(carry, _):
        params, state = carry
        speeds = hidden_speeds(net, params, x, y)
        _, grads = net.value_and_grad(params, x, y)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), speeds

    (params, _), speeds = jax.jit(lambda p: jax.lax.scan(epoch, (p, opt.init(p)), None, n_epochs))(params)
    return np.vstack([np.asarray(speeds), np.asarray(hidden_speeds(net, params, x, y))[None]])


def initial_speeds(depth: int, seed: int, x, y) -> list[float]:
    net = build(spec(depth, seed, 1))
    return [float(v) for v in hidden_speeds(net, net.init(jax.random.PRNGKey(seed)), x, y)]


def training_figure(curves: dict):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    for ax, (depth, per_seed) in zip(axes, curves.items()):
        median = np.median(np.array(per_seed), axis=0)
        for layer in range(depth):
            ax.plot(median[:, layer], label=f"hidden layer {layer + 1}")
        ax.set(yscale="log", xlabel="epoch of batch gradient descent (1,000 images)",
               title=f"[784, {', '.join(['30'] * depth)}, 10]")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("speed of learning ||dC/db|| (median over seeds)")
    fig.suptitle("Nielsen ch. 5: earlier hidden layers learn more slowly (eta 0.1, lambda 5.0)")
    return fig


def accuracy_figure(summary: dict):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    depths = list(PUBLISHED_ACCURACY)
    x = np.arange(len(depths))
    ax.bar(x - 0.2, [PUBLISHED_ACCURACY[d] for d in depths], 0.4, color="0.6", label="published (Nielsen)")
    ax.bar(x + 0.2, [summary[d]["mean"] for d in depths], 0.4, yerr=[summary[d]["std"] for d in depths],
           color="tab:blue", label="fnbackprop (mean ± sd over seeds)")
    ax.set_xticks(x, [f"[784, {'30, ' * d}10]" for d in depths], fontsize=8)
    ax.set(ylim=(95, 98), ylabel="best validation accuracy (%)",
           title="Deeper sigmoid networks are no better\n(cross-entropy, eta 0.1, lambda 5.0, 30 epochs, batch 10)")
    ax.legend(fontsize=8)
    return fig


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--init-seeds", type=int, default=10, help="seeds for the speeds at initialisation (default 10)")
    args = p.parse_args()
    data = mnist(args)
    x, y = jnp.asarray(data.x_train[:N_IMAGES]), jnp.asarray(data.y_train[:N_IMAGES])
    init_seeds = [0] if args.quick else list(range(args.init_seeds))
    at_init = {d: np.array([initial_speeds(d, s, x, y) for s in init_seeds]) for d in PUBLISHED_SPEEDS}
    for d, v in at_init.items():
        print(f"{d} hidden layers: median speeds {np.round(np.median(v, 0), 4).tolist()} "
              f"(seed range {np.round(v.min(0), 4).tolist()} to {np.round(v.max(0), 4).tolist()}), "
              f"published {PUBLISHED_SPEEDS[d]}")
    gd_epochs = 20 if args.quick else 500
    curves = {d: [speeds_during_training(d, s, x, y, gd_epochs) for s in seeds(args)] for d in PUBLISHED_SPEEDS}
    deepest = np.median(np.array(curves[4]), axis=0)
    settled = deepest[len(deepest) // 5:]  # after the first fifth of the epochs, once the fast initial drop is over
    ratio = float(np.median(settled[:, 3] / settled[:, 0]))
    print(f"4 hidden layers during training: last/first hidden layer speed, median over the last 4/5 of the epochs: {ratio:.0f}x")
    done = train_all([spec(d, s, epochs(args, 30)) for d in PUBLISHED_ACCURACY for s in seeds(args)], data, "chapter 5")
    accuracy = {d: spread([r["best"] for r in done if len(r["sizes"]) == d + 2]) for d in PUBLISHED_ACCURACY}
    for d in PUBLISHED_ACCURACY:
        print(f"{d} hidden: best validation {accuracy[d]['mean']:.2f}% ± {accuracy[d]['std']:.2f}, "
              f"published {PUBLISHED_ACCURACY[d]}%")
    payload = {
        "speeds_at_init": {d: {"published": PUBLISHED_SPEEDS[d], "median": np.median(v, 0).tolist(),
                               "min": v.min(0).tolist(), "max": v.max(0).tolist(), "seeds": len(v)}
                           for d, v in at_init.items()},
        "speeds_during_training_median": {d: np.median(np.array(c), 0).tolist() for d, c in curves.items()},
        "last_over_first_hidden_speed_4_layers": ratio,
        "accuracy": {d: {"published": PUBLISHED_ACCURACY[d], **accuracy[d]} for d in PUBLISHED_ACCURACY},
        "runs": done,
    }
    save(args, "ch5_unstable_gradients", payload, training_figure(curves))
    save_figure(args, "ch5_accuracy", accuracy_figure(accuracy))


if __name__ == "__main__":
    main()
