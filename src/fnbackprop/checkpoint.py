"""Atomic checkpoints in a format readable without fnbackprop: `.npz`, one array per pytree leaf.

Keys are the leaves' pytree paths (`jax.tree_util.keystr`, e.g. `params[0]['W']`), plus `__meta__`,
a JSON string (epoch, history, configuration). `numpy.load(path)` reads everything. A checkpoint is
written to a temporary file in the same folder, flushed to disk, then renamed over the old one, so a
crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

META_KEY = "__meta__"


def _flatten(tree: Any) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def save(path: str | os.PathLike, tree: Any, meta: dict) -> Path:
    """Write `tree` (any pytree of arrays) and `meta` (JSON-able) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _flatten(tree)
    arrays[META_KEY] = np.array(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Read a checkpoint into the structure of `template` (same pytree, e.g. fresh params and state)."""
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored[META_KEY]))
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
        missing = [jax.tree_util.keystr(p) for p, _ in leaves if jax.tree_util.keystr(p) not in stored]
        if missing:
            raise ValueError(f"checkpoint {path} does not match this model: missing {missing[:3]}")
        values = [np.asarray(stored[jax.tree_util.keystr(p)]).astype(np.asarray(t).dtype) for p, t in leaves]
    return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(v) for v in values]), meta
