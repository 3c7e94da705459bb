"""How fast could a whole CPU-preset run be? The training step's matrix products alone, timed.

    python experiments/step_floor.py [--repeats 25] [--rounds 5] [--race experiments/results/race_nanogpt.json]
                                     [--matmul-dtype float32|bfloat16]

Every `dot_general` of the hand-written training step (the GPT's `value_and_grad` at the CPU preset) and of
its forward (`loss`, what each evaluation batch runs) is read from the traced program (`jaxpr_dots`), with its
operand shapes and dimension numbers, and replayed alone: one compiled loop computing exactly those products
from random operands, nothing else (no layer norm, GELU, softmax, cross-entropy, residual adds, transposes
between them, AdamW, data drawing). XLA compiles the replay as it likes: its products are independent and its
operands in the layouts it prefers, where the step's follow from one another (XLA sends the step's weight
gradients and attention's transposed products to other kernels). So the replay is a floor under the step's
time on this machine, not a twin of it. The matmul limit (2048-square products) is measured in the same run.

A whole run of the preset runs max_iters steps and, for its evaluations (at iteration 0 and at each of
`lm.evaluation_stops`, eval_iters batches of each split) and the final estimate, forward batches; its floor
is the steps' products plus the forward batches' products, with no start-up, no evaluation bookkeeping, no
plot. Against nanoGPT's whole-run times from the race (results/race_nanogpt.json), nanoGPT's time / floor is
the most any trainer built from these products could be faster. Writes results/step_floor.json and, with the
race's results, results/step_floor.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp

from fnbackprop.bench.gpt import VOCAB, batches, jax_steps
from fnbackprop.bench.products import dot_flops, jaxpr_dots
from fnbackprop.bench.timing import interleaved, matmul_gflops
from fnbackprop.train.lm import FINAL_EVAL_BATCHES, PRESETS, LMConfig, evaluation_stops, model_of

from _common import RESULTS


def run_length(config: LMConfig) -> tuple[int, int]:
    """(training steps, forward batches) of a whole run: max_iters steps; eval_iters batches of each split at
    iteration 0 and at every evaluation stop, then the final estimate's batches."""
    evaluations = 1 + len(evaluation_stops(config))
    return config.max_iters, evaluations * 2 * config.eval_iters + FINAL_EVAL_BATCHES


def products_program(dots: list[tuple], repeats: int) -> tuple[Callable, list]:
    """(replay, operands): replay(operands) computes each product from its own random operands, `repeats` times
    in one compiled loop (as the trainer runs its steps). The operands go through an optimization barrier in
    each iteration, so XLA cannot hoist the products out of the loop as invariant; each iteration's results
    overwrite the last's in the loop's state, so none is dead."""
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 2 * len(dots)))
    operands = [(jax.random.normal(next(keys), lhs.shape, lhs.dtype), jax.random.normal(next(keys), rhs.shape, rhs.dtype))
                for lhs, rhs, _ in dots]

    def products(operands):
        return [jax.lax.dot_general(a, b, **params) for (a, b), (_, _, params) in zip(operands, dots)]

    @jax.jit
    def replay(operands):
        def body(_, carry):
            kept = jax.lax.optimization_barrier(carry[0])
            return kept, products(kept)
        zeros = [jnp.zeros(r.shape, r.dtype) for r in jax.eval_shape(products, operands)]
        return jax.lax.fori_loop(0, repeats, body, (operands, zeros))[1]

    return replay, operands


def plot(result: dict, path: Path) -> None:
    """Whole-run seconds as bars: nanoGPT's and ours from the race (medians), and the products-only floor
    (the run's steps' and forward batches' products, nothing else), with nanoGPT's median divided by 1.5 marked."""
    import matplotlib.pyplot as plt  # headless: _common chose the Agg backend

    nanogpt, ours = result["nanogpt_wall_seconds"], result["ours_wall_seconds"]
    bars = {"nanoGPT train.py (race median)": statistics.median(nanogpt), "fnbackprop train (race median)": statistics.median(ours),
            "matrix products alone (floor)": result["whole_run_floor_seconds"]}
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.barh(list(bars), list(bars.values()), color=["#888888", "#1f77b4", "#aec7e8"])
    target = statistics.median(nanogpt) / 1.5
    ax.axvline(target, color="#d62728", linestyle="--", linewidth=1, label=f"1.5x faster than nanoGPT's median: {target:.0f} s")
    ax.legend(loc="lower right", fontsize=8)
    for i, value in enumerate(bars.values()):
        ax.text(value, i, f" {value:.1f} s", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds, prompt to exit")
    ax.set_xlim(0, max(bars.values()) * 1.12)
    ax.set_title("The CPU preset, whole runs on 2 cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=25, help="steps (batches) per compiled loop (default: 25)")
    p.add_argument("--rounds", type=int, default=5, help="twice this many interleaved rounds, one call of each program a round (default: 5)")
    p.add_argument("--race", default=str(RESULTS / "race_nanogpt.json"), help="the race's results, for nanoGPT's times")
    p.add_argument("--matmul-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="the linear maps' products (default: float32; the limit is float32's either way)")
    p.add_argument("--out", default=None, help="default: results/step_floor.json, step_floor-bfloat16.json for bfloat16")
    args = p.parse_args()
    args.out = args.out or str(RESULTS / ("step_floor" + ("" if args.matmul_dtype == "float32" else "-bfloat16") + ".json"))

    config = replace(PRESETS["shakespeare-char-cpu"], matmul_dtype=args.matmul_dtype)
    model = model_of(config, VOCAB)
    params = model.init(jax.random.PRNGKey(0))
    xs, ys = (jnp.asarray(a) for a in batches(config, args.repeats))
    steps, optimizer = jax_steps(config, "hand")  # the benchmark's scanned AdamW steps, as the trainer runs them
    opt_state = optimizer.init(params)

    @jax.jit
    def forwards(params, xs, ys):  # one evaluation batch after another, as the estimates run them
        return jax.lax.scan(lambda total, xy: (total + model.loss(params, *xy), None), 0.0, (xs, ys))[0]

    step_dots = jaxpr_dots(jax.make_jaxpr(model.value_and_grad)(params, xs[0], ys[0]).jaxpr)
    forward_dots = jaxpr_dots(jax.make_jaxpr(model.loss)(params, xs[0], ys[0]).jaxpr)
    replay_step, step_operands = products_program(step_dots, args.repeats)
    replay_forward, forward_operands = products_program(forward_dots, args.repeats)

    contenders = {"step": lambda: steps(params, opt_state, xs, ys), "step products": lambda: replay_step(step_operands),
                  "forward": lambda: forwards(params, xs, ys), "forward products": lambda: replay_forward(forward_operands)}
    for call in contenders.values():  # compiled before the clock
        jax.block_until_ready(call())
    seconds = interleaved(contenders, 2 * args.rounds)
    ms = {name: 1e3 * statistics.median(s) / args.repeats for name, s in seconds.items()}
    ms_best = {name: 1e3 * min(s) / args.repeats for name, s in seconds.items()}
    limit = matmul_gflops(2048, 2 * args.rounds)
    n_steps, n_forwards = run_length(config)
    floor = (n_steps * ms_best["step products"] + n_forwards * ms_best["forward products"]) / 1e3
    result = {"config": "shakespeare-char-cpu", "matmul_dtype": args.matmul_dtype, "step_products": len(step_dots), "forward_products": len(forward_dots),
              "step_gflop": dot_flops(step_dots) / 1e9, "forward_gflop": dot_flops(forward_dots) / 1e9,
              "ms_median": ms, "ms_best": ms_best,
              "products_share_of_step": ms_best["step products"] / ms_best["step"],
              "step_products_gflops": dot_flops(step_dots) / ms_best["step products"] / 1e6,
              "matmul_limit_gflops": limit,
              "whole_run_floor_seconds": floor,
              "whole_run_floor_formula": f"{n_steps} x best(step products) + {n_forwards} x best(forward products)"}
    result["step_products_fraction_of_limit"] = result["step_products_gflops"] / limit
    race = Path(args.race)
    if race.exists():
        pairs = json.loads(race.read_text())["pairs"]
        walls = [pair["nanogpt"]["wall_seconds"] for pair in pairs]
        result["nanogpt_wall_seconds"] = walls
        result["ours_wall_seconds"] = [pair["ours"]["wall_seconds"] for pair in pairs]
        result["most_speedup_over_nanogpt"] = {"fastest nanoGPT run": min(walls) / floor,
                                               "median nanoGPT run": statistics.median(walls) / floor}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if "nanogpt_wall_seconds" in result:
        plot(result, out.with_suffix(".png"))
    print(f"{len(step_dots)} products per step ({result['step_gflop']:.2f} GFLOP), {len(forward_dots)} per forward "
          f"({result['forward_gflop']:.2f} GFLOP)")
    for name in contenders:
        print(f"  {name:17s} {ms[name]:6.2f} ms median, {ms_best[name]:6.2f} best")
    print(f"products alone: {result['products_share_of_step']:.0%} of the step, {result['step_products_gflops']:.0f} GFLOP/s, "
          f"{result['step_products_fraction_of_limit']:.0%} of the matmul limit ({limit:.0f} GFLOP/s, 2048-square, this run)")
    print(f"whole-run floor: {floor:.1f} s ({result['whole_run_floor_formula']})")
    if "most_speedup_over_nanogpt" in result:
        for what, ratio in result["most_speedup_over_nanogpt"].items():
            print(f"  at most {ratio:.2f}x faster than the {what}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
