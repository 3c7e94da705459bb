"""Datasets: scikit-learn's bundled sets (installed with the package) and MNIST from local files.

Nothing is downloaded. MNIST is read from Nielsen's `mnist.pkl.gz` or from the four canonical IDX
files (gzip-compressed or not), found at an explicit path, else `$FNBACKPROP_MNIST`, else
`../shared/data` beside the working directory. Every loader validates what it returns.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

MNIST_ENV = "FNBACKPROP_MNIST"
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: Nielsen's split of the 60,000 training images: the first 50,000 train, the last 10,000 validate.
MNIST_TRAIN = 50_000


class Dataset(NamedTuple):
    """Arrays as numpy; `y` are integer labels (classification) or float columns (binary, regression)."""

    name: str
    task: str  # "classification" | "binary" | "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """Output width a network needs: the class count, else the target columns."""
        if self.task == "classification":
            return int(max(self.y_train.max(), self.y_test.max())) + 1
        return int(self.y_train.shape[1])


def validate(x: np.ndarray, y: np.ndarray, task: str, what: str, n_classes: int | None = None) -> None:
    """Shapes, dtypes, NaN/Inf and label range, with errors that name the array at fault."""
    if x.ndim != 2:
        raise ValueError(f"{what}: inputs must be 2-D (examples, features), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{what}: inputs must be floating point, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: inputs contain NaN or Inf")
    if len(y) != len(x):
        raise ValueError(f"{what}: {len(x)} inputs but {len(y)} targets")
    if task == "classification":
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"{what}: labels must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
        top = n_classes if n_classes is not None else int(y.max()) + 1
        if y.min() < 0 or y.max() >= top:
            raise ValueError(f"{what}: labels must lie in [0, {top}), got {y.min()} to {y.max()}")
    else:
        if y.ndim != 2:
            raise ValueError(f"{what}: targets must be 2-D (examples, outputs), got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{what}: targets contain NaN or Inf")
        if task == "binary" and not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{what}: binary targets must be 0 or 1")


def _checked(ds: Dataset, n_classes: int | None = None) -> Dataset:
    splits: list[tuple[str, Any, Any]] = [("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)]
    if ds.x_val is not None:
        splits.append(("validation", ds.x_val, ds.y_val))
    for split, x, y in splits:
        validate(x, y, ds.task, f"{ds.name} {split}", n_classes)
    return ds


def _split_standardised(name: str, task: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Dataset:
    from sklearn.model_selection import train_test_split

    stratify = y if task != "regression" else None
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=stratify)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-8  # statistics of the training split only
    return Dataset(name, task, ((x_tr - mean) / std).astype(np.float32), y_tr, ((x_te - mean) / std).astype(np.float32), y_te)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 images of 8x8 pixels, 10 classes, pixels / 16."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    x = (d.data / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target.astype(np.int32), test_size=test_fraction, random_state=seed, stratify=d.target)
    return _checked(Dataset("digits", "classification", x_tr, y_tr, x_te, y_te), 10)


def load_breast_cancer(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled breast-cancer set: 569 examples, 30 features, binary target (m, 1)."""
    from sklearn.datasets import load_breast_cancer as sk_bc

    d = sk_bc()
    return _checked(_split_standardised("breast_cancer", "binary", d.data, d.target[:, None].astype(np.float32), test_fraction, seed))


def load_diabetes(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled diabetes regression set: 442 examples, 10 features, target standardised."""
    from sklearn.datasets import load_diabetes as sk_diabetes

    d = sk_diabetes()
    y = ((d.target - d.target.mean()) / d.target.std())[:, None].astype(np.float32)
    return _checked(_split_standardised("diabetes", "regression", d.data, y, test_fraction, seed))


# ----- MNIST ------------------------------------------------------------------------------------
def data_location(path: str | os.PathLike | None, env: str) -> tuple[Path, str]:
    """Where to look for a data set, and how to name it in an error: `path`, else $env, else ../shared/data."""
    if path is not None:
        return Path(path), f"the path {path}"
    if os.environ.get(env):
        return Path(os.environ[env]), f"${env} = {os.environ[env]}"
    default = Path.cwd().parent / "shared" / "data"
    return default, f"the default {default}"


def find_mnist(path: str | os.PathLike | None = None) -> Path:
    """The MNIST location: `path`, else $FNBACKPROP_MNIST, else ../shared/data; a clear error if none."""
    where, said = data_location(path, MNIST_ENV)
    if where.is_file() or (where.is_dir() and ((where / "mnist.pkl.gz").is_file() or _idx_dir(where) is not None)):
        return where
    raise FileNotFoundError(
        f"MNIST not found at {said}: give mnist.pkl.gz or a folder of the four IDX files "
        f"(--data-path, or set {MNIST_ENV})"
    )


def _idx_dir(folder: Path) -> Path | None:
    for d in (folder, folder / "mnist-idx"):
        if d.is_dir() and all(_idx_file(d, n) is not None for n in IDX_NAMES.values()):
            return d
    return None


def _present(path: Path | None) -> Path:
    """A path `find_mnist` has already confirmed exists."""
    assert path is not None, "find_mnist confirms the IDX files before they are read"
    return path


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzip or not): big-endian magic 0x0000 08 D (uint8, D dimensions), sizes, data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes), file holds {data.size}")
    return data.reshape(shape)


def _mnist_from_idx(folder: Path) -> Dataset:
    def images(stem: str) -> np.ndarray:
        raw = read_idx(_present(_idx_file(folder, stem)))
        return (raw.reshape(len(raw), -1) / 256.0).astype(np.float32)  # pixel/256, as Nielsen's pickle

    def labels(stem: str) -> np.ndarray:
        return read_idx(_present(_idx_file(folder, stem))).astype(np.int64)

    x, y = images(IDX_NAMES["train_images"]), labels(IDX_NAMES["train_labels"])
    return Dataset("mnist", "classification", x[:MNIST_TRAIN], y[:MNIST_TRAIN],
                   images(IDX_NAMES["test_images"]), labels(IDX_NAMES["test_labels"]), x[MNIST_TRAIN:], y[MNIST_TRAIN:])


def _mnist_from_pickle(path: Path) -> Dataset:
    with gzip.open(path, "rb") as f:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(f, encoding="latin1")

    def arrays(x, y):
        return np.asarray(x, np.float32), np.asarray(y, np.int64)

    return Dataset("mnist", "classification", *arrays(x_tr, y_tr), *arrays(x_te, y_te), *arrays(x_va, y_va))


def load_mnist(path: str | os.PathLike | None = None) -> Dataset:
    """MNIST as Nielsen splits it: 50,000 train, 10,000 validation, 10,000 test; pixels / 256."""
    where = find_mnist(path)
    if where.is_file():
        return _checked(_mnist_from_pickle(where), 10)
    if (where / "mnist.pkl.gz").is_file():
        return _checked(_mnist_from_pickle(where / "mnist.pkl.gz"), 10)
    return _checked(_mnist_from_idx(_present(_idx_dir(where))), 10)


LOADERS: dict[str, Callable[..., Dataset]] = {"digits": load_digits, "breast_cancer": load_breast_cancer, "diabetes": load_diabetes, "mnist": load_mnist}


#: the image each row of a dataset is, (H, W, C), for conv layers (`fnbackprop.models.architecture`)
IMAGE_SHAPES = {"mnist": (28, 28, 1), "digits": (8, 8, 1)}


def load(name: str, path: str | os.PathLike | None = None) -> Dataset:
    """A dataset by name; `path` only for MNIST."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(LOADERS)}")
    return LOADERS[name](path) if name == "mnist" else LOADERS[name]()
