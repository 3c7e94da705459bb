"""The hand-written GPT on Tiny Shakespeare at nanoGPT's CPU configuration, hand-coded and autodiff gradients.

    python experiments/gpt_shakespeare.py [--seeds 3] [--data-path PATH] [--quick] [--sources hand,autodiff] [--spread N]

nanoGPT's README (CPU, "I only have a macbook"): 4 layers, 4 heads, 128 wide, context 64, batch 12,
2,000 iterations, lr 1e-3 decaying to 1e-4, no dropout: validation loss 1.88 in about 3 minutes.
Each run: the preset (`fnbackprop.train.lm.PRESETS["shakespeare-char-cpu"]`), evaluations every 250
iterations on 20 batches, the final validation loss on 200 batches, the training loop's wall time.
Writes results/gpt_shakespeare.{json,png} and a sample of generated text in the JSON.
"""

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

from _common import machine, result_stem, spread
from fnbackprop.train import lm

NANOGPT = {"readme_val_loss": 1.88, "measured_here_val_loss": 1.8857, "measured_here_seconds": 210}
#: each JAX source's settings on top of the preset; "savers" is the hand-written backward with every memory saver,
#: "hand-bf16" with the linear maps' products in bfloat16 (what the preset's "auto" runs on a CPU with bfloat16
#: instructions); the others multiply in float32 wherever they run
F32 = {"matmul_dtype": "float32"}
JAX_SOURCES = {"hand": {"grad_source": "hand", **F32}, "autodiff": {"grad_source": "autodiff", **F32},
               "savers": {"grad_source": "hand", "attention_block": 32, "head_chunk": 256, "recompute_gelu": True,
                          "recompute_norm": True, **F32},
               "hand-bf16": {"grad_source": "hand", "matmul_dtype": "bfloat16"}}


#: the PyTorch twins: GELU's tanh form (ours, GPT-2's) or nanoGPT's exact erf form
TORCH_SOURCES = {"torch": ("pytorch twin", "tanh"), "torch-erf": ("pytorch twin, erf GELU", "none")}


def torch_run(config: lm.LMConfig, data: lm.CharData, seed: int, final_batches: int = lm.FINAL_EVAL_BATCHES,
              source: str = "torch") -> dict:
    """The benchmark's PyTorch twin (`bench_gpt.torch_gpt`) trained as nanoGPT's train.py trains: batches drawn
    with torch.randint on the host, its get_lr (`lm.learning_rate`: warm-up (it + 1) / (warmup + 1), then cosine), clipping, an
    evaluation on eval_iters batches of each split every eval_interval iterations, timed with them."""

    import torch

    from fnbackprop.bench.gpt import torch_gpt

    label, gelu = TORCH_SOURCES[source]
    model, opt = torch_gpt(config, data.vocab_size, seed, gelu)
    splits = {"train": torch.from_numpy(data.train.astype(np.int64)), "val": torch.from_numpy(data.val.astype(np.int64))}
    gen = torch.Generator().manual_seed(seed)
    B, T = config.batch_size, config.block_size

    def get_batch(split):
        tokens = splits[split]
        ix = torch.randint(len(tokens) - T, (B,), generator=gen)
        return torch.stack([tokens[i:i + T] for i in ix]), torch.stack([tokens[i + 1:i + 1 + T] for i in ix])

    # nanoGPT's get_lr is now exactly ours (`lm.learning_rate`, held to get_lr's formula by its test):
    # one table, computed before the clock starts
    lr_table = np.asarray(jax.vmap(lm.learning_rate(config))(np.arange(config.max_iters)), np.float64)

    @torch.no_grad()
    def estimate(split, n):
        model.eval()
        loss = sum(float(model(*get_batch(split))) for _ in range(n)) / n
        model.train()
        return loss

    history, start = [], time.perf_counter()
    for it in range(config.max_iters + 1):
        if it % config.eval_interval == 0 or it == config.max_iters:
            history.append({"iteration": it, "train_loss": estimate("train", config.eval_iters),
                            "val_loss": estimate("val", config.eval_iters), "seconds": time.perf_counter() - start})
        if it == config.max_iters:
            break
        for group in opt.param_groups:
            group["lr"] = float(lr_table[it])
        loss = model(*get_batch("train"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
    seconds = time.perf_counter() - start
    return {"seed": seed, "grad_source": label, "final_val_loss": estimate("val", final_batches), "train_seconds": seconds,
            "ms_per_iteration": 1e3 * seconds / config.max_iters, "history": history}


STYLES = {"hand": ("C0", "-", "hand-written backward"), "autodiff": ("C1", "--", "jax.grad"),
          "savers": ("C3", "-.", "hand-written, memory savers"), "hand-bf16": ("C5", "-", "hand-written, bfloat16 products"),
          "pytorch twin": ("C2", ":", "PyTorch twin"),
          "pytorch twin, erf GELU": ("C4", ":", "PyTorch twin, erf GELU")}


def draw(runs: list[dict], path: Path) -> None:
    """Every run's validation curve (seed 0's labelled), nanoGPT's README figure dotted; the title names
    the sources drawn."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        colour, style, name = STYLES[r["grad_source"]]
        ax.plot([h["iteration"] for h in r["history"]], [h["val_loss"] for h in r["history"]], color=colour, ls=style,
                alpha=0.8, label=name if r["seed"] == 0 else None)
    ax.axhline(NANOGPT["readme_val_loss"], color="grey", ls=":", label="nanoGPT README (1.88)")
    names = " vs ".join(dict.fromkeys(STYLES[r["grad_source"]][2] for r in runs))
    ax.set(xlabel="iteration", ylabel="validation loss (20 batches)", ylim=(1.5, 4.5),
           title=f"GPT on Tiny Shakespeare, nanoGPT's CPU configuration\n{names}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def estimate_spread(config: lm.LMConfig, data: lm.CharData, params, n: int, stem: Path) -> dict:
    """The trained model's validation loss estimated n times on config.eval_iters random batches (nanoGPT's
    figure is one such estimate) and once on 2,000 batches (the reference). The estimates and their
    histogram go to STEM-spread.{json,png}; the summary is returned."""
    model, val = lm.model_of(config, data.vocab_size), jax.numpy.asarray(data.val)
    small, large = lm.make_estimate(model, config, config.eval_iters), lm.make_estimate(model, config, 2000)
    key = jax.random.PRNGKey(12345)
    losses = np.array([float(small(params, val, len(val), jax.random.fold_in(key, i), config.eval_iters)) for i in range(n)])
    reference = float(large(params, val, len(val), jax.random.fold_in(key, n), 2000))
    out = {"batches": config.eval_iters, "estimates": n, **spread(losses.tolist()), "reference_2000_batches": reference,
           "share_at_or_below_nanogpt_measured": float(np.mean(losses <= NANOGPT["measured_here_val_loss"]))}
    path = stem.with_name(stem.name + "-spread")
    path.with_suffix(".json").write_text(json.dumps({**out, "values": losses.tolist()}, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(losses, bins=30, color="C0", alpha=0.7, label=f"{n} estimates on {config.eval_iters} batches each")
    ax.axvline(reference, color="C0", label=f"the same model on 2,000 batches ({reference:.4f})")
    ax.axvline(NANOGPT["measured_here_val_loss"], color="C3", ls="--",
               label=f"nanoGPT's train.py, one run, {config.eval_iters} batches ({NANOGPT['measured_here_val_loss']})")
    ax.axvline(1.89, color="grey", ls=":", label="the target for the mean of 3 seeds (1.89)")
    ax.set(xlabel="validation loss", ylabel="estimates",
           title=f"How far a {config.eval_iters}-batch validation estimate strays (seed 0, hand, {config.max_iters:,} iterations)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=110)
    plt.close(fig)
    print(f"seed 0 hand, {n} estimates on {config.eval_iters} batches: mean {out['mean']:.4f}, std {out['std']:.4f}, "
          f"{100 * out['share_at_or_below_nanogpt_measured']:.0f}% at or below {NANOGPT['measured_here_val_loss']}; "
          f"2,000 batches: {reference:.4f}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--data-path", default=None, help="the text file (default: $FNBACKPROP_TEXT, ../shared/data/tinyshakespeare)")
    p.add_argument("--quick", action="store_true", help="smoke test: 100 iterations, one seed")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--sources", default="hand,autodiff",
                   help="comma-separated: hand, autodiff, hand-bf16 (hand with bfloat16 products), savers (hand with blockwise "
                        "attention, the chunked head and both recomputations), torch (the PyTorch twin trained as nanoGPT's train.py does; needs torch), "
                        "torch-erf (the same twin with nanoGPT's exact erf GELU)")
    p.add_argument("--spread", type=int, default=0, metavar="N",
                   help="after seed 0's hand run, estimate its validation loss N times on eval_iters (20) batches, "
                        "as nanoGPT reports it, and once on 2,000: how far a 20-batch figure strays")
    p.add_argument("--redraw", type=Path, metavar="JSON", help="train nothing: redraw the figure of a saved results file")
    args = p.parse_args()
    if args.redraw:
        draw(json.loads(args.redraw.read_text())["runs"], args.redraw.with_suffix(".png"))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = lm.load_chars(args.data_path)
    base = lm.PRESETS["shakespeare-char-cpu"]
    if args.quick:
        base = replace(base, max_iters=100, lr_decay_iters=100, eval_interval=50, warmup_iters=10)
    sources = [x.strip() for x in args.sources.split(",")]
    if not set(sources) <= {*JAX_SOURCES, *TORCH_SOURCES}:
        p.error(f"--sources: {', '.join([*JAX_SOURCES, *TORCH_SOURCES])}, got {args.sources!r}")
    if args.spread and "hand" not in sources:
        p.error("--spread measures seed 0's hand run: give --sources with hand")
    runs, sample, eval_spread = [], None, None
    for seed in range(1 if args.quick else args.seeds):
        for source in [s for s in sources if s in JAX_SOURCES]:
            config = replace(base, seed=seed, **JAX_SOURCES[source])
            result = lm.train_lm(config, data)
            runs.append({"seed": seed, "grad_source": source, "final_val_loss": result.final_val_loss,
                         "train_seconds": result.train_seconds, "ms_per_iteration": 1e3 * result.train_seconds / config.max_iters,
                         "history": result.history})
            print(f"seed {seed} {source:8s}: val loss {result.final_val_loss:.4f} (200 batches), "
                  f"{result.train_seconds:.1f} s for {config.max_iters} iterations", flush=True)
            if source == "hand" and seed == 0:
                model = lm.model_of(config, data.vocab_size)
                sample = data.decode(lm.generate(model, result.params, data.encode("ROMEO:"), 500, jax.random.PRNGKey(0)))
                if args.spread:
                    eval_spread = estimate_spread(config, data, result.params, args.spread, result_stem(args, "gpt_shakespeare"))
        for source in [s for s in sources if s in TORCH_SOURCES]:
            runs.append(torch_run(replace(base, seed=seed), data, seed, source=source))
            print(f"seed {seed} {runs[-1]['grad_source']}: val loss {runs[-1]['final_val_loss']:.4f} (200 batches), "
                  f"{runs[-1]['train_seconds']:.1f} s for {base.max_iters} iterations", flush=True)
    labels = [*JAX_SOURCES, *(label for label, _ in TORCH_SOURCES.values())]
    summary = {source: {"final_val_loss": spread([r["final_val_loss"] for r in runs if r["grad_source"] == source]),
                        "train_seconds": spread([r["train_seconds"] for r in runs if r["grad_source"] == source])}
               for source in labels if any(r["grad_source"] == source for r in runs)}
    for source, s in summary.items():
        print(f"{source}: val loss mean {s['final_val_loss']['mean']:.4f} (max {s['final_val_loss']['max']:.4f}); "
              f"training loop {s['train_seconds']['mean']:.1f} s")
    if sample:
        print(sample)
    stem = result_stem(args, "gpt_shakespeare" + ("" if sources == ["hand", "autodiff"] else "-" + "-".join(sources)))
    stem.with_suffix(".json").write_text(json.dumps(
        {"experiment": "gpt_shakespeare", "quick": args.quick, "machine": machine(), "config": asdict(base),
         "nanogpt": NANOGPT, "summary": summary, "sample_seed0_hand": sample, "eval_spread": eval_spread, "runs": runs,
         "wall_seconds": time.perf_counter() - started}, indent=1))
    draw(runs, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')} and .png")


if __name__ == "__main__":
    main()
