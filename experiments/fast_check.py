"""Fast mode at model scale: check_vjp(fast=True) on a model of over a million parameters, against
entry-wise finite differences on the same model, and the MLP mutation catalogue caught in fast mode.

    python experiments/fast_check.py            # about 2 minutes on 2 cores
    python experiments/fast_check.py --width 400 # a smaller model (480,000 parameters)

The model: `fb.mlp([W, W, W, W])` (tanh, sigmoid, softmax + cross-entropy; W = 600: 1,081,800
parameters) whose hand-coded backward is `net.hand_loss`, a jax.custom_vjp, checked in float64 at
a batch of 16 with `fb.check_vjp(net.hand_loss, params, x, y, fast=True)`.

Entry-wise finite differences are timed on the same model and scalar, two ways:
- **full**: what a gradcheck that differentiates every entry costs, 4 evaluations of the model per
  entry (the checker's h and h/4 quotients): `finite_differences_at` timed on ENTRIES entries after
  a warm-up compile, scaled to every entry (linear in the entries: one batched evaluation each);
- **sampled**: the checker's own default mode (`fast=False`): 512 random entries per leaf and every
  entry where hand != autodiff, measured end to end.
Fast mode must be at least 20x faster than full entry-wise FD and take under 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

import fnbackprop as fb
from fnbackprop.check.mutations import MUTATIONS
from fnbackprop.check.verdicts import finite_differences_at
from fnbackprop.check.verify import move_off_special_values

RESULTS = Path(__file__).resolve().parent / "results"
ENTRIES = 4096  # entries timed for the full entry-wise estimate
console = Console()


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=600, help="the model's width W (default 600: 1,081,800 parameters)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.width < 2 or args.batch < 1:
        p.error("--width must be at least 2 and --batch at least 1")

    net = fb.mlp([args.width] * 4, hidden=["tanh", "sigmoid"], output="softmax", loss="cross_entropy")
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(0)
        params = move_off_special_values(key, net.init(key, jnp.float64))
        x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.width), jnp.float64)
        y = jax.random.randint(jax.random.PRNGKey(2), (args.batch,), 0, args.width)
        n_params = sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
        console.print(f"model [{args.width}] x 4: {n_params:,} parameters, batch {args.batch}, float64; "
                      f"jax {jax.__version__}, {jax.devices()[0].platform}")
        rows = []
        with console.status("") as status:
            for label, transforms in (("fast mode, no transforms", ()), ("fast mode, default transforms", fb.check.vjp.TRANSFORMS)):
                status.update(f"correct model: {label}")
                report, seconds = timed(fb.check_vjp, net.hand_loss, params, x, y, fast=True, transforms=transforms)
                rows.append({"check": label, "model": "correct", "passed": report.passed, "seconds": seconds, "diagnosis": ""})
            for name, mutate in MUTATIONS.items():
                status.update(f"fast mode: {name}")
                report, seconds = timed(fb.check_vjp, mutate(net).hand_loss, params, x, y, fast=True, transforms=())
                rows.append({"check": "fast mode, no transforms", "model": name, "passed": report.passed, "seconds": seconds,
                             "diagnosis": report.diagnosis})
            status.update("entry-wise (the default, sampled entries), correct model")
            report, sampled_seconds = timed(fb.check_vjp, net.hand_loss, params, x, y, transforms=())
            rows.append({"check": "entry-wise, sampled (default)", "model": "correct", "passed": report.passed,
                         "seconds": sampled_seconds, "diagnosis": ""})

            status.update(f"entry-wise finite differences: timing {ENTRIES} entries")
            tree = {"params": params, "x": x}
            targets = jax.nn.one_hot(y, args.width, dtype=jnp.float64)
            scalar = lambda t: net.loss(t["params"], t["x"], targets)  # noqa: E731
            leaves = jax.tree_util.tree_leaves(tree)
            sizes = [int(leaf.size) for leaf in leaves]
            share = np.maximum(1, np.round(ENTRIES * np.array(sizes) / sum(sizes))).astype(int)
            indices = [np.arange(min(s, k)) for s, k in zip(sizes, share)]
            finite_differences_at(scalar, tree, key, indices)  # warm-up: compile
            _, probe_seconds = timed(finite_differences_at, scalar, tree, key, indices)
            probed = sum(i.size for i in indices)
            full_seconds = probe_seconds * sum(sizes) / probed
    fast = rows[0]["seconds"]
    summary = {
        "model": f"mlp([{args.width}] * 4), tanh/sigmoid, softmax + cross-entropy, batch {args.batch}, float64",
        "parameters": n_params, "inputs": sum(sizes), "rows": rows,
        "entrywise_full_estimate_seconds": full_seconds, "entrywise_probe": {"entries": probed, "seconds": probe_seconds},
        "entrywise_sampled_seconds": sampled_seconds,
        "speedup_vs_full_entrywise": full_seconds / fast, "speedup_vs_sampled_entrywise": sampled_seconds / fast,
        "mutations_caught": sum(not r["passed"] for r in rows if r["model"] in MUTATIONS), "mutations": len(MUTATIONS),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "jax": jax.__version__},
    }
    table = Table(title=f"check_vjp on {n_params:,} parameters")
    for col in ("check", "model", "verdict", "seconds", "diagnosis"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["check"], r["model"], "pass" if r["passed"] else "FAIL", f"{r['seconds']:.1f}", r["diagnosis"][:70])
    table.add_row("entry-wise, every entry (estimate)", "correct", "-", f"{full_seconds:.0f}",
                  f"{probe_seconds:.2f} s for {probed} entries, x {sum(sizes) / probed:.0f}")
    console.print(table)
    console.print(f"fast mode: {fast:.1f} s; {summary['speedup_vs_full_entrywise']:.0f}x faster than every entry by finite "
                  f"differences, {summary['speedup_vs_sampled_entrywise']:.1f}x faster than the default sampled mode; "
                  f"{summary['mutations_caught']}/{summary['mutations']} planted mistakes caught")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fast_check.json").write_text(json.dumps(summary, indent=1))
    ok = fast < 30 and summary["speedup_vs_full_entrywise"] >= 20 and summary["mutations_caught"] == len(MUTATIONS) and rows[0]["passed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
