"""The convolutional network's training step: hand-coded vs jax.grad, im2col vs XLA, vs PyTorch eager.

Nielsen's two-conv-pool network (chapter 6): 20 then 40 maps of 5x5, max-pool 2, ReLU, FC 100 ReLU,
softmax + cross-entropy, SGD, on 28x28x1 inputs. Each contender runs STEPS SGD steps over pre-made
batches in one call (JAX: one `lax.scan`; PyTorch: a Python loop), interleaved round by round
(`fnbackprop.bench.timing.interleaved`), and reports the median milliseconds per step (and, under `paired`,
the faster PyTorch format's time over the hand step's taken round by round: the PyTorch target is met
only when the hand step is faster at the medians and in the median round). `fnbackprop bench` first
makes one CPU device per core (`one_device_per_core`), and on such a CPU every JAX contender runs
data-parallel over them (`core_mesh`, `jax_steps(..., mesh)`): each core takes its share of the batch
through the whole step, which keeps its speed when the host places the cores far apart (README,
Convolutional networks):

- `hand im2col` (the engine's default on CPU) and `jax.grad im2col`: the same forward;
- `hand xla` and `jax.grad xla` (through `lax.conv_general_dilated` and the XLA-form backward);
- `torch eager` (NCHW) and `torch eager channels-last`, when PyTorch is installed (`.[torch]`).

Then where a hand-coded step's time goes: the costliest compiled operations of the scanned step on one device (a
`jax.profiler` trace, `fnbackprop.bench.timing.op_profile`; shapes name the layer: conv 2's products are
(4096, 500) and (40, 500) at batch 64), and each layer's forward and backward jitted alone at the
step's shapes (`layer_profile`).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .timing import interleaved, op_profile, per_round_ratio, scanned_sgd, summary, torch_module
from ..layers import activation, conv2d, dense, flatten, forward_with_key, max_pool, reshape
from ..layers.protocol import Layer
from ..models.network import Network, network
from ..parallel import ask_for_cpu_devices, make_mesh, replicate, shard_batch

STEPS = 100
LR = 0.01


def nielsen_conv_net(impl: str, conv: Callable[[int], Layer] | None = None) -> Network:
    """conv(20,5) maxpool(2) relu conv(40,5) maxpool(2) relu dense(100) relu dense(10), softmax + cross-entropy.
    `conv(features)` builds each 5x5 conv layer (default `conv2d(features, 5, impl=impl)`): a variant to time."""
    conv = conv or (lambda features: conv2d(features, 5, impl=impl))
    return network([reshape((28, 28, 1)), conv(20), max_pool(2), activation("relu"), conv(40),
                    max_pool(2), activation("relu"), flatten(), dense(100), activation("relu"), dense(10)],
                   (784,), output="softmax", loss="cross_entropy")


def batches(batch: int, steps: int = STEPS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((steps, batch, 784), dtype=np.float32), rng.integers(0, 10, (steps, batch))


def one_device_per_core() -> int:
    """One CPU device per core this process may run on (`ask_for_cpu_devices`), so that `core_mesh`
    can split each batch across the cores; returns the number of CPU devices. Call it before JAX
    starts its CPU backend (the first array or `jax.devices()`); after that the count stays as it is."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return ask_for_cpu_devices(cores)


def core_mesh() -> Mesh | None:
    """A mesh over the default backend's devices when they are several CPU devices (as
    `one_device_per_core` makes), else None: on a GPU, or on one CPU device, each step runs whole."""
    devices = jax.devices()
    return make_mesh() if devices[0].platform == "cpu" and len(devices) > 1 else None


def jax_steps(net: Network, source: str, mesh: Mesh | None = None) -> jax.stages.Wrapped:
    """`bench.scanned_sgd` of `net` at LR; with a `mesh`, give it xs and ys from `place_on(mesh, ...)`."""
    return scanned_sgd(net, source, LR, mesh)


def place_on(mesh: Mesh | None, params: Any, xs: np.ndarray, ys: np.ndarray) -> tuple:
    """(params, xs, ys) as `jax_steps(..., mesh)` takes them: parameters on every device, each stacked
    batch (steps, m, ...) split along m; without a mesh, on the default device."""
    if mesh is None:
        return params, jnp.asarray(xs), jnp.asarray(ys)
    return (replicate(mesh, params), *shard_batch(mesh, xs, ys, axis=1))


def torch_steps(batch: int, channels_last: bool) -> Callable | None:
    """The same network and SGD step in PyTorch eager, or None without PyTorch."""
    torch = torch_module()
    if torch is None:
        return None
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(20, 40, 5), nn.MaxPool2d(2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(640, 100), nn.ReLU(), nn.Linear(100, 10))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = batches(batch)
    tx = [torch.from_numpy(x).reshape(batch, 1, 28, 28).contiguous(memory_format=fmt) for x in xs]
    ty = [torch.from_numpy(y) for y in ys]

    def run():
        for x, y in zip(tx, ty):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        return None

    return run


def layer_profile(net: Network, params: Any, batch: int, reps: int = 50) -> list[dict]:
    """Per layer: milliseconds of its forward and of its backward, each jitted alone at the step's shapes."""
    x = jnp.asarray(batches(batch, 1)[0][0])
    rows = []
    for layer, p in zip(net.layers, net._expand(params)):
        fwd = jax.jit(lambda p, x, layer=layer: forward_with_key(layer, p, x, None))
        y, cache = fwd(p, x)
        bwd = jax.jit(layer.backward)
        dy = jnp.ones_like(y)
        jax.block_until_ready(bwd(p, cache, dy))
        times = {}
        for name, call in (("forward", lambda: fwd(p, x)), ("backward", lambda: bwd(p, cache, dy))):
            jax.block_until_ready(call())
            start = time.perf_counter()
            for _ in range(reps):
                out = call()
            jax.block_until_ready(out)
            times[name] = 1e3 * (time.perf_counter() - start) / reps
        rows.append({"layer": layer.name, "forward_ms": times["forward"], "backward_ms": times["backward"]})
        x = y
    return rows


def measure_conv(batch: int, rounds: int, mesh: Mesh | None = None) -> dict:
    """Median ms per SGD step of every contender at `batch`, interleaved; ratios; the hand step's profile.

    With a `mesh`, every JAX contender is data-parallel over it alike (`jax_steps`); PyTorch eager
    splits its work over the same cores with its own threads. The profiles are of the hand step on
    one device, whole batch: where the arithmetic goes, apart from how it is split."""
    nets = {impl: nielsen_conv_net(impl) for impl in ("im2col", "xla")}
    whole: tuple[Any, ...] = (nets["im2col"].init(jax.random.PRNGKey(0)), *(jnp.asarray(a) for a in batches(batch)))
    params, xs, ys = place_on(mesh, *whole)
    contenders: dict[str, Callable[[], Any]] = {}
    for impl, net in nets.items():
        for source, label in (("hand", "hand"), ("autodiff", "jax.grad")):
            run = jax_steps(net, source, mesh)
            jax.block_until_ready(run(params, xs, ys))  # compile
            contenders[f"{label} {impl}"] = functools.partial(run, params, xs, ys)
    for channels_last in (False, True):
        torch_run = torch_steps(batch, channels_last)
        if torch_run is not None:
            torch_run()
            contenders["torch eager" + (" channels-last" if channels_last else "")] = torch_run
    times = interleaved(contenders, rounds)
    per_step = {name: {k: v / STEPS * 1e3 for k, v in summary(t).items() if k != "n"} for name, t in times.items()}
    hand = per_step["hand im2col"]["median"]
    ratios = {"hand / jax.grad (im2col)": hand / per_step["jax.grad im2col"]["median"],
              "hand / jax.grad (xla)": per_step["hand xla"]["median"] / per_step["jax.grad xla"]["median"],
              "jax.grad through lax.conv / hand im2col": per_step["jax.grad xla"]["median"] / hand}
    torch_names = [n for n in per_step if n.startswith("torch")]
    paired = {}
    if torch_names:
        fastest = min(torch_names, key=lambda n: per_step[n]["median"])
        ratios[f"{fastest} / hand im2col"] = per_step[fastest]["median"] / hand
        paired["fastest torch / hand im2col"] = per_round_ratio(times[fastest], times["hand im2col"])
    one_device = jax_steps(nets["im2col"], "hand")
    hand_hlo = one_device.lower(*whole).compile().as_text() or ""  # names the profiled operations
    return {"batch": batch, "steps_per_call": STEPS, "rounds": rounds, "devices": 1 if mesh is None else mesh.devices.size,
            "ms_per_step": per_step, "paired": paired,
            "seconds_per_epoch_50k": {n: v["median"] * 50_000 / batch / 1e3 for n, v in per_step.items()},
            "ratios": ratios, "profile": layer_profile(nets["im2col"], whole[0], batch),
            "op_profile": op_profile(lambda: one_device(*whole), hand_hlo, per=STEPS, top=15)}


def conv_targets(results: list[dict]) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for the conv step, per batch size."""
    rows = []
    for r in results:
        b, ms = r["batch"], {k: v["median"] for k, v in r["ms_per_step"].items()}
        ratio = ms["hand im2col"] / ms["jax.grad im2col"]
        rows.append((f"conv net, batch {b}: hand / jax.grad (same forward) <= 1.05", ratio <= 1.05, f"{ratio:.3f}"))
        speedup = ms["jax.grad xla"] / ms["hand im2col"]
        rows.append((f"conv net, batch {b}: >= 4x faster than jax.grad through lax.conv", speedup >= 4, f"{speedup:.1f}x"))
        torch_ms = [v for k, v in ms.items() if k.startswith("torch")]
        if torch_ms:
            # faster at the medians, and in the median round (the ratio taken round by round), when measured
            by_round = r.get("paired", {}).get("fastest torch / hand im2col")
            faster = ms["hand im2col"] < min(torch_ms) and (by_round is None or by_round["median"] > 1)
            measured = f"{min(torch_ms) / ms['hand im2col']:.2f}x"
            if by_round is not None:
                measured += f" (round by round: median {by_round['median']:.2f}x, quartiles {by_round['q1']:.2f}-{by_round['q3']:.2f})"
            rows.append((f"conv net, batch {b}: faster than PyTorch eager (its faster format)", faster, measured))
    return rows


def run_conv_benchmark(quick: bool = False, rounds: int | None = None) -> list[dict]:
    """`measure_conv` at batch 10 and 64 (quick: batch 10, 3 rounds), over `core_mesh()`."""
    rounds = rounds or (3 if quick else 7)
    mesh = core_mesh()
    return [measure_conv(b, rounds, mesh) for b in ((10,) if quick else (10, 64))]
