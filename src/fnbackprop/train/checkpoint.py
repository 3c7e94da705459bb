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
import zipfile
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
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub reads the keywords as allow_pickle
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model it is loaded into; it is left untouched."""


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Every array and the metadata, or CheckpointError for a missing, truncated or corrupt file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: np.asarray(stored[k]) for k in stored.files}
        return arrays, json.loads(str(arrays.pop(META_KEY)))
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [""])[0][:100]
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {reason}): it is truncated or "
                              "corrupt, and was left as it is") from None


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata alone (epoch, history, configuration), or CheckpointError for an unreadable file."""
    return _read(path)[1]


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Read a checkpoint into the structure of `template` (same pytree, e.g. fresh params and state).

    Every leaf must be there with the template's shape and dtype, and nothing else may be stored;
    otherwise CheckpointError names the first differences.
    """
    arrays, meta = _read(path)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    wanted = {jax.tree_util.keystr(p): np.asarray(t) for p, t in leaves}
    problems = [f"{k} is {arrays[k].dtype}{list(arrays[k].shape)} in the checkpoint, {t.dtype}{list(t.shape)} in this model"
                for k, t in wanted.items() if k in arrays and (arrays[k].shape != t.shape or arrays[k].dtype != t.dtype)]
    problems += [f"{k} is missing" for k in wanted if k not in arrays]
    problems += [f"{k} is stored but not in this model" for k in arrays if k not in wanted]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match this model: {'; '.join(problems[:3])}"
                              + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
    return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(arrays[k]) for k in wanted]), meta


def resume(out: Any, name: str, template: Any, config: dict, length: str, total: int, option: str,
           older: dict | None = None) -> tuple[Any, dict]:
    """The state saved in out/name, to continue a run of `config` (a dict of its settings) to `total`
    iterations: refused (ValueError, one line) when the checkpoint's settings differ but for `length` (the
    run's length, the one setting a resumed run may change), or when it holds `total` iterations already
    (`option` is the command-line option that asks for more); `older` gives the settings a checkpoint saved
    before they existed was trained with. Returns (the state, the checkpoint's meta)."""
    if out is None:
        raise ValueError("resume needs the run's folder (out_dir)")
    path = Path(out) / name
    saved = {k: v for k, v in {**(older or {}), **read_meta(path)["config"]}.items() if k != length}
    mine = {k: v for k, v in config.items() if k != length}
    if saved != mine:
        differ = sorted(k for k in mine if saved.get(k) != mine[k])
        raise ValueError(f"the checkpoint in {out} was trained with other settings ({', '.join(differ)}); give the same ones")
    state, meta = load(path, template)
    if meta["iteration"] >= total:
        raise ValueError(f"the checkpoint in {out} already holds {meta['iteration']} iterations; ask for more with {option}")
    return state, meta
