"""Timing tools shared by the benchmarks: interleaved rounds, medians and quartiles, per-round ratios,
the costliest compiled operations, the matmul limit, and the scanned SGD step the MLP and conv benchmarks time."""

from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ..models.network import Network
from ..parallel import shard_map_value_and_grad
from ..train.epochs import gradient_function


def timed(fn: Callable[[], Any]) -> float:
    """Seconds for one call, waiting for JAX's asynchronous results."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved(contenders: dict[str, Callable[[], Any]], rounds: int, pause: float = 0.05) -> dict[str, list[float]]:
    """Each round calls every contender once, in an order rotated by one each round; seconds by contender.

    Rotating matters: numpy's BLAS and PyTorch's OpenMP threads spin for a while after a call, and
    in a fixed order the contender after them always paid for it (jax hand measured 1.5x jax.grad
    on identical programs). The `pause` before each call lets spinning threads go idle.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(pause)
            times[name].append(timed(contenders[name]))
    return times


def summary(seconds: list[float]) -> dict[str, float]:
    """median, the interquartile range and the extremes of a list of timings."""
    q1, median, q3 = np.percentile(seconds, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "min": float(min(seconds)),
            "max": float(max(seconds)), "n": len(seconds)}


def per_round_ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """The ratio of two contenders' times taken round by round (`interleaved` times them in the same round,
    so both saw the same machine), summarised as `summary` does. Steadier than a ratio of medians when
    the machine's speed drifts during the run."""
    return summary([a / b for a, b in zip(numerator, denominator)])


def describe_ops(hlo_text: str) -> dict[str, str]:
    """Each compiled operation's result type and the JAX operation it came from (its metadata's op_name)."""
    described = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.-]+) = (\S+) ", line)
        if m and m.group(1) not in described:
            origin = re.search(r'op_name="([^"]+)"', line)
            described[m.group(1)] = m.group(2) + ("  " + origin.group(1).split("/")[-1] if origin else "")
    return described


def op_profile(call: Callable[[], Any], hlo_text: str = "", per: int = 1, reps: int = 3, top: int = 10) -> list[dict]:
    """The `top` costliest compiled operations of `call()` (milliseconds per call / `per`), from a jax.profiler
    trace, each with its result type and origin from the compiled HLO text."""
    jax.block_until_ready(call())
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            for _ in range(reps):
                jax.block_until_ready(call())
        events = json.load(gzip.open(glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)[0]))["traceEvents"]
    totals: collections.Counter = collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and ("fusion" in name or name.startswith(("dot", "custom-call", "copy", "transpose", "scatter", "gather"))):
            totals[name] += e["dur"]
    described = describe_ops(hlo_text)
    return [{"op": name, "what": described.get(name, ""), "ms": us / reps / per / 1e3} for name, us in totals.most_common(top)]


def matmul_gflops(n: int, rounds: int) -> float:
    """The best GFLOP/s of `rounds` n x n float32 matmuls through jax.jit."""
    a, b = (jax.random.normal(k, (n, n), jnp.float32) for k in jax.random.split(jax.random.PRNGKey(0)))
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    return 2 * n**3 / min(timed(lambda: product(a, b)) for _ in range(rounds)) / 1e9


def matmul_limit(rounds: int = 10) -> dict[str, float]:
    """The machine's float32 matmul limit as JAX reaches it: the best of 2048^2 and 4096^2 matmuls,
    and numpy's 4096^2 beside it for reference."""
    a = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    numpy_best = 2 * 4096**3 / min(timed(lambda: a @ a) for _ in range(max(2, rounds // 4))) / 1e9
    jax_2048, jax_4096 = matmul_gflops(2048, rounds), matmul_gflops(4096, max(2, rounds // 4))
    return {"best_gflops": max(jax_2048, jax_4096), "jax_2048_gflops": jax_2048, "jax_4096_gflops": jax_4096,
            "numpy_4096_gflops": numpy_best}


def scanned_sgd(net: Network, source: str, learning_rate: float, mesh: Mesh | None = None) -> jax.stages.Wrapped:
    """A jitted (params, xs, ys) -> params running one SGD step per pre-made batch in a lax.scan.

    `source` "hand" takes the gradient from the hand-coded backward, "autodiff" from `jax.grad` of the
    same forward (`gradient_function`). With a `mesh`, each step is data-parallel
    (`shard_map_value_and_grad`): every device runs that backward on its m/D examples of the batch and
    the gradients are summed over the mesh, dW = psum_d((m_d/m) dW_d); xs and ys then come split along
    their batch axis (`parallel.shard_batch(..., axis=1)`), the parameters replicated."""
    grad_fn = gradient_function(net, source)
    if mesh is not None:
        grad_fn = shard_map_value_and_grad(net, mesh, grad_fn)

    def step(params, batch):
        _, grads = grad_fn(params, *batch)
        return jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads), None

    return jax.jit(lambda params, xs, ys: jax.lax.scan(step, params, (xs, ys))[0])


def xla_memory_bytes(compiled: Any) -> int | None:
    """Arguments + outputs + temporaries - aliased, by XLA's buffer assignment (None if unavailable)."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               - stats.alias_size_in_bytes)


def torch_module():
    """torch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def write_json(results: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(results, indent=1))
