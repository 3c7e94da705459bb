"""Start-up as a user meets it: `fnbackprop train --model gpt` (the CPU preset), from the command to its first
iteration (`startup_seconds` in the run's results.json: the process's own start to the first iteration, imports,
data, compiles or cache loads and the evaluation at iteration 0 included) and to its exit, cold (an empty
compilation cache) and warm (the cache the cold run wrote: a user's second run of the same shapes).

Each run trains 10 iterations (one chunk; the programs are those of any run of the preset but for the
chunk's length) in a fresh process with its own cache folder, so that no earlier run or test suite warms it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the trainer's command, as its console script runs it
COMMAND = [sys.executable, "-c", "import sys; from fnbackprop.cli import main; sys.exit(main())"]


def _text(data_path: str | None, folder: Path) -> str:
    """Tiny Shakespeare (`--data-path`, $FNBACKPROP_TEXT or ../shared/data), else a made-up text of the same
    65-character vocabulary and size (start-up depends on the shapes, not on the words)."""
    from ..train.lm import find_text

    try:
        return str(find_text(data_path))
    except FileNotFoundError:
        import numpy as np

        chars = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        path = folder / "text.txt"
        path.write_text("".join(np.random.default_rng(0).choice(list(chars), 1_115_394)))
        return str(path)


def one_run(text: str, cache: Path, out: Path) -> dict:
    """One whole process: (seconds to its first iteration, seconds from launch to exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["FNBACKPROP_COMPILE_CACHE"] = str(cache)
    began = time.perf_counter()
    done = subprocess.run([*COMMAND, "train", "--model", "gpt", "--data-path", text, "--max-iters", "10", "--eval-interval", "10",
                           "--out", str(out), "--force"], capture_output=True, text=True, env=env)
    whole = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"fnbackprop train failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    startup = json.loads((out / "results.json").read_text())["startup_seconds"]
    return {"first_iteration_s": float(startup), "whole_s": whole}


def measure_startup(data_path: str | None = None, pairs: int = 2) -> dict:
    """`pairs` times: a cold run (a new, empty cache) then a warm one (the same cache)."""
    with tempfile.TemporaryDirectory(prefix="fnbackprop-startup-") as tmp:
        folder = Path(tmp)
        text = _text(data_path, folder)
        runs: dict[str, list] = {"cold": [], "warm": []}
        for i in range(pairs):
            cache = folder / f"cache-{i}"
            runs["cold"].append(one_run(text, cache, folder / "run"))
            runs["warm"].append(one_run(text, cache, folder / "run"))
    return {"runs": runs, "text": "given" if data_path else "found or made up",
            **{f"{kind}_first_iteration_s": sorted(r["first_iteration_s"] for r in rows)[len(rows) // 2]
               for kind, rows in runs.items()}}


def startup_targets(result: dict) -> list[tuple[str, bool, str]]:
    """(target, met, measured): warm at most 3 s to the first iteration, cold at most 8 s (upper medians)."""
    warm, cold = result["warm_first_iteration_s"], result["cold_first_iteration_s"]
    return [("GPT cpu preset: warm start-up to the first iteration <= 3 s", warm <= 3, f"{warm:.1f} s"),
            ("GPT cpu preset: cold start-up to the first iteration <= 8 s", cold <= 8, f"{cold:.1f} s")]
