"""What limits the wide MLP's step on the CPU: the throughput of each matmul form it uses.

    python experiments/wide_step_profile.py

A step of [784, 1024, 1024, 10] at batch 1024 runs three forms of 1024 x 1024 products:
Z = A_prev W^T (forward), dA_prev = dZ W, and dW = dZ^T A_prev, a contraction over the batch axis.
Written any way (dZ^T @ A, (A^T @ dZ)^T, a transpose behind an optimisation barrier), XLA lowers
dW to the same contraction, so the hand-coded backward and jax.grad run identical programs (the
benchmark counts their dots and fusions). Each form is timed in a loop of 8 (each iteration adds an
n x n elementwise op, as a step's updates do), interleaved, 7 rounds; GFLOP/s counts the product only.
Writes results/wide_step_profile.json.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fnbackprop.bench.timing import interleaved, matmul_limit

M = N = 1024
REPEATS = 8


def repeated(product):
    """The product REPEATS times in a loop, each iteration depending on the last (nothing is hoisted)."""
    def run(a, dz, w):
        body = lambda i, c: c + product(a + c[0, 0] * 0, dz + c[0, 0] * 0, w)  # noqa: E731
        return jax.lax.fori_loop(0, REPEATS, body, jnp.zeros((N, N)))
    return jax.jit(run)


FORMS = {
    "forward Z = A W^T (contract 1,1)": lambda a, dz, w: a @ w.T,
    "dA_prev = dZ W (contract 1,0)": lambda a, dz, w: dz @ w,
    "dW = dZ^T A (contract 0,0)": lambda a, dz, w: dz.T @ a,
    "dW = (A^T dZ)^T": lambda a, dz, w: (a.T @ dz).T,
    "dW, transpose behind a barrier": lambda a, dz, w: jax.lax.optimization_barrier(dz.T) @ a,
}


def main() -> None:
    a, dz, w = (jax.random.normal(k, (M, N)) for k in jax.random.split(jax.random.PRNGKey(0), 3))
    runs = {name: repeated(form) for name, form in FORMS.items()}
    for run in runs.values():
        jax.block_until_ready(run(a, dz, w))
    times = interleaved({name: (lambda run=run: run(a, dz, w)) for name, run in runs.items()}, 7)
    gflops = {name: 2 * M * N * N * REPEATS / float(np.median(t)) / 1e9 for name, t in times.items()}
    limit = matmul_limit(10)["best_gflops"]
    for name, g in gflops.items():
        print(f"{name:34s} {g:6.1f} GFLOP/s  ({100 * g / limit:.0f}% of the {limit:.0f} GFLOP/s limit)")
    out = Path(__file__).resolve().parent / "results" / "wide_step_profile.json"
    out.write_text(json.dumps({"gflops": gflops, "matmul_limit_gflops": limit}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
