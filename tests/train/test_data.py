"""Loaders: bundled sets, the IDX reader on files the test writes, MNIST when it is present, validation."""

import gzip
import struct

import numpy as np
import pytest

from fnbackprop.train import data

SHARED_MNIST = data.Path(__file__).resolve().parents[3] / "shared" / "data"
needs_mnist = pytest.mark.skipif(not (SHARED_MNIST / "mnist.pkl.gz").is_file(),
                                 reason=f"real MNIST not found at {SHARED_MNIST} (optional; see ../shared/data/README.md)")


def write_idx(path, array, compress):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader_round_trips(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    path = tmp_path / ("x.idx" + (".gz" if compress else ""))
    write_idx(path, images, compress)
    np.testing.assert_array_equal(data.read_idx(path), images)


def test_idx_reader_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")  # float dtype code 0x0d
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(struct.pack(">HBBI", 0, 8, 1, 10) + b"abc")
    with pytest.raises(ValueError, match=r"header says shape \(10,\).*holds 3"):
        data.read_idx(tmp_path / "short")


def test_mnist_from_a_folder_of_small_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    train_x, test_x = rng.integers(0, 256, (50_003, 2, 2)), rng.integers(0, 256, (4, 2, 2))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x, True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, 50_003), False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x, False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 4), True)
    ds = data.load_mnist(tmp_path)
    assert ds.x_train.shape == (50_000, 4) and ds.x_val.shape == (3, 4) and ds.x_test.shape == (4, 4)
    np.testing.assert_allclose(ds.x_test, test_x.reshape(4, 4) / 256.0, rtol=1e-6)


def test_mnist_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(data.MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="FNBACKPROP_MNIST"):
        data.load_mnist()


@needs_mnist
def test_shared_mnist_pickle_and_idx_agree():
    pkl = data.load_mnist(SHARED_MNIST / "mnist.pkl.gz")
    idx = data.load_mnist(SHARED_MNIST / "mnist-idx")
    assert pkl.x_train.shape == (50_000, 784) and pkl.x_val.shape == (10_000, 784) and pkl.x_test.shape == (10_000, 784)
    for a, b in zip(pkl[2:], idx[2:]):
        np.testing.assert_array_equal(a, b)


def test_bundled_sets():
    digits = data.load_digits()
    assert digits.x_train.shape[1] == 64 and len(digits.x_train) + len(digits.x_test) == 1797
    assert digits.n_outputs == 10 and 0 <= digits.x_train.min() and digits.x_train.max() <= 1
    bc = data.load_breast_cancer()
    assert bc.task == "binary" and bc.y_train.shape[1] == 1 and len(bc.x_train) + len(bc.x_test) == 569
    np.testing.assert_allclose(bc.x_train.mean(0), 0, atol=1e-5)  # standardised on the training split
    diabetes = data.load_diabetes()
    assert diabetes.task == "regression" and len(diabetes.x_train) + len(diabetes.x_test) == 442


@pytest.mark.parametrize(
    "x,y,task,message",
    [
        (np.ones((3, 2, 2), np.float32), np.zeros(3, int), "classification", "must be 2-D"),
        (np.ones((3, 2), np.int64), np.zeros(3, int), "classification", "floating point"),
        (np.array([[0, np.nan]], np.float32), np.zeros(1, int), "classification", "NaN or Inf"),
        (np.ones((3, 2), np.float32), np.zeros(2, int), "classification", "3 inputs but 2 targets"),
        (np.ones((2, 2), np.float32), np.array([0, 10]), "classification", r"labels must lie in \[0, 10\)"),
        (np.ones((2, 2), np.float32), np.array([0.0, 1.0]), "classification", "1-D integer"),
        (np.ones((2, 2), np.float32), np.array([[0.5], [1.0]]), "binary", "0 or 1"),
        (np.ones((2, 2), np.float32), np.array([[np.inf], [1.0]]), "regression", "targets contain NaN"),
    ],
)
def test_validation_names_the_problem(x, y, task, message):
    with pytest.raises((ValueError, TypeError), match=message):
        data.validate(x, y, task, "test set", n_classes=10 if task == "classification" else None)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load("cifar")
