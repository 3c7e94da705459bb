"""The hand-coded conv step against PyTorch eager channels-last, round by round (issue 14's last target).

    python experiments/conv_vs_torch.py [--batch 64] [--rounds 60]
    taskset -c 0 python experiments/conv_vs_torch.py --cores-label 1core   # the same, pinned to one core

`fnbackprop bench --conv-only` times six contenders, so its rounds are few (about 30 s each at batch
64). This times only the two that decide "faster than PyTorch eager": the engine's hand-coded im2col
step of Nielsen's two-conv-pool network (100 SGD steps scanned per call) and PyTorch eager in its
faster format (channels-last, 100 steps in a Python loop), interleaved with the benchmark's own
`interleaved`, many rounds. Each round's ratio PyTorch / hand compares the two on the same
machine at the same moment, so the machine's drift cancels. Reported: both medians, the ratio's
median and quartiles, and the number of rounds the hand step won. Writes
results/conv_vs_torch-bBATCH[-LABEL].{json,png} (the histogram of the per-round ratios).
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from _common import parser, save
from fnbackprop.bench import interleaved, per_round_ratio, summary
from fnbackprop.bench_conv import STEPS, batches, jax_steps, nielsen_conv_net, torch_steps


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--cores-label", default="", help="a suffix for the file names, e.g. 1core under taskset")
    args = p.parse_args()
    if args.batch < 1 or args.rounds < 3:
        p.error("--batch must be positive and --rounds at least 3")
    net = nielsen_conv_net("im2col")
    hand, params = jax_steps(net, "hand"), net.init(jax.random.PRNGKey(0))
    xs, ys = (jnp.asarray(a) for a in batches(args.batch))
    jax.block_until_ready(hand(params, xs, ys))  # compile
    torch = torch_steps(args.batch, channels_last=True)
    if torch is None:
        p.error("PyTorch is not installed: pip install -e '.[torch]'")
    torch()  # warm up
    rounds = 3 if args.quick else args.rounds
    times = interleaved({"hand im2col": lambda: jax.block_until_ready(hand(params, xs, ys)),
                         "torch eager channels-last": torch}, rounds)
    ratios = np.asarray(times["torch eager channels-last"]) / np.asarray(times["hand im2col"])  # > 1: hand faster
    ratio = per_round_ratio(times["torch eager channels-last"], times["hand im2col"])
    wins = int(np.sum(ratios > 1))
    ms = {name: {k: v / STEPS * 1e3 for k, v in summary(t).items() if k != "n"} for name, t in times.items()}
    print(f"batch {args.batch}, {rounds} rounds: hand {ms['hand im2col']['median']:.2f} ms, PyTorch channels-last "
          f"{ms['torch eager channels-last']['median']:.2f} ms per step; PyTorch / hand round by round: median "
          f"{ratio['median']:.3f} (quartiles {ratio['q1']:.3f}-{ratio['q3']:.3f}); hand faster in {wins} of {rounds} rounds")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(ratios, bins=20, color="C0")
    ax.axvline(1, color="k", ls=":", lw=1, label="level")
    ax.axvline(ratio["median"], color="C1", lw=1.5, label=f"median {ratio['median']:.3f}")
    ax.set(xlabel="PyTorch eager channels-last / hand im2col, per round (> 1: hand faster)", ylabel="rounds",
           title=f"conv step, batch {args.batch}: hand faster in {wins} of {rounds} rounds")
    ax.legend(fontsize=8)
    name = f"conv_vs_torch-b{args.batch}" + (f"-{args.cores_label}" if args.cores_label else "")
    save(args, name, {"batch": args.batch, "rounds": rounds, "steps_per_call": STEPS, "ms_per_step": ms,
                      "torch_over_hand_by_round": ratio, "hand_faster_rounds": wins,
                      "seconds": {k: list(v) for k, v in times.items()}}, fig)


if __name__ == "__main__":
    main()
