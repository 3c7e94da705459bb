"""Step time of data-parallel training on 1, 2, 4, 8 simulated CPU devices.

    python experiments/data_parallel_bench.py [--quick]

Simulates 8 CPU devices (XLA_FLAGS, set here before JAX starts). On a 2-core machine no speed-up
is expected: the point is that the same hand-coded backward runs unchanged, and what the
communication pattern costs. Timings are interleaved (one step of each device count in turn, many
rounds) and reported as medians, compile time excluded. Writes JSON beside this script.
"""

import argparse
import json
import os
import platform
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import fnbackprop as fb  # noqa: E402
from fnbackprop.bench.timing import interleaved, timed# noqa: E402
from fnbackprop.parallel import make_mesh, shard_map_value_and_grad  # noqa: E402


def make_step(net, mesh, opt):
    grad_fn = shard_map_value_and_grad(net, mesh) if mesh.devices.size > 1 else net.value_and_grad

    @jax.jit
    def step(params, state, x, y):
        cost, grads = grad_fn(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, cost

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    rounds = 10 if args.quick else 60
    net = fb.mlp([784, 256, 256, 10], hidden="relu", output="softmax", loss="cross_entropy", init="he")
    key = jax.random.PRNGKey(0)
    params = net.init(key)
    x = jax.random.normal(key, (args.batch, 784))
    y = jax.numpy.arange(args.batch) % 10
    opt = optax.sgd(0.01)
    counts = [n for n in (1, 2, 4, 8) if n <= len(jax.devices())]
    steps, compile_s = {}, {}
    for n in counts:
        steps[n] = make_step(net, make_mesh(n), opt)
        compile_s[n] = timed(lambda n=n: steps[n](params, opt.init(params), x, y))
    times = interleaved({n: (lambda n=n: steps[n](params, opt.init(params), x, y)) for n in counts}, rounds, pause=0)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].platform}", "batch": args.batch,
              "sizes": [784, 256, 256, 10], "rounds": rounds,
              "per_devices": {n: {"median_ms": 1e3 * float(np.median(t)), "p10_ms": 1e3 * float(np.percentile(t, 10)),
                                  "p90_ms": 1e3 * float(np.percentile(t, 90)), "compile_s": compile_s[n]} for n, t in times.items()}}
    print(f"{'devices':>8} {'median ms':>10} {'p10-p90 ms':>14} {'compile s':>10}")
    for n, r in result["per_devices"].items():
        print(f"{n:>8} {r['median_ms']:>10.2f} {r['p10_ms']:>6.2f}-{r['p90_ms']:<7.2f} {r['compile_s']:>10.2f}")
    Path(__file__).with_name("data_parallel_bench.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
