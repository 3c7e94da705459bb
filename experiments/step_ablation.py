"""Where the GPT's training step spends what its matrix products do not: each piece taken out, the step timed.

    python experiments/step_ablation.py [--matmul-dtype bfloat16|float32] [--rounds 9]

The hand-written step at the CPU preset (AdamW, 20 steps per compiled call, `fnbackprop.bench.gpt.jax_steps`),
and the same step with one piece replaced by something that costs (almost) nothing: GELU by the identity, the
layer norms by the identity, attention's core (Q K^T, the causal softmax, P V and their backward) by y = V, AdamW
by plain SGD. The gradients of a step with a piece taken out are wrong: this times, it does not train. Each
variant's time is the median of interleaved rounds (`fnbackprop.bench.timing.interleaved`); the difference to
the whole step is what that piece costs there, its products included (attention's core holds 24 small batched
products a step). Writes results/step_ablation-DTYPE.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
from dataclasses import replace
from typing import Any, Callable
from unittest import mock

import jax
import jax.numpy as jnp
import optax

from fnbackprop.activations import ACTIVATIONS
from fnbackprop.bench import gpt as bench_gpt
from fnbackprop.bench.timing import interleaved, summary
from fnbackprop.layers.dense import dense_backward, dense_forward
from fnbackprop.train.lm import PRESETS, model_of

from _common import RESULTS


def attention_as_values(params: dict, x: Any, n_head: int, rate: float = 0.0, key: Any = None, probe: Any = None,
                        block: Any = None, scales: Any = None, dtype: Any = None) -> tuple:
    """c_proj(V) with V from c_attn: attention's two linear maps kept, its core (scores, softmax, P V) gone."""
    qkv, _ = dense_forward(params["c_attn"], x, dtype)
    v = jnp.split(qkv, 3, axis=-1)[2]
    return dense_forward(params["c_proj"], v, dtype)[0], (x, v)


def attention_as_values_backward(params: dict, cache: tuple, dout: Any, block: Any = None, dtype: Any = None) -> tuple:
    x, v = cache
    g_proj, dv = dense_backward(params["c_proj"], v, dout, dtype)
    zeros = jnp.zeros_like(dv)
    g_attn, dx = dense_backward(params["c_attn"], x, jnp.concatenate([zeros, zeros, dv], axis=-1), dtype)
    return {"c_attn": g_attn, "c_proj": g_proj}, dx, None


VARIANTS: dict[str, list[Callable[[], Any]]] = {
    "whole step": [],
    "GELU as the identity": [lambda: mock.patch.dict(ACTIVATIONS, {"gelu": dataclasses.replace(
        ACTIVATIONS["gelu"], fn=lambda z: z, derivative=lambda z, a: jnp.ones_like(z))})],
    "layer norms as the identity": [
        lambda: mock.patch("fnbackprop.layers.normalisation._normalise", lambda x, axis, eps: (x, jnp.ones(x.shape[:-1] + (1,), x.dtype))),
        lambda: mock.patch("fnbackprop.layers.normalisation._normalisation_dx", lambda dxhat, xhat, inv_std, axis: dxhat)],
    "attention's core as y = V": [lambda: mock.patch("fnbackprop.models.gpt.attention_forward", attention_as_values),
                                  lambda: mock.patch("fnbackprop.models.gpt.attention_backward", attention_as_values_backward)],
    "AdamW as SGD": [lambda: mock.patch.object(bench_gpt, "make_optimizer", lambda config: optax.sgd(1e-3))],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--matmul-dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default: 9)")
    p.add_argument("--steps", type=int, default=20, help="steps per compiled call (default: 20)")
    args = p.parse_args()
    config = replace(PRESETS["shakespeare-char-cpu"], matmul_dtype=args.matmul_dtype)
    xs, ys = (jnp.asarray(a) for a in bench_gpt.batches(config, args.steps))
    calls = {}
    for name, patches in VARIANTS.items():
        with contextlib.ExitStack() as stack:  # the patches hold while the step is traced and compiled
            for patch in patches:
                stack.enter_context(patch())
            params = model_of(config, bench_gpt.VOCAB).init(jax.random.PRNGKey(0))
            steps, optimizer = bench_gpt.jax_steps(config, "hand")
            calls[name] = functools.partial(steps, params, optimizer.init(params), xs, ys)
            jax.block_until_ready(calls[name]())
    ms = {name: summary(seconds)["median"] / args.steps * 1e3 for name, seconds in interleaved(calls, args.rounds).items()}
    whole = ms["whole step"]
    result = {"config": "shakespeare-char-cpu", "matmul_dtype": args.matmul_dtype, "rounds": args.rounds,
              "ms_per_step": ms, "ms_saved": {name: whole - t for name, t in ms.items() if name != "whole step"}}
    out = RESULTS / f"step_ablation-{args.matmul_dtype}.json"
    out.write_text(json.dumps(result, indent=1))
    for name, t in ms.items():
        print(f"{name:30s} {t:6.2f} ms" + ("" if name == "whole step" else f"  ({whole - t:+.2f} ms taken out)"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
