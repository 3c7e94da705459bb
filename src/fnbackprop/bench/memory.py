"""Where a hand-derived backward beats autodiff: memory. Peak memory of compiled steps, and their time.

Peak memory is XLA's memory analysis of the compiled step (`compiled.memory_analysis()`): temporaries
plus arguments plus outputs, what the step needs at its high point. Contenders, each a compiled
function returning the gradients of a float32 step:

- `hand blockwise` / `hand chunked`: the hand-derived memory-saving backward
  (`causal_self_attention(block=...)`, `losses.chunked_softmax_cross_entropy`);
- `hand plain`: the plain hand-derived backward;
- `jax.grad`: autodiff of the naive forward;
- `jax.grad + checkpoint`: the same with `jax.checkpoint` around the region (the fair autodiff competitor);
- `jax.grad dot_product_attention`: autodiff through `jax.nn.dot_product_attention` (attention only).

XLA's figure is cross-checked once, for the head, against the operating system's: the growth of the
resident set while the compiled step runs, each contender in a fresh process (`cross_check_process_peak`).
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..layers.attention import _heads, _merge, attention_backward, attention_forward, causal_self_attention
from ..layers.dense import dense_forward
from ..models.gpt import HEAD
from ..losses import chunked_softmax_cross_entropy
from ..check.verify import as_dtype

MiB = 2**20
ATTENTION_BLOCK = 32  # measured at T 4,096: 14 MiB and 245 ms at 32; 19 MiB, 203 ms at 64; 29 MiB, 244 ms at 128
HEAD_CHUNK = 256


def memory_bytes(fn: Callable, *args: Any) -> tuple[int, int]:
    """(temporaries + arguments + outputs, temporaries) of `fn` compiled for `args` (XLA's memory analysis)."""
    m = jax.jit(fn).lower(*args).compile().memory_analysis()
    assert m is not None, "XLA gave no memory analysis for this backend"
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes), int(m.temp_size_in_bytes)


def peak_bytes(fn: Callable, *args: Any) -> int:
    return memory_bytes(fn, *args)[0]


def median_seconds(fn: Callable, *args: Any, rounds: int = 3) -> float:
    compiled = jax.jit(fn)
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ----- attention ---------------------------------------------------------------------------------------
def attention_contenders(n_head: int) -> dict[str, Callable]:
    """name -> (params, x, dy) -> (dparams, dx) for the attention layer (c_attn, the causal core, c_proj)."""
    def hand(block):
        def step(params, x, dy):
            _, cache = attention_forward(params, x, n_head, block=block)
            grads, dx, _ = attention_backward(params, cache, dy, block)
            return grads, dx
        return step

    def autodiff(core: Callable, remat: bool = False):
        def forward(params, x):
            q, k, v = (_heads(a, n_head) for a in jnp.split(dense_forward(params["c_attn"], x)[0], 3, axis=-1))
            o = (jax.checkpoint(core) if remat else core)(q, k, v)
            return dense_forward(params["c_proj"], _merge(o))[0]

        def step(params, x, dy):
            return jax.vjp(forward, params, x)[1](dy)
        return step

    def naive(q, k, v):
        T = q.shape[2]
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
        return jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf), axis=-1) @ v

    def library(q, k, v):  # jax.nn.dot_product_attention takes (B, T, N, H)
        o = jax.nn.dot_product_attention(*(a.transpose(0, 2, 1, 3) for a in (q, k, v)), is_causal=True)
        return o.transpose(0, 2, 1, 3)

    return {"hand blockwise": hand(ATTENTION_BLOCK), "hand plain": hand(None), "jax.grad": autodiff(naive),
            "jax.grad + checkpoint": autodiff(naive, remat=True), "jax.grad dot_product_attention": autodiff(library)}


def measure_attention(lengths: tuple[int, ...], width: int = 64, n_head: int = 2, time_up_to: int = 4096) -> list[dict]:
    """Peak MiB of each contender at each T (batch 1), and ms per step up to `time_up_to`."""
    layer = causal_self_attention(n_head)
    rows = []
    for T in lengths:
        params = as_dtype(layer.init(jax.random.PRNGKey(0), (T, width)), jnp.float32)
        x = jax.random.normal(jax.random.PRNGKey(1), (1, T, width), jnp.float32)
        dy = jax.random.normal(jax.random.PRNGKey(2), (1, T, width), jnp.float32)
        row: dict[str, Any] = {"T": T, "peak_mib": {}, "ms": {}}
        for name, step in attention_contenders(n_head).items():
            row["peak_mib"][name] = peak_bytes(step, params, x, dy) / MiB
            if T <= time_up_to:
                row["ms"][name] = 1e3 * median_seconds(step, params, x, dy)
        rows.append(row)
    return rows


# ----- the cross-entropy head ---------------------------------------------------------------------------
def head_contenders() -> dict[str, Callable]:
    """name -> (h, W, targets) -> (dh, dW) for logits = h W^T and the mean cross-entropy over the rows."""
    def plain_loss(h, W, t):
        z = h @ W.T
        return jnp.mean(jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, t[:, None], axis=-1)[:, 0])

    def hand_plain(h, W, t):  # the fused rule of fnbackprop.losses, dZ = (softmax(Z) - Y) / N
        dz = HEAD.backward(h @ W.T, jax.nn.one_hot(t, W.shape[0], dtype=h.dtype))
        return dz @ W, dz.T @ h

    return {"hand chunked": lambda h, W, t: chunked_softmax_cross_entropy(h, W, t, HEAD_CHUNK)[1:],
            "hand plain": hand_plain, "jax.grad": jax.grad(plain_loss, argnums=(0, 1)),
            "jax.grad + checkpoint": jax.grad(jax.checkpoint(plain_loss), argnums=(0, 1))}


def head_inputs(N: int, V: int, d: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """h: (N, d), W: (V, d) float32 and targets: (N,), the same for every contender."""
    h = jax.random.normal(jax.random.PRNGKey(0), (N, d), jnp.float32) * 0.1
    W = jax.random.normal(jax.random.PRNGKey(1), (V, d), jnp.float32) * 0.02
    t = jax.random.randint(jax.random.PRNGKey(2), (N,), 0, V)
    return h, W, t


def measure_head(N: int = 4096, V: int = 50257, d: int = 768, timed: bool = True) -> dict:
    h, W, t = head_inputs(N, V, d)
    out: dict[str, Any] = {"N": N, "V": V, "d": d, "peak_mib": {}, "temp_mib": {}, "ms": {}}
    for name, step in head_contenders().items():
        peak, temp = memory_bytes(step, h, W, t)
        out["peak_mib"][name], out["temp_mib"][name] = peak / MiB, temp / MiB
        if timed:
            out["ms"][name] = 1e3 * median_seconds(step, h, W, t, rounds=1)
    return out


def _resident_now() -> int:
    """This process's resident set in bytes, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _resident_peak() -> int:
    """The resident set's high-water mark (VmHWM) in bytes, since start or the last reset."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def probe_head_step(name: str, N: int, V: int, d: int) -> dict:
    """Run one head contender in this process and measure what it adds to the resident set. The step runs
    once first and is dropped, so buffers the set-up left for XLA to free have been freed (CPU buffers are
    released asynchronously); then freed memory goes back to the system (`malloc_trim`), the high-water mark
    is reset (`/proc/self/clear_refs`, 5) and the step runs again. Compare with XLA's temporaries + outputs
    (the arguments are already resident)."""
    h, W, t = head_inputs(N, V, d)
    compiled = jax.jit(head_contenders()[name]).lower(h, W, t).compile()
    plan = compiled.memory_analysis()
    first = compiled(h, W, t)
    jax.block_until_ready(first)
    del first
    gc.collect()
    time.sleep(0.2)
    ctypes.CDLL(None).malloc_trim(0)  # memory freed so far goes back to the system, not reused unseen
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _resident_now()
    jax.block_until_ready(compiled(h, W, t))
    assert plan is not None, "XLA gave no memory analysis for this backend"
    return {"measured_mib": (_resident_peak() - before) / MiB, "xla_temp_plus_out_mib": (plan.temp_size_in_bytes + plan.output_size_in_bytes) / MiB}


def cross_check_process_peak(N: int, V: int, d: int, names: tuple[str, ...] = ("jax.grad", "hand chunked")) -> dict:
    """XLA's figure against the operating system's, once per head contender, each in a fresh process (Linux
    and the CPU backend only, where the step's buffers are the process's memory; {} elsewhere)."""
    if not os.path.exists("/proc/self/clear_refs") or jax.default_backend() != "cpu":
        return {}
    out = {}
    for name in names:
        code = f"import json; from fnbackprop.bench.memory import probe_head_step; print(json.dumps(probe_head_step({name!r}, {N}, {V}, {d})))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def measure_gpt_step(timed: bool = True) -> dict:
    """A whole GPT step (4 x 128, 4 heads, context 1,024, batch 8, vocabulary 65): peak MiB and ms of the gradient
    by the hand-written backward with blockwise attention and the chunked head, the same with both
    recomputations too (GELU, layer norm), the plain hand-written backward, jax.grad, and jax.grad with
    `jax.checkpoint` around the whole loss."""
    from ..models.gpt import gpt

    args: dict[str, Any] = dict(vocab_size=65, block_size=1024, n_layer=4, n_head=4, n_embd=128)
    plain = gpt(**args)
    saving = gpt(**args, attention_block=ATTENTION_BLOCK, head_chunk=HEAD_CHUNK)
    recomputing = gpt(**args, attention_block=ATTENTION_BLOCK, head_chunk=HEAD_CHUNK, recompute_gelu=True, recompute_norm=True)
    params = plain.init(jax.random.PRNGKey(0))
    idx = jax.random.randint(jax.random.PRNGKey(1), (8, 1024), 0, 65)
    contenders = {"hand blockwise + chunked": lambda p, x, y: saving.value_and_grad(p, x, y)[1],
                  "hand, + recomputation": lambda p, x, y: recomputing.value_and_grad(p, x, y)[1],
                  "hand plain": lambda p, x, y: plain.value_and_grad(p, x, y)[1],
                  "jax.grad": jax.grad(plain.loss), "jax.grad + checkpoint": jax.grad(jax.checkpoint(plain.loss))}
    out: dict[str, Any] = {"config": {**args, "batch": 8}, "peak_mib": {}, "ms": {}}
    for name, step in contenders.items():
        out["peak_mib"][name] = peak_bytes(step, params, idx, idx) / MiB
        if timed:
            out["ms"][name] = 1e3 * median_seconds(step, params, idx, idx, rounds=1)
    return out


def longest_context(budget_mib: float, width: int = 64, n_head: int = 2, up_to: int = 65536) -> dict[str, int]:
    """Per attention contender, the longest power-of-two T (from 256) whose step's peak fits `budget_mib`."""
    layer = causal_self_attention(n_head)
    best: dict[str, int] = {}
    for name, step in attention_contenders(n_head).items():
        T = 256
        while T <= up_to:
            params = as_dtype(layer.init(jax.random.PRNGKey(0), (T, width)), jnp.float32)
            x = jax.ShapeDtypeStruct((1, T, width), jnp.float32)
            if peak_bytes(step, params, x, x) / MiB > budget_mib:
                break
            best[name] = T
            T *= 2
    return best


def memory_targets(attention: list[dict], head: dict) -> list[tuple[str, bool, str]]:
    rows = []
    for r in attention:
        if r["T"] == 4096:
            mem = r["peak_mib"]["jax.grad"] / r["peak_mib"]["hand blockwise"]
            rows.append(("attention, T 4,096: peak memory <= 1/20 of jax.grad's", mem >= 20, f"1/{mem:.1f}"))
            if r["ms"]:
                speed = r["ms"]["hand blockwise"] / r["ms"]["jax.grad"]
                rows.append(("attention, T 4,096: step time <= 1.3x jax.grad's", speed <= 1.3, f"{speed:.2f}x"))
    mem = head["peak_mib"]["jax.grad"] / head["peak_mib"]["hand chunked"]
    floor = head["peak_mib"]["jax.grad"] - head["temp_mib"]["jax.grad"]  # arguments and outputs: every contender's
    rows.append((f"head, N {head['N']:,}, V {head['V']:,}: peak memory <= 1/10 of jax.grad's", mem >= 10,
                 f"1/{mem:.1f} (arguments and outputs alone are {floor:.0f} MiB: at best 1/{head['peak_mib']['jax.grad'] / floor:.1f})"))
    temp = head["temp_mib"]["jax.grad"] / head["temp_mib"]["hand chunked"]  # W and dW, arguments and outputs, set a floor
    rows.append((f"head, N {head['N']:,}, V {head['V']:,}: temporaries <= 1/10 of jax.grad's", temp >= 10, f"1/{temp:.1f}"))
    if head["ms"]:
        speed = head["ms"]["hand chunked"] / head["ms"]["jax.grad"]
        rows.append((f"head, N {head['N']:,}, V {head['V']:,}: step time <= 1.2x jax.grad's", speed <= 1.2, f"{speed:.2f}x"))
    return rows


def run_memory_benchmark(quick: bool = False) -> dict:
    lengths = (256, 1024) if quick else (256, 1024, 2048, 4096, 8192)
    attention = measure_attention(lengths)
    head = measure_head(1024, 8192, 256) if quick else measure_head()
    head["process_peak"] = cross_check_process_peak(head["N"], head["V"], head["d"])
    return {"attention": attention, "head": head, "gpt_step": measure_gpt_step(timed=not quick),
            "longest_context_2GiB": longest_context(2048, up_to=8192 if quick else 65536), "targets": memory_targets(attention, head)}


def plot_memory(results: dict, path: Any) -> None:
    """Peak memory of the attention step against the sequence length, one line per contender (log-log)."""
    from ..train.plot import plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lengths = [r["T"] for r in results["attention"]]
    for name in results["attention"][0]["peak_mib"]:
        ax.plot(lengths, [r["peak_mib"][name] for r in results["attention"]], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xticks=lengths, xticklabels=[f"{t:,}" for t in lengths], xlabel="sequence length T",
           ylabel="peak memory of the step (MiB)",
           title="Attention step (batch 1, 2 heads, width 64): hand-derived blockwise vs autodiff")
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
