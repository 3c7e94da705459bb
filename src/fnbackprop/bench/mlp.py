"""`fnbackprop bench`: the hand-coded backward against jax.grad, PyTorch and numpy, in one run.

What is measured, all in one process, interleaved (one call of every implementation in turn, for
several rounds) so that a machine whose speed drifts slows every contender alike:

- the matmul limit: the best GFLOP/s of a large float32 matmul through JAX;
- per training step (SGD, pre-made mini-batches, the steps run inside one compiled `lax.scan`):
  the hand-coded backward and `jax.grad`, alternating on their own (twice the rounds), their time
  ratio per round, the achieved GFLOP/s and the fraction of the matmul limit;
- the same step in PyTorch eager (and `torch.compile` with --torch-compile) when torch is installed
  (`pip install ".[torch]"`), and in two numpy versions of the same equations: per example within
  each mini-batch (Nielsen's network.py style; on batches over 32 it is timed on 32 of the examples
  and scaled, its loop being linear in them) and vectorised per mini-batch;
- one epoch of Nielsen's network on MNIST (real when found, else random data of its shape), batch 10,
  a fresh shuffle every epoch, for every implementation;
- peak memory: XLA's buffer plan of the compiled step (arguments, outputs and temporaries), numpy's
  allocations under tracemalloc; for PyTorch on CPU there is no allocator counter, so none is shown.

FLOPs are counted exactly for the matrix products, which are all but a fraction of a percent of the
work at every width of the grid: a dense layer of n_in -> n_out on m examples costs 2 m n_in n_out
forward, the same for dW, and the same again for dA_prev except in the first layer, where no one asks
for dC/dx (XLA drops it). The elementwise work (activations, the loss) is left out and stated.
"""

from __future__ import annotations

import functools
import platform
import re
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..train.data import load_mnist
from ..models.network import mlp
from ..train.epochs import compact_features, make_epoch
from .timing import (interleaved, matmul_limit, per_round_ratio, scanned_sgd, summary, timed,
                     torch_module, xla_memory_bytes)

LEARNING_RATE = 0.1
PER_EXAMPLE_ROWS = 32  # the per-example numpy baseline times this many examples of a larger batch


@dataclass(frozen=True)
class Config:
    """One network and batch size of the grid."""

    name: str
    sizes: tuple[int, ...]
    hidden: str
    output: str
    loss: str
    batch: int
    matmul_target: bool = False  # judged against "at least 85% of the matmul limit, no slower than PyTorch"

    @property
    def matmul_flops(self) -> int:
        """FLOPs of the matrix products of one forward and backward pass (see the module docstring)."""
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        return 6 * self.batch * sum(a * b for a, b in pairs) - 2 * self.batch * pairs[0][0] * pairs[0][1]


NIELSEN = Config("nielsen [784,30,10] b10", (784, 30, 10), "sigmoid", "sigmoid", "quadratic", 10)
GRID = (
    NIELSEN,
    Config("[784,100,10] b10", (784, 100, 10), "sigmoid", "sigmoid", "quadratic", 10),
    Config("[784,256,256,10] b64", (784, 256, 256, 10), "relu", "softmax", "cross_entropy", 64),
    Config("wide [784,1024,1024,10] b256", (784, 1024, 1024, 10), "relu", "softmax", "cross_entropy", 256, True),
    Config("wide [784,1024,1024,10] b1024", (784, 1024, 1024, 10), "relu", "softmax", "cross_entropy", 1024, True),
    Config("wide [784,2048,2048,10] b1024", (784, 2048, 2048, 10), "relu", "softmax", "cross_entropy", 1024),
)
QUICK_GRID = (NIELSEN, GRID[3])


# ----- JAX: the hand-coded backward and jax.grad ----------------------------------------------------
def random_batches(config: Config, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`steps` mini-batches of uniform [0, 1) features and integer labels, as numpy."""
    rng = np.random.default_rng(seed)
    x = rng.random((steps, config.batch, config.sizes[0]), dtype=np.float32)
    y = rng.integers(0, config.sizes[-1], (steps, config.batch))
    return x, y


def jax_steps(config: Config, source: str) -> jax.stages.Wrapped:
    """`scanned_sgd` of the configuration's MLP at LEARNING_RATE."""
    net = mlp(list(config.sizes), hidden=config.hidden, output=config.output, loss=config.loss)
    return scanned_sgd(net, source, LEARNING_RATE)


def jax_step_costs(config: Config, source: str, params: Any) -> dict[str, Any]:
    """One compiled step, as XLA sees it: peak bytes (parameters, one batch, gradients, activations),
    FLOPs of everything, elementwise work included (a cross-check of `matmul_flops`), and how many
    matrix products and fused kernels the optimised program runs."""
    x, y = random_batches(config, 1)
    compiled = jax_steps(config, source).lower(params, x, y).compile()
    costs = compiled.cost_analysis()
    costs = costs[0] if isinstance(costs, list) else costs
    text = compiled.as_text() or ""
    return {"peak_bytes": xla_memory_bytes(compiled), "flops": (costs or {}).get("flops"),
            "dots": len(re.findall(r"\bdot\(", text)), "kernels": len(re.findall(r" fusion\(", text))}


# ----- numpy baselines: the same equations, by hand, in two styles -------------------------------
def _np_activation(name: str, z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z)) if name == "sigmoid" else np.maximum(z, 0)


def _np_derivative(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return a * (1 - a) if name == "sigmoid" else (z > 0).astype(z.dtype)


def _np_output(config: Config, z: np.ndarray, axis: int) -> np.ndarray:
    if config.output == "softmax":
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return 1.0 / (1.0 + np.exp(-z))


def _np_output_delta(config: Config, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dC/dZ[L] for one example's cost: (a - y) * sigma'(z) (quadratic), a - y (softmax + cross-entropy)."""
    return (a - y) * a * (1 - a) if config.loss == "quadratic" else a - y


def numpy_params(config: Config, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((b, a), dtype=np.float32) / np.sqrt(a), np.zeros(b, np.float32))
            for a, b in zip(config.sizes[:-1], config.sizes[1:])]


def numpy_step_per_example(config: Config, params: list, x: np.ndarray, y: np.ndarray) -> list:
    """Nielsen's network.py update_mini_batch: backprop one column vector at a time, sum, then step.

    delta[L] = dC/dz[L]; delta[l] = (W[l+1]^T delta[l+1]) * sigma'(z[l]); dC/db[l] = delta[l];
    dC/dW[l] = delta[l] a[l-1]^T; W <- W - (eta/m) sum_x dC/dW.
    """
    nabla = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    eye = np.eye(config.sizes[-1], dtype=np.float32)
    for xi, yi in zip(x, y):
        activations, zs = [xi[:, None]], []
        for i, (w, b) in enumerate(params):
            zs.append(w @ activations[-1] + b[:, None])
            last = i == len(params) - 1
            activations.append(_np_output(config, zs[-1], 0) if last else _np_activation(config.hidden, zs[-1]))
        delta = _np_output_delta(config, zs[-1], activations[-1], eye[yi][:, None])
        for layer in range(len(params) - 1, -1, -1):
            nabla[layer][0][...] += delta @ activations[layer].T
            nabla[layer][1][...] += delta[:, 0]
            if layer:
                delta = (params[layer][0].T @ delta) * _np_derivative(config.hidden, zs[layer - 1], activations[layer])
    scale = LEARNING_RATE / len(x)
    return [(w - scale * nw, b - scale * nb) for (w, b), (nw, nb) in zip(params, nabla)]


def numpy_step_vectorised(config: Config, params: list, x: np.ndarray, y: np.ndarray) -> list:
    """The same step on the whole mini-batch at once (rows are examples): dZ = dA * g'(Z),
    dW = dZ^T A_prev / m, db = mean dZ, dA_prev = dZ W."""
    activations, zs = [x], []
    for i, (w, b) in enumerate(params):
        zs.append(activations[-1] @ w.T + b)
        last = i == len(params) - 1
        activations.append(_np_output(config, zs[-1], 1) if last else _np_activation(config.hidden, zs[-1]))
    dz = _np_output_delta(config, zs[-1], activations[-1], np.eye(config.sizes[-1], dtype=np.float32)[y]) / len(x)
    new = []
    for layer in range(len(params) - 1, -1, -1):
        w, b = params[layer]
        new.append((w - LEARNING_RATE * (dz.T @ activations[layer]), b - LEARNING_RATE * dz.sum(0)))
        if layer:
            dz = (dz @ w) * _np_derivative(config.hidden, zs[layer - 1], activations[layer])
    return new[::-1]


def numpy_steps(step: Callable, config: Config) -> Callable:
    """(params, xs, ys) -> params over every pre-made batch, as the JAX scan does."""
    def run(params, xs, ys):
        for x, y in zip(xs, ys):
            params = step(config, params, x, y)
        return params

    return run


def numpy_peak_bytes(step: Callable, config: Config, examples: int | None = None) -> int:
    """Peak bytes numpy allocates during one step, parameters and the whole batch's input included
    (tracemalloc). `examples` runs the step on that many of the batch: the per-example loop's working
    memory does not grow with the batch, and a full batch at width 2048 takes half a minute."""
    x, y = random_batches(config, 1)
    params = numpy_params(config)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    step(config, params, x[0, :examples], y[0, :examples])
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak + sum(w.nbytes + b.nbytes for w, b in params) + x[0].nbytes


# ----- PyTorch (optional) -------------------------------------------------------------------------
def torch_steps(config: Config, device: str = "cpu", compile_step: bool = False) -> tuple[Callable, Any]:
    """(xs, ys) -> None: eager (or torch.compile'd) SGD steps over pre-made batches; and the model."""
    torch = torch_module()
    layers: list = []
    for i, (a, b) in enumerate(zip(config.sizes[:-1], config.sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(config.sizes) - 2:
            layers.append(torch.nn.Sigmoid() if config.hidden == "sigmoid" else torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    n_out = config.sizes[-1]

    def loss_of(x, y):
        z = model(x)
        if config.loss == "quadratic":
            return 0.5 * ((torch.sigmoid(z) - torch.nn.functional.one_hot(y, n_out)) ** 2).sum() / len(x)
        return torch.nn.functional.cross_entropy(z, y)

    def step(x, y):
        model.zero_grad(set_to_none=True)
        loss_of(x, y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LEARNING_RATE * p.grad

    step_fn = torch.compile(step) if compile_step else step

    def run(xs, ys):
        for x, y in zip(xs, ys):
            step_fn(x, y)
        if device != "cpu":
            torch.cuda.synchronize()

    return run, model


# ----- the grid -------------------------------------------------------------------------------------
def steps_per_call(config: Config, budget_flops: float = 4e9) -> int:
    """How many steps one timed call runs: about `budget_flops` of work, at least 2, at most 500."""
    return int(min(500, max(2, budget_flops // config.matmul_flops)))


def measure_config(config: Config, rounds: int, torch_compile: bool, device: str,
                   numpy_baselines: bool = True) -> dict:
    """Every implementation of one configuration, interleaved; per-step medians, ratios, GFLOP/s, memory."""
    k = steps_per_call(config)
    xs_np, ys_np = random_batches(config, k)
    xs, ys = jnp.asarray(xs_np), jnp.asarray(ys_np)
    net = mlp(list(config.sizes), hidden=config.hidden, output=config.output, loss=config.loss)
    params = net.init(jax.random.PRNGKey(0))
    contenders: dict[str, Callable[[], Any]] = {}
    compile_seconds: dict[str, float] = {}
    memory: dict[str, int | None] = {}
    xla: dict[str, dict] = {}
    for source in ("hand", "autodiff"):
        run = jax_steps(config, source)
        compile_seconds[f"jax {source}"] = timed(functools.partial(run, params, xs, ys))
        contenders[f"jax {source}"] = functools.partial(run, params, xs, ys)
        xla[f"jax {source}"] = jax_step_costs(config, source, params)
        memory[f"jax {source}"] = xla[f"jax {source}"]["peak_bytes"]
    torch = torch_module()
    if torch is not None:
        txs, tys = torch.from_numpy(xs_np).to(device), torch.from_numpy(ys_np).to(device)
        for label, compiled in (("torch eager", False), ("torch.compile", True))[: 1 + torch_compile]:
            try:
                torch_run, _ = torch_steps(config, device, compiled)
                compile_seconds[label] = timed(functools.partial(torch_run, txs, tys))
                contenders[label] = functools.partial(torch_run, txs, tys)
            except Exception as error:  # torch.compile needs a working C++ toolchain; report, go on
                compile_seconds[label] = float("nan")
                memory[label] = None
                print(f"{label} failed on {config.name}: {type(error).__name__}: {str(error)[:200]}")
    steps = {name: float(k) for name in contenders}
    if numpy_baselines:
        np_params = numpy_params(config)
        # per example is slow: one call runs fewer steps, and at most PER_EXAMPLE_ROWS examples of the
        # batch, its time scaled by batch / rows (the loop is linear in the examples)
        np_k = max(1, min(k, int(2e8 // config.matmul_flops)))
        rows = min(config.batch, PER_EXAMPLE_ROWS)
        for label, step in (("numpy per-example", numpy_step_per_example), ("numpy vectorised", numpy_step_vectorised)):
            per_example = label == "numpy per-example"
            n, m = (np_k, rows) if per_example else (k, config.batch)
            contenders[label] = functools.partial(numpy_steps(step, config), np_params, xs_np[:n, :m], ys_np[:n, :m])
            steps[label] = n * m / config.batch
            memory[label] = numpy_peak_bytes(step, config, m)
    # hand vs jax.grad on their own first, alternating, twice the rounds: no other library's threads
    # run between them (numpy's BLAS and torch's OpenMP threads spin after a call and slowed whichever
    # contender came next); then every implementation together, for the comparison across libraries
    jax_only = interleaved({name: contenders[name] for name in ("jax hand", "jax autodiff")}, 2 * rounds)
    per_call = {**interleaved({k: v for k, v in contenders.items() if not k.startswith("jax")}, rounds), **jax_only}
    per_step = {name: [s / steps[name] for s in seconds] for name, seconds in per_call.items()}
    result: dict[str, Any] = {"config": asdict(config), "matmul_flops_per_step": config.matmul_flops, "xla_step": xla,
              "steps_per_call": steps,  # fractional: the per-example baseline ran part of each batch
              "compile_seconds": compile_seconds, "peak_bytes": memory, "per_step_seconds": {},
              "hand_over_autodiff": per_round_ratio(jax_only["jax hand"], jax_only["jax autodiff"])}
    for name, seconds in per_step.items():
        med = float(np.median(seconds))
        result["per_step_seconds"][name] = {**summary(seconds), "gflops": config.matmul_flops / med / 1e9}
    if "torch eager" in per_step:
        result["hand_over_torch_eager"] = per_round_ratio(per_step["jax hand"], per_step["torch eager"])
    return result


# ----- one epoch of Nielsen's network -------------------------------------------------------------
def nielsen_data(data_path: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST's 50,000 training images when found, else random data of the same shape (and say which); a
    `data_path` given but not found is a FileNotFoundError."""
    try:
        mnist = load_mnist(data_path)
        return mnist.x_train, mnist.y_train, "MNIST (50,000 training images)"
    except FileNotFoundError:
        if data_path is not None:  # a path the user named is never replaced by other data
            raise
        rng = np.random.default_rng(0)
        x = (rng.integers(0, 256, (50_000, 784)) / 256).astype(np.float32)
        return x, rng.integers(0, 10, 50_000), "random pixels of MNIST's shape (MNIST not found)"


def _next_epoch(epoch: Callable, params: Any, state: Any, keys: Iterator, x: Any, y: Any) -> Any:
    """One epoch from the same start, with the next shuffle key."""
    return epoch(params, state, next(keys), x, y)


def measure_nielsen_epoch(rounds: int, data_path: str | None, fraction: float = 1.0, device: str = "cpu") -> dict:
    """Seconds per epoch at batch 10 with a fresh shuffle each epoch, every implementation interleaved.

    JAX runs `train.make_epoch` (shuffle and gather on the device, uint8 codes when exact), hand and
    jax.grad alternating on their own first (as in `measure_config`), then the baselines. The
    baselines shuffle as their authors would: numpy by fancy indexing of a permutation, PyTorch by
    torch.randperm and indexing. With fraction < 1 (--quick) the slow baselines run that fraction of
    the epoch and are scaled up (marked `extrapolated`).
    """
    config = NIELSEN
    x, y, source = nielsen_data(data_path)
    n = len(x)
    net = mlp(list(config.sizes), hidden=config.hidden, output=config.output, loss=config.loss, init="nielsen_large")
    params = net.init(jax.random.PRNGKey(0))
    opt = optax.sgd(3.0)
    codes, denominator = compact_features(x)
    xj, yj = jnp.asarray(codes), jnp.asarray(y)
    contenders: dict[str, Callable[[], Any]] = {}
    for grad in ("hand", "autodiff"):
        epoch = make_epoch(net, opt, config.batch, n, grad, x_denominator=denominator)
        state = opt.init(params)
        keys = iter(jax.random.split(jax.random.PRNGKey(1), 10_000))
        jax.block_until_ready(epoch(params, state, next(keys), xj, yj))
        contenders[f"jax {grad}"] = functools.partial(_next_epoch, epoch, params, state, keys, xj, yj)
    part = max(config.batch, int(n * fraction) // config.batch * config.batch)
    rng = np.random.default_rng(0)
    np_params = numpy_params(config)
    for label, step in (("numpy per-example", numpy_step_per_example), ("numpy vectorised", numpy_step_vectorised)):
        def numpy_epoch(step=step):
            order = rng.permutation(n)[:part]
            xs, ys = x[order].reshape(-1, config.batch, 784), y[order].reshape(-1, config.batch)
            return numpy_steps(step, config)(np_params, xs, ys)
        contenders[label] = numpy_epoch
    torch = torch_module()
    if torch is not None:
        run, _ = torch_steps(config, device)
        tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(np.asarray(y)).to(device)

        def torch_epoch():
            order = torch.randperm(n, device=device)[:part]
            run(tx[order].view(-1, config.batch, 784), ty[order].view(-1, config.batch))

        contenders["torch eager"] = torch_epoch
    jax_only = interleaved({name: contenders[name] for name in ("jax hand", "jax autodiff")}, 2 * rounds)
    seconds = {**interleaved({k: v for k, v in contenders.items() if not k.startswith("jax")}, rounds), **jax_only}
    scale = {name: (1.0 if name.startswith("jax") else n / part) for name in contenders}
    epochs = {name: summary([s * scale[name] for s in times]) for name, times in seconds.items()}
    return {"data": source, "batch": config.batch, "examples": n, "extrapolated_from_examples": part if part < n else None,
            "seconds_per_epoch": epochs,
            "hand_over_autodiff": per_round_ratio(seconds["jax hand"], seconds["jax autodiff"])}


# ----- the whole benchmark ------------------------------------------------------------------------
def run_benchmark(quick: bool = False, gpu: bool = False, torch_compile: bool = False, data_path: str | None = None,
                  rounds: int | None = None, on_config: Callable[[str], None] | None = None) -> dict:
    """Everything above; a JSON-ready dict."""
    device = "cpu"
    if gpu:
        if jax.default_backend() != "gpu":
            raise RuntimeError(f"--gpu: JAX sees no GPU (default backend {jax.default_backend()!r})")
        torch = torch_module()
        device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    rounds = rounds or (3 if quick else 9)
    limit = matmul_limit(5 if quick else 20)
    grid = QUICK_GRID if quick else GRID
    configs = []
    for config in grid:
        if on_config:
            on_config(config.name)
        configs.append(measure_config(config, rounds, torch_compile, device, numpy_baselines=not gpu))
    if on_config:
        on_config("one epoch of Nielsen's network")
    epoch = measure_nielsen_epoch(max(3, rounds // 3), data_path, 0.1 if quick else 1.0, device) if not gpu else None
    if not quick:  # the limit again at the end: the best of both is the one the machine showed it can reach
        again = matmul_limit(20)
        limit = {**limit, "best_gflops_at_end": again["best_gflops"], "best_gflops": max(limit["best_gflops"], again["best_gflops"])}
    for c in configs:
        for t in c["per_step_seconds"].values():
            t["fraction_of_limit"] = t["gflops"] / limit["best_gflops"]
    torch = torch_module()
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "jax": jax.__version__, "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()],
                    "torch": None if torch is None else torch.__version__, "numpy": np.__version__},
        "quick": quick, "rounds": rounds, "matmul_limit": limit, "configs": configs, "nielsen_epoch": epoch,
    }


def targets(results: dict) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for each performance target of the MLP step, from one run's results."""
    rows = []
    for c in results["configs"]:
        ratio = c["hand_over_autodiff"]["median"]
        rows.append((f"hand / jax.grad <= 1.0: {c['config']['name']}", ratio <= 1.0, f"{ratio:.3f}"))
    for c in (c for c in results["configs"] if c["config"].get("matmul_target")):
        steps, name = c["per_step_seconds"], c["config"]["name"]
        frac = steps["jax hand"]["fraction_of_limit"]
        rows.append((f"hand >= 85% of the matmul limit: {name}", frac >= 0.85, f"{100 * frac:.0f}%"))
        if "torch eager" in steps:
            ratio = steps["jax hand"]["median"] / steps["torch eager"]["median"]
            rows.append((f"hand no slower than torch eager: {name}", ratio <= 1.0, f"time ratio {ratio:.2f}"))
    epoch = results.get("nielsen_epoch")
    if epoch:
        secs = {k: v["median"] for k, v in epoch["seconds_per_epoch"].items()}
        hand = secs["jax hand"]
        rows.append(("Nielsen epoch <= 0.15 s (batch 10, fresh shuffle)", hand <= 0.15, f"{hand:.3f} s"))
        for other, factor in (("torch eager", 10), ("numpy per-example", 10), ("numpy vectorised", 2)):
            if other in secs:
                rows.append((f"Nielsen epoch >= {factor}x faster than {other}", secs[other] / hand >= factor,
                             f"{secs[other] / hand:.1f}x"))
    return rows


def write_plot(results: dict, path: str | Path) -> None:
    """Per-step time of every implementation per configuration, and the achieved fraction of the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = results["configs"]
    names = [c["config"]["name"] for c in configs]
    impls = [i for i in ("jax hand", "jax autodiff", "torch eager", "torch.compile", "numpy vectorised",
                         "numpy per-example") if any(i in c["per_step_seconds"] for c in configs)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    width = 0.8 / len(impls)
    x = np.arange(len(names))
    for i, impl in enumerate(impls):
        t = [c["per_step_seconds"].get(impl, {}).get("median", np.nan) * 1e3 for c in configs]
        frac = [100 * c["per_step_seconds"].get(impl, {}).get("fraction_of_limit", np.nan) for c in configs]
        left.bar(x + i * width, t, width, label=impl)
        right.bar(x + i * width, frac, width, label=impl)
    for ax in (left, right):
        ax.set_xticks(x + 0.4 - width / 2, [n.replace("wide ", "").replace(" b", "\nbatch ") for n in names], fontsize=7)
    left.set(yscale="log", ylabel="milliseconds per training step (median)", title="Time per SGD step")
    right.set(ylabel="% of the matmul limit (matmul FLOPs / time)",
              title=f"Achieved fraction of {results['matmul_limit']['best_gflops']:.0f} GFLOP/s "
                    "(JAX's best large float32 matmul)")
    right.axhline(85, color="k", ls="--", lw=1, label="target 85% (wide MLPs)")
    left.legend(fontsize=8, loc="upper left")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"fnbackprop bench on {results['machine']['backend']} ({results['machine']['processor']}), float32")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


