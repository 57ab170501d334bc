"""Tests for scinas.data: readers, layouts, validation, splits, statistics and named datasets."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scinas.data import (
    NAMED_DATASETS,
    Dataset,
    Split,
    default_data_dir,
    load_dataset,
    named,
    stratified_split,
)
from scinas.data.cifar import read_cifar_binary
from scinas.data.idx import read_idx
from scinas.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


# ------------------------------------------------------------------------------------- helpers


def save_npz(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def labels(n: int, classes: int = 4) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % classes


def full_splits(x_shape: tuple[int, ...], n: int = 12) -> dict[str, np.ndarray]:
    """Train/val/test arrays, so nothing is carved and train.x keeps the original order."""
    out = {}
    for i, split in enumerate(("train", "val", "test")):
        out[f"x_{split}"] = images(n, x_shape, seed=i)
        out[f"y_{split}"] = labels(n)
    return out


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    code = IDX_CODES[arr.dtype.str[1:]]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_set(folder: Path, n_train: int = 20, n_test: int = 8, gz: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": images(n_train, (6, 5)),
        "train-labels-idx1-ubyte": labels(n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": images(n_test, (6, 5), seed=1),
        "t10k-labels-idx1-ubyte": labels(n_test).astype(np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(folder / (stem + sfx), arr, gz=gz)
    return arrays


def cifar_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1).tobytes()


def write_cifar(folder: Path, per_batch: int = 6, n_test: int = 5) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = images(per_batch, (3, 32, 32), seed=i)
        y = (np.arange(per_batch) + i) % 10
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_bytes(x, y))
        xs.append(x)
        ys.append(y)
    x_test, y_test = images(n_test, (3, 32, 32), seed=9), np.arange(n_test) % 10
    (folder / "test_batch.bin").write_bytes(cifar_bytes(x_test, y_test))
    return {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys), "x_test": x_test,
            "y_test": y_test}  # fmt: skip


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"shared dataset {path} not available")
    return path


# ------------------------------------------------------------------------------------- layouts


def test_nhw_is_one_channel(tmp_path):
    arr = full_splits((8, 8))
    ds = load_dataset(save_npz(tmp_path, **arr))
    assert ds.input_shape == (1, 8, 8)
    assert ds.train.x.dtype == torch.uint8
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(arr["x_train"]))
    assert ds.name == "d" and ds.task == "classification" and ds.num_outputs == 4


@pytest.mark.parametrize(
    ("shape", "layout", "chw"),
    [
        ((10, 12, 3), "nhwc", (3, 10, 12)),
        ((3, 10, 12), "nchw", (3, 10, 12)),
        ((8, 8, 3), "nhwc", (3, 8, 8)),
        ((3, 8, 8), "nchw", (3, 8, 8)),
        ((30, 80, 3), "nhwc", (3, 30, 80)),
        ((3, 30, 80), "nchw", (3, 30, 80)),
        ((30, 80, 5), "nhwc", (5, 30, 80)),
        ((5, 30, 80), "nchw", (5, 30, 80)),
    ],
)
def test_layout_detection(tmp_path, shape, layout, chw):
    arr = full_splits(shape, n=4)
    ds = load_dataset(save_npz(tmp_path, **arr))
    assert ds.input_shape == chw
    expected = arr["x_test"] if layout == "nchw" else arr["x_test"].transpose(0, 3, 1, 2)
    assert torch.equal(ds.test.x, torch.from_numpy(np.ascontiguousarray(expected)))
    assert ds.test.x.is_contiguous()
    assert any(layout.upper() in n and "detected" in n for n in ds.notes)


def test_ambiguous_layout_needs_flag_and_forced_layout_works(tmp_path):
    arr = full_splits((6, 6, 6), n=4)
    path = save_npz(tmp_path, **arr)
    with pytest.raises(UserError, match="--layout nhwc"):
        load_dataset(path)
    nhwc = load_dataset(path, layout="nhwc")
    nchw = load_dataset(path, layout="NCHW")
    assert torch.equal(nchw.test.x, torch.from_numpy(arr["x_test"]))
    assert torch.equal(nhwc.test.x, torch.from_numpy(arr["x_test"].transpose(0, 3, 1, 2).copy()))
    # Forcing overrides an unambiguous guess too.
    arr = full_splits((5, 8, 8), n=4)
    ds = load_dataset(save_npz(tmp_path, "f.npz", **arr), layout="nhwc")
    assert ds.input_shape == (8, 5, 8)
    assert any("--layout nhwc" in n for n in ds.notes)


# --------------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int16, np.int32, np.uint16, bool])
def test_non_uint8_images_become_float32(tmp_path, dtype):
    arr = full_splits((8, 8), n=6)
    for s in ("train", "val", "test"):
        arr[f"x_{s}"] = (arr[f"x_{s}"] % 2 if dtype is bool else arr[f"x_{s}"]).astype(dtype)
    ds = load_dataset(save_npz(tmp_path, **arr))
    assert ds.train.x.dtype == torch.float32
    assert np.array_equal(ds.train.x[:, 0].numpy(), arr["x_train"].astype(np.float32))


@pytest.mark.parametrize("bad", [np.array([["a"] * 8] * 8), np.ones((8, 8), dtype=np.complex64)])
def test_non_numeric_images_rejected(tmp_path, bad):
    x = np.stack([bad] * 6)
    with pytest.raises(UserError, match="must be numeric"):
        load_dataset(save_npz(tmp_path, x_train=x, y_train=labels(6)))


# ----------------------------------------------------------------------------------------- task


def test_task_detection_and_override(tmp_path):
    x = images(20, (8, 8))
    cls = load_dataset(save_npz(tmp_path, "c.npz", x_train=x, y_train=labels(20).astype(np.uint8)))
    assert cls.task == "classification" and cls.train.y.dtype == torch.int64
    assert cls.target_mean is None and cls.target_std is None

    reg = load_dataset(save_npz(tmp_path, "r.npz", x_train=x, y_train=np.linspace(0, 1, 20)))
    assert reg.task == "regression" and reg.num_outputs == 1
    assert reg.train.y.dtype == torch.float32 and reg.train.y.ndim == 2
    assert reg.class_names is None

    y3 = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    reg3 = load_dataset(save_npz(tmp_path, "r3.npz", x_train=x, y_train=y3))
    assert reg3.num_outputs == 3 and reg3.train.y.shape[1] == 3
    assert len(reg3.target_mean) == 3

    whole = save_npz(tmp_path, "w.npz", x_train=x, y_train=labels(20).astype(np.float64))
    auto = load_dataset(whole)
    assert auto.task == "regression"
    assert any("--task classification" in n for n in auto.notes)
    forced = load_dataset(whole, task="classification")
    assert forced.task == "classification" and forced.train.y.dtype == torch.int64
    assert forced.num_outputs == 4

    ints_as_reg = load_dataset(save_npz(tmp_path, "i.npz", x_train=x, y_train=labels(20)),
                               task="regression")  # fmt: skip
    assert ints_as_reg.train.y.dtype == torch.float32 and ints_as_reg.train.y.shape[1] == 1

    col = load_dataset(save_npz(tmp_path, "col.npz", x_train=x, y_train=labels(20)[:, None]))
    assert col.train.y.ndim == 1


def test_class_names_from_npz(tmp_path):
    names = np.array(["a", "b", "c", "d", "e"])
    ds = load_dataset(save_npz(tmp_path, x_train=images(20, (8, 8)), y_train=labels(20),
                               class_names=names))  # fmt: skip
    assert ds.class_names == ("a", "b", "c", "d", "e")
    assert ds.num_outputs == 5  # the names define K even if class 4 is absent
    assert any("no training samples" in n for n in ds.notes)


# ------------------------------------------------------------------------------------ bad input


def _x(n=10):
    return images(n, (8, 8))


BAD_NPZ = {
    "no x_train": ({"images": _x(), "labels": labels(10)}, "no 'x_train'.*images, labels"),
    "no y_train": ({"x_train": _x()}, "no 'y_train'"),
    "x_val without y_val": ({"x_train": _x(), "y_train": labels(10), "x_val": _x()}, "no 'y_val'"),
    "y_test without x_test": (
        {"x_train": _x(), "y_train": labels(10), "y_test": labels(10)},
        "no 'x_test'",
    ),
    "length mismatch": ({"x_train": _x(10), "y_train": labels(9)}, "train split has 10.*9 targ"),
    "empty split": (
        {"x_train": _x(), "y_train": labels(10), "x_test": _x(0), "y_test": labels(0)},
        "test split is empty",
    ),
    "empty train": ({"x_train": _x(0), "y_train": labels(0)}, "train split is empty"),
    "nan in x": (
        {
            "x_train": np.where(np.arange(640).reshape(10, 8, 8) < 3, np.nan, 1.0),
            "y_train": labels(10),
        },
        "x_train contains 3 NaN",
    ),  # fmt: skip
    "inf in y": (
        {"x_train": _x(), "y_train": np.array([0.5] * 9 + [np.inf])},
        "y_train contains 1 NaN or infinite",
    ),
    "negative labels": (
        {"x_train": _x(), "y_train": np.array([0, 1, -1, 2, -3, 0, 1, 2, 0, 1])},
        "non-negative.*2 negative.*-1 at index 2",
    ),
    "tiny images": ({"x_train": images(10, (3, 3)), "y_train": labels(10)}, "minimum is 4×4"),
    "one class": ({"x_train": _x(), "y_train": np.zeros(10, np.int64)}, "at least 2 classes"),
    "5-D x": ({"x_train": np.zeros((10, 1, 4, 4, 4)), "y_train": labels(10)}, "3-D"),
    "string labels": ({"x_train": _x(), "y_train": np.array(["cat"] * 10)}, "map string labels"),
    "int 2-D labels": ({"x_train": _x(), "y_train": np.ones((10, 3), np.int64)}, "must be 1-D"),
    "split shape mismatch": (
        {
            "x_train": _x(),
            "y_train": labels(10),
            "x_test": images(10, (9, 9)),
            "y_test": labels(10),
        },
        "all splits must agree",
    ),  # fmt: skip
    "too few to split": ({"x_train": _x(3), "y_train": labels(3)}, "at least 4"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_bad_npz_content(tmp_path, case):
    arrays, message = BAD_NPZ[case]
    with pytest.raises(UserError, match=message):
        load_dataset(save_npz(tmp_path, **arrays))


def test_non_integer_labels_rejected_for_classification(tmp_path):
    path = save_npz(tmp_path, x_train=_x(), y_train=np.linspace(0, 3, 10))
    with pytest.raises(UserError, match="class labels must be integers.*index 1"):
        load_dataset(path, task="classification")


def test_object_array_refused(tmp_path):
    y = np.array([0, 1, "a", None] * 3, dtype=object)
    path = save_npz(tmp_path, x_train=_x(12), y_train=y)
    with pytest.raises(UserError, match="object"):
        load_dataset(path)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_dataset(tmp_path / "nope.npz")
    with pytest.raises(UserError, match="not found"):
        load_dataset("some/dir/data.npz")
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip file at all")
    with pytest.raises(UserError, match="could not read .*garbage.npz"):
        load_dataset(tmp_path / "garbage.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(UserError, match="single array"):
        load_dataset(tmp_path / "single.npz")
    (tmp_path / "table.csv").write_text("1,2\n")
    with pytest.raises(UserError, match="unsupported data file"):
        load_dataset(tmp_path / "table.csv")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="not an idx dataset folder"):
        load_dataset(tmp_path / "empty_dir")
    write_idx_set(tmp_path / "parent" / "mine")
    with pytest.raises(UserError, match="subfolder.*mine hold idx files"):
        load_dataset(tmp_path / "parent")


def test_unknown_names_and_options(tmp_path):
    with pytest.raises(UserError, match=r"unknown dataset 'mnsit'\. Did you mean 'mnist'\?.*\.npz"):
        load_dataset("mnsit")
    with pytest.raises(UserError, match=r"multi-label targets must be an \(N, K\) matrix"):
        load_dataset("digits", task="multilabel")
    with pytest.raises(UserError, match="Did you mean 'classification'"):
        load_dataset("digits", task="clasification")
    with pytest.raises(UserError, match="unknown layout 'hwc'"):
        load_dataset("digits", layout="hwc")
    for kwargs in ({"val_fraction": 0.0}, {"test_fraction": 1.5}, {"val_fraction": 0.5,
                   "test_fraction": 0.5}, {"seed": -1}):  # fmt: skip
        with pytest.raises(UserError):
            load_dataset("digits", **kwargs)


# --------------------------------------------------------------------------------------- splits


def test_stratified_split_is_seeded_and_stratified():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    keep, take = stratified_split(y, 0.2, seed=3)
    assert len(take) == 200 and len(keep) == 800
    assert np.array_equal(np.sort(np.concatenate([keep, take])), np.arange(1000))
    assert np.bincount(y[take]).tolist() == [120, 60, 20]
    keep2, take2 = stratified_split(y, 0.2, seed=3)
    assert np.array_equal(take, take2) and np.array_equal(keep, keep2)
    _, take3 = stratified_split(y, 0.2, seed=4)
    assert not np.array_equal(take, take3)
    # torch tensors work (DARTS splits Split.y) and give the same answer.
    _, take_t = stratified_split(torch.from_numpy(y), 0.2, seed=3)
    assert np.array_equal(take, take_t)
    # Uneven proportions still round to the right total.
    y = np.repeat([0, 1, 2, 3], [7, 5, 3, 1])
    _, take = stratified_split(y, 0.5, seed=0)
    assert np.bincount(y[take], minlength=4).tolist() == [4, 3, 1, 0]


def test_split_regression_and_edges():
    y = np.random.default_rng(0).normal(size=(50, 2))
    keep, take = stratified_split(y, 0.3, seed=0)
    assert len(take) == 15 and len(np.intersect1d(keep, take)) == 0
    _, take = stratified_split(np.arange(10) % 2, 0.01, seed=0)
    assert len(take) == 1  # at least one sample per side
    keep, _ = stratified_split(np.arange(10) % 2, 0.99, seed=0)
    assert len(keep) == 1
    with pytest.raises(UserError):
        stratified_split(np.array([1]), 0.5, 0)


def test_load_carves_test_and_val_reproducibly(tmp_path):
    x = images(100, (8, 8))
    y = np.repeat([0, 1, 2, 3], [40, 30, 20, 10])
    path = save_npz(tmp_path, x_train=x, y_train=y)
    a = load_dataset(path, seed=5)
    b = load_dataset(path, seed=5)
    c = load_dataset(path, seed=6)
    assert (len(a.train), len(a.val), len(a.test)) == (70, 10, 20)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.val.x, c.val.x)
    assert torch.bincount(a.test.y).tolist() == [8, 6, 4, 2]
    assert torch.bincount(a.val.y).tolist() == [4, 3, 2, 1]
    assert any("no test split given" in n for n in a.notes)
    assert any("no val split given" in n for n in a.notes)
    # Every sample lands in exactly one split.
    rows = torch.cat([a.train.x, a.val.x, a.test.x]).reshape(100, -1).numpy()
    assert sorted(r.tobytes() for r in rows) == sorted(r.tobytes() for r in x.reshape(100, -1))


# ---------------------------------------------------------------------------------------- stats


def test_stats_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(1000.0, 3.0, size=(40, 3, 8, 8))
    x[:, 1] = 7.0  # constant channel
    y = rng.normal(5.0, 2.0, size=(40, 2))
    y[:, 1] = -1.0  # constant target
    ds = load_dataset(save_npz(tmp_path, x_train=x, y_train=y))
    tx = ds.train.x.numpy().astype(np.float64)
    assert np.allclose(ds.mean, tx.mean(axis=(0, 2, 3)), rtol=0, atol=1e-9)
    assert np.allclose(ds.std, [tx[:, 0].std(), 1.0, tx[:, 2].std()], rtol=1e-10)
    ty = ds.train.y.numpy().astype(np.float64)
    assert np.allclose(ds.target_mean, ty.mean(axis=0))
    assert np.allclose(ds.target_std, [ty[:, 0].std(), 1.0])
    assert all(isinstance(v, float) for v in ds.mean + ds.std)


# ---------------------------------------------------------------------------------------- named


def test_digits_named():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset) and isinstance(ds.train, Split)
    assert ds.name == "digits" and ds.task == "classification" and ds.num_outputs == 10
    assert ds.input_shape == (1, 8, 8) and ds.train.x.dtype == torch.uint8
    assert len(ds.train) + len(ds.val) == 1437 and len(ds.val) == 144 and len(ds.test) == 360
    assert ds.class_names == tuple("0123456789")
    tx = ds.train.x.numpy().astype(np.float64)
    assert ds.mean[0] == pytest.approx(tx.mean()) and ds.std[0] == pytest.approx(tx.std())
    assert int(ds.train.x.max()) <= 16
    s = ds.summary()
    assert "digits" in s and "10 classes" in s and "1x8x8" in s and "1293" in s and "360" in s
    assert NAMED_DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10")


def test_mnist_from_shared_data():
    root = shared("mnist").parent
    assert read_idx(root / "mnist" / "train-labels-idx1-ubyte.gz")[0] == 5
    ds = load_dataset("mnist", data_dir=root, download=False)
    assert ds.input_shape == (1, 28, 28) and ds.num_outputs == 10
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.train.y[0] == 5  # index 0 stays in train for seed 0; order is preserved
    assert ds.test.y[0] == 7  # the official first test digit
    assert ds.mean[0] == pytest.approx(0.1307 * 255, abs=0.1)
    assert ds.std[0] == pytest.approx(0.3081 * 255, abs=0.1)


def test_fashion_mnist_from_shared_data():
    root = shared("fashion_mnist").parent  # found in the fashion_mnist/ subfolder
    ds = load_dataset("fashion_mnist", data_dir=root, download=False)
    assert ds.name == "fashion-mnist" and len(ds.test) == 10000
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


def test_cifar_jpeg_subset_npz_is_nhwc():
    path = shared("cifar10_jpeg_subset") / "cifar10_jpeg_subset.npz"
    ds = load_dataset(path)
    assert ds.input_shape == (3, 32, 32) and len(ds.test) == 2000
    assert ds.class_names[0] == "airplane" and len(ds.mean) == 3
    assert any("NHWC" in n for n in ds.notes)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SCINAS_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("SCINAS_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "scinas" / "data"


# ------------------------------------------------------------------------------------------- idx


@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, dtype, gz):
    offset = 0 if dtype == "u1" else 20  # negative values for the signed and float types
    arr = (np.arange(70) - offset).reshape(2, 5, 7).astype(dtype) / (2 if dtype[0] == "f" else 1)
    arr = arr.astype(dtype)
    path = write_idx(tmp_path / "a-idx3-ubyte", arr, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.flags.writeable
    assert np.array_equal(out, arr)


def test_idx_errors_name_the_file(tmp_path):
    arr = images(4, (5, 5))
    path = write_idx(tmp_path / "train-images-idx3-ubyte", arr)
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(UserError, match="train-images-idx3-ubyte is truncated"):
        read_idx(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(UserError, match="1 bytes more"):
        read_idx(path)
    path.write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(UserError, match="train-images-idx3-ubyte is not an idx file"):
        read_idx(path)
    path.write_bytes(data[:2] + b"\x07" + data[3:])
    with pytest.raises(UserError, match="type code 0x07"):
        read_idx(path)
    gz = tmp_path / "x.gz"
    gz.write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(UserError, match="x.gz is a damaged gzip"):
        read_idx(gz)
    with pytest.raises(UserError, match="not found"):
        read_idx(tmp_path / "missing")


def test_idx_directory_name_variants(tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    x_tr, y_tr = images(20, (6, 5)), labels(20).astype(np.uint8)
    x_te, y_te = images(8, (6, 5), seed=1), labels(8).astype(np.uint8)
    write_idx(folder / "train-images.idx3-ubyte", x_tr)
    write_idx(folder / "train-labels.idx1-ubyte", y_tr)
    write_idx(folder / "test-images-idx3-ubyte.gz", x_te, gz=True)
    write_idx(folder / "test-labels.idx1-ubyte.gz", y_te, gz=True)
    ds = load_dataset(folder)
    assert ds.name == "mydata" and ds.input_shape == (1, 6, 5)
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(x_te))
    assert torch.equal(ds.test.y, torch.from_numpy(y_te.astype(np.int64)))
    assert len(ds.train) + len(ds.val) == 20

    (folder / "test-labels.idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="matching test file"):
        load_dataset(folder)
    (folder / "test-images-idx3-ubyte.gz").unlink()
    ds = load_dataset(folder)  # train only: test carved out
    assert (len(ds.train), len(ds.val), len(ds.test)) == (14, 2, 4)
    with pytest.raises(UserError, match="pass the folder"):
        load_dataset(folder / "train-images.idx3-ubyte")


def test_named_idx_directly_in_data_dir(tmp_path):
    arrays = write_idx_set(tmp_path)
    ds = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert ds.name == "mnist" and ds.input_shape == (1, 6, 5) and ds.num_outputs == 10
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))


# ----------------------------------------------------------------------------------------- cifar


def test_cifar_binary_round_trip(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    arrays = write_cifar(folder)
    x, y = read_cifar_binary(folder / "data_batch_2.bin")
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.array_equal(x, arrays["x_train"][6:12]) and np.array_equal(y, arrays["y_train"][6:12])

    ds = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert ds.input_shape == (3, 32, 32) and ds.num_outputs == 10
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert torch.equal(ds.test.x, torch.from_numpy(arrays["x_test"]))
    assert len(ds.train) + len(ds.val) == 30

    (folder / "test_batch.bin").write_bytes(cifar_bytes(arrays["x_test"], arrays["y_test"])[:-1])
    with pytest.raises(UserError, match="test_batch.bin is not a CIFAR-10 binary batch"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    bad = arrays["y_test"].copy()
    bad[2] = 42
    (folder / "test_batch.bin").write_bytes(cifar_bytes(arrays["x_test"], bad))
    with pytest.raises(UserError, match="label 42 at record 2"):
        read_cifar_binary(folder / "test_batch.bin")


# -------------------------------------------------------------------------------------- download


CLOSED = "http://127.0.0.1:9/"  # discard port: nothing listens, the connection is refused


def test_offline_download_error_is_fast_and_helpful(tmp_path, monkeypatch):
    monkeypatch.setitem(named.MIRRORS, "mnist", (CLOSED,))
    monkeypatch.setitem(named.MIRRORS, "cifar10", (CLOSED,))
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "127.0.0.1:9/train-images-idx3-ubyte.gz" in msg and "offline" in msg
    assert str(tmp_path / "mnist") in msg and "--data-dir" in msg
    with pytest.raises(UserError, match=r"cifar-10-binary\.tar\.gz.*offline"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert time.monotonic() - start < 5
    assert not list((tmp_path / "mnist").iterdir())  # no half files left behind


def test_download_false_never_touches_network(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(named.urllib.request, "urlopen", boom)
    for name in ("mnist", "fashion-mnist", "cifar10"):
        with pytest.raises(UserError, match="download=False"):
            load_dataset(name, data_dir=tmp_path, download=False)
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "fashion-mnist"))):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def test_download_verifies_md5_and_falls_back_to_next_mirror(tmp_path, monkeypatch):
    server = tmp_path / "server"
    write_idx_set(server)
    md5s = {p.name: md5(p) for p in server.iterdir()}
    monkeypatch.setitem(named.FILES, "mnist", md5s)
    monkeypatch.setitem(named.MIRRORS, "mnist", (CLOSED, server.as_uri() + "/"))
    ds = load_dataset("mnist", data_dir=tmp_path / "cache")
    assert len(ds.test) == 8 and ds.input_shape == (1, 6, 5)
    assert sum("downloaded" in n and "md5 verified" in n for n in ds.notes) == 4
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(md5s)

    monkeypatch.setitem(named.FILES, "mnist", {k: "0" * 32 for k in md5s})
    with pytest.raises(UserError, match="checksum mismatch.*offline"):
        load_dataset("mnist", data_dir=tmp_path / "cache2")
    assert not list((tmp_path / "cache2" / "mnist").iterdir())


def test_cifar_download_and_safe_extract(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-bin"
    arrays = write_cifar(src)
    server = tmp_path / "server"
    server.mkdir()
    archive = server / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-bin")
    monkeypatch.setitem(named.FILES, "cifar10", {archive.name: md5(archive)})
    monkeypatch.setitem(named.MIRRORS, "cifar10", (server.as_uri() + "/",))
    ds = load_dataset("cifar10", data_dir=tmp_path / "cache")
    assert torch.equal(ds.test.x, torch.from_numpy(arrays["x_test"]))
    assert (tmp_path / "cache" / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert not (tmp_path / "cache" / "cifar10" / archive.name).exists()

    # An archive put in place by hand is extracted even with download=False.
    (tmp_path / "byhand" / "cifar10").mkdir(parents=True)
    (tmp_path / "byhand" / "cifar10" / archive.name).write_bytes(archive.read_bytes())
    ds = load_dataset("cifar10", data_dir=tmp_path / "byhand", download=False)
    assert torch.equal(ds.test.y, torch.from_numpy(arrays["y_test"]))

    # An archive with a path escaping the folder is refused.
    evil = server / "evil" / "cifar-10-binary.tar.gz"
    evil.parent.mkdir()
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    monkeypatch.setitem(named.FILES, "cifar10", {evil.name: md5(evil)})
    monkeypatch.setitem(named.MIRRORS, "cifar10", (evil.parent.as_uri() + "/",))
    with pytest.raises(UserError, match="could not extract"):
        load_dataset("cifar10", data_dir=tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "escaped.txt").exists()
