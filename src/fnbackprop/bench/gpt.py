"""The GPT's training step: hand-written backward vs jax.grad vs a PyTorch eager twin, FLOPs and the matmul limit.

Each contender runs `steps` AdamW steps (clipping, weight decay on matrices, the lm preset's optimizer)
over pre-drawn batches in one call (JAX: one `lax.scan`; PyTorch: a Python loop), interleaved round by
round (`fnbackprop.bench.timing.interleaved`); the median milliseconds per step is reported. FLOPs per step
are nanoGPT's estimate (`estimate_mfu`): 6 N per token for the N non-embedding-position parameters,
plus 12 n_layer n_embd T per token for attention's two T x T products, times m T tokens; the fraction
of the matmul limit divides the achieved rate by `bench.matmul_gflops` (float32) on this machine. Hand and
jax.grad multiply in float32; a third contender is the hand-written step with bfloat16 products (mixed
precision, `fnbackprop.models.gpt.GPT.matmul_dtype`), what the preset's "auto" runs on a CPU with bfloat16
instructions. The profile is each JAX step's ten costliest compiled operations (a `jax.profiler` trace).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .timing import interleaved, matmul_gflops, op_profile, summary, torch_module
from ..train.lm import PRESETS, LMConfig, make_optimizer, model_of

VOCAB = 65  # Tiny Shakespeare's characters
# float32 products: the fraction of the (float32) matmul limit compares like with like; the hand-written step with
# bfloat16 products (what "auto" runs on a CPU with bfloat16 instructions) is a contender of its own
SIZES = {"cpu preset": replace(PRESETS["shakespeare-char-cpu"], matmul_dtype="float32"),
         "larger (6 x 384, context 256, batch 12)": replace(PRESETS["shakespeare-char-gpu"], batch_size=12, dropout=0.0,
                                                             matmul_dtype="float32")}
BFLOAT16 = "hand, bfloat16 products"


def flops_per_step(config: LMConfig, n_params: int) -> float:
    """nanoGPT's estimate: (6 N + 12 L C T) per token, m T tokens per step."""
    per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * config.block_size
    return per_token * config.batch_size * config.block_size


def batches(config: LMConfig, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, (steps, config.batch_size, config.block_size + 1))
    return tokens[:, :, :-1].astype(np.int32), tokens[:, :, 1:].astype(np.int32)


def jax_steps(config: LMConfig, source: str) -> tuple[jax.stages.Wrapped, Any]:
    """(params, opt_state, xs, ys) -> (params, opt_state): one AdamW step per batch, scanned, compiled."""
    model = model_of(config, VOCAB)
    optimizer = make_optimizer(config)
    grad = model.value_and_grad if source == "hand" else jax.value_and_grad(model.loss)

    @jax.jit
    def run(params, opt_state, xs, ys):
        def step(carry, xy):
            params, opt_state = carry
            _, g = grad(params, *xy)
            updates, opt_state = optimizer.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None
        return jax.lax.scan(step, (params, opt_state), (xs, ys))[0]

    return run, optimizer


def torch_gpt(config: LMConfig, vocab_size: int = VOCAB, seed: int = 0, gelu: str = "tanh") -> tuple[Any, Any] | None:
    """(model, AdamW) in PyTorch eager: nanoGPT's model.py condensed (its init, tied head, attention through
    `scaled_dot_product_attention`, GELU in the tanh form like ours, or with `gelu="none"` the exact erf form
    of nanoGPT's `nn.GELU()`), or None without PyTorch. model(idx, targets) is the mean cross-entropy."""
    torch = torch_module()
    if torch is None:
        return None
    nn: Any = torch.nn
    F = torch.nn.functional
    C, H = config.n_embd, config.n_head
    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=config.bias), nn.LayerNorm(C, bias=config.bias)
            self.c_attn, self.attn_proj = nn.Linear(C, 3 * C, bias=config.bias), nn.Linear(C, C, bias=config.bias)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C, bias=config.bias), nn.Linear(4 * C, C, bias=config.bias)

        def forward(self, x):
            m, T, _ = x.shape
            q, k, v = (a.view(m, T, H, C // H).transpose(1, 2) for a in self.c_attn(self.ln_1(x)).split(C, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(m, T, C)
            x = x + self.attn_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate=gelu))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab_size, C), nn.Embedding(config.block_size, C)
            self.h = nn.ModuleList(Block() for _ in range(config.n_layer))
            self.ln_f = nn.LayerNorm(C, bias=config.bias)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T  # tied head
            return F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1))

    model = GPT()
    for name, p in model.named_parameters():  # nanoGPT's init: N(0, 0.02^2), c_proj scaled, biases 0, norms 1
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * config.n_layer) if name.endswith("proj.weight") else 0.02
            torch.nn.init.normal_(p, 0.0, std)
        elif "ln" not in name:
            torch.nn.init.zeros_(p)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=config.lr, betas=(config.beta1, config.beta2))
    return model, opt


def torch_twin(config: LMConfig, xs: np.ndarray, ys: np.ndarray) -> Callable | None:
    """The same model and AdamW step in PyTorch eager over the batches (xs, ys), or None without PyTorch."""
    built = torch_gpt(config)
    if built is None:
        return None
    torch, (model, opt) = torch_module(), built
    tx, ty = [torch.from_numpy(x).long() for x in xs], [torch.from_numpy(y).long() for y in ys]

    def run():
        for x, y in zip(tx, ty):
            opt.zero_grad(set_to_none=True)
            model(x, y).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()

    return run


def measure_gpt(label: str, config: LMConfig, steps: int, rounds: int, peak_gflops: float) -> dict:
    """Median ms per step of hand, jax.grad, hand with bfloat16 products and the PyTorch twin at `config`, interleaved;
    FLOPs; each JAX step's profile."""
    xs, ys = batches(config, steps)
    model = model_of(config, VOCAB)
    params = model.init(jax.random.PRNGKey(0))
    contenders: dict[str, Callable[[], Any]] = {}
    calls: dict[str, Callable[[], Any]] = {}
    hlo: dict[str, str] = {}
    for source, name, dtype in (("hand", "hand", "float32"), ("autodiff", "jax.grad", "float32"), ("hand", BFLOAT16, "bfloat16")):
        run, optimizer = jax_steps(replace(config, matmul_dtype=dtype), source)
        state = optimizer.init(params)
        jx, jy = jnp.asarray(xs), jnp.asarray(ys)
        jax.block_until_ready(run(params, state, jx, jy))  # compile
        hlo[name] = run.lower(params, state, jx, jy).compile().as_text() or ""
        calls[name] = contenders[name] = functools.partial(run, params, state, jx, jy)
    twin = torch_twin(config, xs, ys)
    if twin is not None:
        twin()
        contenders["torch eager"] = twin
    times = interleaved(contenders, rounds)
    per_step = {name: {k: v / steps * 1e3 for k, v in summary(t).items() if k != "n"} for name, t in times.items()}
    n_params = model.n_params(params)
    flops = flops_per_step(config, n_params)
    result: dict[str, Any] = {"size": label, "config": {k: getattr(config, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size")},
              "n_params": int(n_params), "steps_per_call": steps, "rounds": rounds, "ms_per_step": per_step,
              "gflop_per_step": flops / 1e9, "matmul_limit_gflops": peak_gflops,
              "fraction_of_matmul_limit": {n: flops / (v["median"] / 1e3) / 1e9 / peak_gflops for n, v in per_step.items()},
              "ratios": {"hand / jax.grad": per_step["hand"]["median"] / per_step["jax.grad"]["median"],
                         "hand bfloat16 / float32 products": per_step[BFLOAT16]["median"] / per_step["hand"]["median"]},
              "profile": {name: op_profile(calls[name], hlo[name], per=steps) for name in ("hand", "jax.grad", BFLOAT16)}}
    if "torch eager" in per_step:
        result["ratios"]["torch eager / hand"] = per_step["torch eager"]["median"] / per_step["hand"]["median"]
    return result


def gpt_targets(results: list[dict]) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for the GPT's step."""
    rows = []
    for r in results:
        ratio = r["ratios"]["hand / jax.grad"]
        rows.append((f"GPT {r['size']}: hand / jax.grad <= 1.0", ratio <= 1.0, f"{ratio:.3f}"))
        if r["size"] == "cpu preset":
            share = r["fraction_of_matmul_limit"]["hand"]
            rows.append((f"GPT {r['size']}: hand step at >= 60% of the matmul limit (measured in the same run)", share >= 0.6,
                         f"{100 * share:.0f}%"))
        if "torch eager / hand" in r["ratios"] and r["size"] == "cpu preset":  # the speed target is at the preset
            speed = r["ratios"]["torch eager / hand"]
            rows.append((f"GPT {r['size']}: faster than the PyTorch eager twin", speed > 1, f"{speed:.2f}x"))
    return rows


def run_gpt_benchmark(quick: bool = False, rounds: int | None = None) -> list[dict]:
    """`measure_gpt` at the CPU preset (20 steps per call) and the larger size (3 steps per call); quick: the preset only."""
    rounds = rounds or (3 if quick else 7)
    peak = matmul_gflops(1024, 5)
    sizes = list(SIZES.items())[:1] if quick else list(SIZES.items())
    return [measure_gpt(label, config, 20 if config.n_embd <= 128 else 3, rounds, peak) for label, config in sizes]
