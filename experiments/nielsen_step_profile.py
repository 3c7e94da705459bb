"""Where the time of one epoch of Nielsen's network goes on the CPU (what limits it).

    python experiments/nielsen_step_profile.py [--data-path PATH]

Nielsen's [784, 30, 10] at batch 10 takes 5,000 steps an epoch, so 0.15 s an epoch means 30 us a step.
This times, interleaved, as scans of 5,000 steps (us per step, medians of 7 rounds):
  1. the real epoch (`train.make_epoch`: shuffle, gather, hand-coded step, SGD update);
  2. the same steps on pre-made batches (no shuffle, no gather);
  3. the step's two 784-wide matrix products alone (x W1^T and dZ1^T x), the only sizeable arithmetic;
  4. one tiny dot plus one elementwise kernel, chained: XLA's fixed cost per kernel launch.
Writes results/nielsen_step_profile.json.
"""

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnbackprop as fb
from fnbackprop.bench.mlp import NIELSEN, jax_step_costs, nielsen_data
from fnbackprop.bench.timing import interleaved
from fnbackprop.train.epochs import compact_features, make_epoch

STEPS = 5_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-path")
    args = p.parse_args()
    x, y, source = nielsen_data(args.data_path)
    net = fb.mlp([784, 30, 10], hidden="sigmoid", output="sigmoid", loss="quadratic", init="nielsen_large")
    params, opt = net.init(jax.random.PRNGKey(0)), optax.sgd(3.0)
    codes, denominator = compact_features(x)
    xj, yj = jnp.asarray(codes), jnp.asarray(y)
    epoch = make_epoch(net, opt, 10, len(x), x_denominator=denominator)
    xs, ys = jnp.asarray(x[: STEPS * 10]).reshape(STEPS, 10, 784), jnp.asarray(y[: STEPS * 10]).reshape(STEPS, 10)

    def premade_step(p, batch):
        _, g = net.value_and_grad(p, *batch)
        return jax.tree_util.tree_map(lambda a, b: a - 3.0 * b, p, g), None

    def two_products(c, xb):
        z = xb @ params[0]["W"].T
        return (c[0] + z, c[1] + z.T @ xb), None

    w = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (30, 30))

    def kernel_pairs(c, _):
        return jnp.tanh(c @ w), None

    contenders = {
        "1. real epoch (shuffle + gather + step)": lambda: epoch(params, opt.init(params), jax.random.PRNGKey(0), xj, yj),
        "2. steps on pre-made batches": jax.jit(lambda: jax.lax.scan(premade_step, params, (xs, ys))[0]),
        "3. the two 784-wide products alone": jax.jit(
            lambda: jax.lax.scan(two_products, (jnp.zeros((10, 30)), jnp.zeros((30, 784))), xs)[0]),
        "4. one tiny dot + one elementwise kernel": jax.jit(
            lambda: jax.lax.scan(kernel_pairs, jnp.ones((10, 30)), None, STEPS)[0]),
    }
    for fn in contenders.values():
        jax.block_until_ready(fn())
    times = interleaved(contenders, 7)
    micro = {name: float(np.median(t)) / STEPS * 1e6 for name, t in times.items()}
    xla = jax_step_costs(NIELSEN, "hand", params)  # the SGD step as the benchmark compiles it
    kernels = xla["dots"] + xla["kernels"]
    for name, us in micro.items():
        print(f"{name:45s} {us:6.1f} us/step")
    print(f"the compiled SGD step launches {kernels} kernels ({xla['dots']} dots, {xla['kernels']} fusions); data: {source}")
    out = Path(__file__).resolve().parent / "results" / "nielsen_step_profile.json"
    out.write_text(json.dumps({"us_per_step": micro, "kernels_per_step": kernels, "data": source,
                               "machine": f"{jax.default_backend()}, {jax.device_count()} device(s)"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
