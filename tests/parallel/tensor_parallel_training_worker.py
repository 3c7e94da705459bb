"""Run in a subprocess with 8 simulated CPU devices by tests/parallel/test_tensor_parallel_gpt.py; prints one JSON
object: the training losses of 50 iterations on one device and on a 2 x 4 mesh, and of runs stopped at 20 and
resumed from their gathered checkpoint on the same mesh and on another (4 x 2, sequence parallel)."""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8 " + os.environ.get("XLA_FLAGS", "")

import numpy as np  # noqa: E402

from fnbackprop.parallel import make_mesh  # noqa: E402
from fnbackprop.train.lm import CharData, LMConfig, train_lm  # noqa: E402


def losses(result) -> list:
    return [[h["train_loss"], h["val_loss"], h.get("batch_loss", 0.0)] for h in result.history]


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    chars = "abcdefghij klmno\n"
    tokens = rng.integers(0, len(chars), 20000).astype(np.int32)
    tokens[1::3] = (tokens[::3][: len(tokens[1::3])] + 1) % len(chars)  # something to learn
    data = CharData(tokens[:18000], tokens[18000:], chars)
    config = LMConfig(n_layer=2, n_head=4, n_embd=32, block_size=16, batch_size=8, max_iters=50, lr_decay_iters=50,
                      eval_interval=10, eval_iters=2, warmup_iters=5, dropout=0.1, matmul_dtype="float32")
    half = LMConfig(**{**config.__dict__, "max_iters": 20})
    work = Path(tempfile.mkdtemp())
    one = train_lm(config, data, final_batches=2)
    split = train_lm(config, data, final_batches=2, mesh=make_mesh(data=2, model=4))
    train_lm(half, data, work / "a", final_batches=2, mesh=make_mesh(data=2, model=4))
    shutil.copytree(work / "a", work / "b")
    same = train_lm(config, data, work / "a", resume=True, final_batches=2, mesh=make_mesh(data=2, model=4))
    other = train_lm(config, data, work / "b", resume=True, final_batches=2, mesh=make_mesh(data=4, model=2), sequence_parallel=True)
    print(json.dumps({"one": losses(one), "split": losses(split), "resumed_same_mesh": losses(same),
                      "resumed_other_mesh": losses(other), "final": [one.final_val_loss, split.final_val_loss]}))
    shutil.rmtree(work)
    sys.exit(0)
