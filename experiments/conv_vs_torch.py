"""The hand-coded conv step against PyTorch eager channels-last, round by round.

    python experiments/conv_vs_torch.py [--batch 64] [--rounds 60]
    taskset -c 0 python experiments/conv_vs_torch.py --cores-label 1core   # the same, pinned to one core

`fnbackprop bench --conv-only` times six contenders, so its rounds are few (about 30 s each at batch
64). This times only those that decide "faster than PyTorch eager", interleaved with the benchmark's
own `interleaved`, many rounds: the engine's hand-coded im2col step of Nielsen's two-conv-pool
network (100 SGD steps scanned per call) as the benchmark runs it, data-parallel with one CPU device
per core (`bench_conv.core_mesh`); the same step on one device, the whole batch, XLA splitting each
operation over the cores; and PyTorch eager in its faster format (channels-last, 100 steps in a
Python loop). Each round's ratio PyTorch / hand compares them on the same machine at the same
moment, so the machine's drift cancels. Reported: the medians, the ratios' medians and quartiles,
and the rounds each hand step won. Writes results/conv_vs_torch-bBATCH[-LABEL].{json,png}: each
round's time (the machine's slow spells show as steps) and the histogram of the per-round ratios.
"""

import jax
import matplotlib.pyplot as plt
import numpy as np

from _common import parser, save
from fnbackprop.bench.timing import interleaved, per_round_ratio, summary
from fnbackprop.bench.conv import (STEPS, batches, core_mesh, jax_steps, nielsen_conv_net, one_device_per_core,
                                   place_on, torch_steps)

TORCH = "torch eager channels-last"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--cores-label", default="", help="a suffix for the file names, e.g. 1core under taskset")
    args = p.parse_args()
    if args.batch < 1 or args.rounds < 3:
        p.error("--batch must be positive and --rounds at least 3")
    one_device_per_core()
    mesh = core_mesh()  # None under taskset -c 0: one device
    net = nielsen_conv_net("im2col")
    whole = net.init(jax.random.PRNGKey(0)), *batches(args.batch)
    torch = torch_steps(args.batch, channels_last=True)
    if torch is None:
        p.error("PyTorch is not installed: pip install -e '.[torch]'")
    torch()  # warm up
    placements = ([(f"hand, split over {mesh.devices.size} devices", mesh)] if mesh else []) + [("hand, one device", None)]
    contenders = {}
    for label, where in placements:
        step, placed = jax_steps(net, "hand", where), place_on(where, *whole)
        jax.block_until_ready(step(*placed))  # compile
        contenders[label] = lambda step=step, placed=placed: jax.block_until_ready(step(*placed))
    contenders[TORCH] = torch
    rounds = 3 if args.quick else args.rounds
    times = interleaved(contenders, rounds)
    ms = {name: {k: v / STEPS * 1e3 for k, v in summary(t).items() if k != "n"} for name, t in times.items()}
    hands = [name for name in contenders if name != TORCH]
    by_round = {name: np.asarray(times[TORCH]) / np.asarray(times[name]) for name in hands}  # > 1: hand faster
    ratios = {name: per_round_ratio(times[TORCH], times[name]) for name in hands}
    wins = {name: int(np.sum(r > 1)) for name, r in by_round.items()}
    for name in hands:
        print(f"batch {args.batch}, {rounds} rounds: {name} {ms[name]['median']:.2f} ms, PyTorch channels-last "
              f"{ms[TORCH]['median']:.2f} ms per step; PyTorch / hand round by round: median {ratios[name]['median']:.3f} "
              f"(quartiles {ratios[name]['q1']:.3f}-{ratios[name]['q3']:.3f}); hand faster in {wins[name]} of {rounds} rounds")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, name in enumerate(contenders):
        left.plot(np.asarray(times[name]) / STEPS * 1e3, ".-", color=f"C{i}", lw=0.8, ms=3, label=name)
        if name in by_round:
            right.hist(by_round[name], bins=30, color=f"C{i}", alpha=0.6, label=f"{name}: faster in {wins[name]} of {rounds}")
    left.set(xlabel="round", ylabel="ms per step", title=f"conv step, batch {args.batch}, round by round")
    left.legend(fontsize=8)
    right.axvline(1, color="k", ls=":", lw=1)
    right.set(xlabel="PyTorch eager channels-last / hand, per round (> 1: hand faster)", ylabel="rounds",
              title="PyTorch's time over the hand step's")
    right.legend(fontsize=8)
    fig.tight_layout()
    name = f"conv_vs_torch-b{args.batch}" + (f"-{args.cores_label}" if args.cores_label else "")
    save(args, name, {"batch": args.batch, "rounds": rounds, "steps_per_call": STEPS, "ms_per_step": ms,
                      "torch_over_hand_by_round": ratios, "hand_faster_rounds": wins,
                      "seconds": {k: list(v) for k, v in times.items()}}, fig)


if __name__ == "__main__":
    main()
