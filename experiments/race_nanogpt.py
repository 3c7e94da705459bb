"""The race, as a user runs it: `fnbackprop train --model gpt` against nanoGPT's own train.py, whole processes,
alternating, on the same machine.

    python experiments/race_nanogpt.py --nanogpt PATH [--pairs 3] [--data-path FILE] [--python PY]

PATH is a nanoGPT checkout (nothing is fetched; without one the script says so and stops). Each pair runs
ours (the CPU preset, `fnbackprop train --model gpt --preset shakespeare-char-cpu`) and nanoGPT's README CPU
command (`python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
--log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0`), in alternating order, and records each whole process's wall time
(from the launch to the exit), the loop time (ours: `train_seconds` in results.json; nanoGPT: the sum of
its per-iteration times), and both models' validation loss scored by one function on the same fixed
windows: every non-overlapping window of 65 characters of the validation text (the last 10%),
`score`. nanoGPT's `ckpt.pt` is loaded into our GPT through `from_nanogpt` (the layouts are GPT-2's
on both sides: nn.Linear's (out, in) weights are our W as they are; LayerNorm's weight is our gamma;
the head is tied to wte on both). Our GELU is the tanh form, nanoGPT's the exact erf form: the score of
its weights by our forward differs from its own by that (the script measures it with nanoGPT's model
when PyTorch is importable). The first pair starts cold (our compile cache emptied), later pairs warm,
as a user's second run would be. Writes results/race_nanogpt.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fnbackprop.train import lm

RESULTS = Path(__file__).resolve().parent / "results"
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
                "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                "--lr_decay_iters=2000", "--dropout=0.0"]


def from_nanogpt(state: dict, n_layer: int) -> dict:
    """nanoGPT's state dict (numpy arrays, `_orig_mod.` prefixes dropped) as our GPT's parameters."""
    s = {k.removeprefix("_orig_mod.").removeprefix("transformer."): np.asarray(v, np.float32) for k, v in state.items()}
    block = lambda i: {"ln_1": {"gamma": s[f"h.{i}.ln_1.weight"]}, "ln_2": {"gamma": s[f"h.{i}.ln_2.weight"]},  # noqa: E731
                       "attn": {"c_attn": {"W": s[f"h.{i}.attn.c_attn.weight"]}, "c_proj": {"W": s[f"h.{i}.attn.c_proj.weight"]}},
                       "mlp": {"c_fc": {"W": s[f"h.{i}.mlp.c_fc.weight"]}, "c_proj": {"W": s[f"h.{i}.mlp.c_proj.weight"]}}}
    return jax.tree_util.tree_map(jnp.asarray, {"wte": s["wte.weight"], "wpe": s["wpe.weight"], "ln_f": {"gamma": s["ln_f.weight"]},
                                                "h": [block(i) for i in range(n_layer)]})


def score(model, params, val: np.ndarray, block: int) -> float:
    """The mean cross-entropy over every non-overlapping window of block + 1 validation characters."""
    n = (len(val) - 1) // block
    x, y = val[: n * block].reshape(n, block), val[1: n * block + 1].reshape(n, block)
    per = 64
    pad = -n % per
    x, y = np.pad(x, ((0, pad), (0, 0))), np.pad(y, ((0, pad), (0, 0)))
    mask = np.pad(np.ones(n, np.float32), (0, pad))

    @jax.jit
    def total(params, x, y, mask):
        def one(_, batch):
            xb, yb, mb = batch
            logp = jax.nn.log_softmax(model.apply(params, xb), axis=-1)
            return None, -jnp.sum(jnp.take_along_axis(logp, yb[..., None], -1)[..., 0].mean(-1) * mb)
        return jnp.sum(jax.lax.scan(one, None, (x.reshape(-1, per, block), y.reshape(-1, per, block), mask.reshape(-1, per)))[1])

    return float(total(params, jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask))) / n


def run(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, done.stdout + done.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nanogpt", type=Path, default=None, help="a nanoGPT checkout (nothing is fetched)")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--data-path", default=None, help="Tiny Shakespeare's input.txt (default: ../shared/data, $FNBACKPROP_TEXT)")
    p.add_argument("--python", default=sys.executable, help="the Python that runs nanoGPT (it needs torch and numpy)")
    args = p.parse_args()
    if args.nanogpt is None or not (args.nanogpt / "train.py").is_file():
        print("no nanoGPT checkout given (--nanogpt PATH holding train.py): nothing to race; the benchmark's PyTorch twin "
              "(fnbackprop bench --gpt-only) stands in", file=sys.stderr)
        return 0
    text = lm.find_text(args.data_path)
    data = lm.load_chars(text)
    prepared = args.nanogpt / "data" / "shakespeare_char"
    if not (prepared / "val.bin").is_file():
        shutil.copy(text, prepared / "input.txt")
        run([args.python, "prepare.py"], prepared)
    work = Path(tempfile.mkdtemp(prefix="race-"))
    cache = work / "compile-cache"
    config = lm.PRESETS["shakespeare-char-cpu"]
    model = lm.model_of(replace(config, matmul_dtype="float32"), data.vocab_size)  # both scored by one float32 forward
    pairs = []
    for i in range(args.pairs):
        record: dict = {}
        order = ("ours", "nanogpt") if i % 2 == 0 else ("nanogpt", "ours")
        for who in order:
            if who == "ours":
                env = {**os.environ, "FNBACKPROP_COMPILE_CACHE": str(cache)}
                wall, _ = run([str(Path(sys.executable).parent / "fnbackprop"), "train", "--model", "gpt", "--data-path", str(text),
                               "--out", str(work / f"ours-{i}")], work, env)
                results = json.loads((work / f"ours-{i}" / "results.json").read_text())
                _, params, _, _ = lm.load_run(work / f"ours-{i}")
                record["ours"] = {"wall_seconds": wall, "loop_seconds": results["train_seconds"],
                                  "matmul_dtype": results["config"]["matmul_dtype"],
                                  "startup_seconds": results.get("startup_seconds"), "val_loss_200_batches": results["final_val_loss"],
                                  "val_loss_every_window": score(model, params, data.val, config.block_size)}
            else:
                out = work / f"nanogpt-{i}"
                wall, log = run([args.python, "train.py", *NANOGPT_ARGS, f"--out_dir={out}"], args.nanogpt)
                times = [float(t) for t in re.findall(r"^iter \d+: loss [0-9.]+, time ([0-9.]+)ms", log, re.M)]
                evals = re.findall(r"step (\d+): train loss ([0-9.]+), val loss ([0-9.]+)", log)
                import torch  # nanoGPT's checkpoint (the Python running this script needs torch too)

                state = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)["model"]
                params = from_nanogpt({k: v.numpy() for k, v in state.items()}, config.n_layer)
                record["nanogpt"] = {"wall_seconds": wall, "loop_seconds": sum(times) / 1e3, "iterations_logged": len(times),
                                     "val_loss_its_own": float(evals[-1][2]) if evals else None,
                                     "val_loss_every_window": score(model, params, data.val, config.block_size)}
            print(f"pair {i + 1}, {who}: {record[who]}", flush=True)
        record["speedup_whole"] = record["nanogpt"]["wall_seconds"] / record["ours"]["wall_seconds"]
        pairs.append(record)
    medians = {key: float(np.median([r[key] for r in pairs])) for key in ("speedup_whole",)}
    for who in ("ours", "nanogpt"):
        for key in ("wall_seconds", "loop_seconds", "val_loss_every_window"):
            medians[f"{who}_{key}"] = float(np.median([r[who][key] for r in pairs]))
    RESULTS.mkdir(exist_ok=True)
    out = {"pairs": pairs, "medians": medians, "nanogpt_command": ["train.py", *NANOGPT_ARGS]}
    (RESULTS / "race_nanogpt.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(medians, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
