"""Datasets for scinas: named ones (digits, MNIST, Fashion-MNIST, CIFAR-10), ``.npz`` files,
folders of MNIST-style idx files, CSV tables of image files and folders of class subfolders of
images, loaded into one validated :class:`Dataset`.

Images are kept in their raw units (uint8 stays uint8): the trainer normalises per batch with
:attr:`Dataset.mean` / :attr:`Dataset.std`, which avoids holding a float copy of the whole set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scinas.data.folders import (
    FITS,
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    has_class_subfolders,
    is_feature_table,
    parse_image_size,
    read_class_folders,
    read_feature_csv,
    read_image_csv,
)
from scinas.data.named import NAMED_DATASETS, canonical_name, default_data_dir, load_named
from scinas.data.readers import (
    RawData,
    find_idx_files,
    is_idx_name,
    read_idx_dir,
    read_npz,
    to_nchw,
)
from scinas.data.split import stratified_split
from scinas.errors import UserError, unknown

__all__ = [
    "NAMED_DATASETS",
    "Dataset",
    "Split",
    "default_data_dir",
    "load_dataset",
    "multilabel_strata",
    "stratified_split",
]

TASKS = ("auto", "classification", "regression", "multilabel")
LAYOUTS = ("auto", "nhwc", "nchw")
MIN_SIDE = 4  # smallest image side the search space's stem and reductions can handle
_SPLITS = ("train", "val", "test")
_STD_FLOOR = 1e-8


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    ``eq=False``: comparing tensors field by field is ambiguous, so splits compare by identity.

    Attributes:
        x: Images (N, C, H, W) in raw units, uint8 or float32 (not normalised).
        y: Classification: (N,) int64 class ids.  Regression: (N, K) float32 targets.
            Multi-label: (N, K) float32 of 0/1, one column per label.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A validated dataset with train/val/test splits and normalisation statistics.

    Attributes:
        name: e.g. ``"digits"``, ``"mnist"``, or the file/folder name (without ``.npz``).
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``.
        train: Training split.
        val: Validation split (model selection / DARTS architecture step).
        test: Held-out test split.
        num_outputs: Number of classes, number K of regression targets or of labels.
        input_shape: ``(C, H, W)``.
        mean: Per-channel mean of ``train.x`` in raw units.
        std: Per-channel std of ``train.x`` (a constant channel gets 1.0).
        target_mean: Regression only: per-target mean of ``train.y``.
        target_std: Regression only: per-target std of ``train.y`` (a constant target gets 1.0).
        class_names: Names of the classes (multi-label: of the labels), when known.
        notes: Facts about how the data was read: layout, splits made, downloads.
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    num_outputs: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target_mean: tuple[float, ...] | None
    target_std: tuple[float, ...] | None
    class_names: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: name, task, classes/targets, input shape and dtype, split sizes."""
        c, h, w = self.input_shape
        if self.task == "classification":
            what = f"{self.num_outputs} classes"
        elif self.task == "multilabel":
            what = f"{self.num_outputs} labels"
        else:
            what = f"{self.num_outputs} target{'s' if self.num_outputs != 1 else ''}"
        dtype = str(self.train.x.dtype).replace("torch.", "")
        return (
            f"{self.name}: {self.task}, {what}, input {c}x{h}x{w} {dtype}; "
            f"train {len(self.train)} / val {len(self.val)} / test {len(self.test)}"
        )


def load_dataset(
    data: str | os.PathLike = "digits",
    *,
    data_dir: str | os.PathLike | None = None,
    task: str = "auto",
    layout: str = "auto",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
    target_columns: Sequence[str] | None = None,
    image_size: str | tuple[int, int] | None = None,
    fit: str = "resize",
) -> Dataset:
    """Load, validate and split a dataset.

    Args:
        data: A named dataset (see :data:`NAMED_DATASETS`; names win over same-named paths, use
            ``./name`` for a folder), a ``.npz`` file with ``x_train``/``y_train`` (and optionally
            ``x_val``/``y_val``, ``x_test``/``y_test``), a folder of MNIST-style idx files, a
            ``.csv``/``.tsv`` listing image files and their targets (see
            :func:`~scinas.data.folders.read_image_csv`), or a folder of class subfolders of
            images, optionally inside ``train/``, ``val/``, ``test/`` folders.
        data_dir: Where named datasets are looked for and downloaded to (default
            :func:`default_data_dir`).
        task: ``"auto"`` (integer targets -> classification; N×K integer or bool 0/1 targets,
            K >= 2 -> multi-label; float -> regression), ``"classification"``, ``"regression"``
            or ``"multilabel"``.
        layout: Layout of 4-D ``.npz`` images: ``"auto"`` (guessed from the shape), ``"nhwc"``
            or ``"nchw"``.  3-D arrays are always N×H×W.
        val_fraction: Share of the training data held out as validation when no val split is
            given.
        test_fraction: Share of the training data held out as test when no test split is given
            (carved first; both fractions are of the original training data).
        seed: Seed of the hold-out splits (stratified by class, or by labels for multi-label).
        download: Whether a missing named dataset may be downloaded.
        target_columns: CSV only: the target columns (default: all but the file and split
            columns).
        image_size: Image files only: ``"HxW"`` to bring every image to; without it, all images
            must have the same size.
        fit: How images are brought to ``image_size``: ``"resize"`` (bilinear) or
            ``"center_crop"`` (zero-padded where an image is smaller).

    Returns:
        The :class:`Dataset`.

    Raises:
        UserError: For any problem with the data or the options; the message says how to fix it.
    """
    task = _choice("task", task, TASKS)
    layout = _choice("layout", layout, LAYOUTS)
    for label, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise UserError(f"{label} must be a number between 0 and 1 (exclusive), got {value!r}.")
    if val_fraction + test_fraction >= 1:
        raise UserError(
            f"val_fraction + test_fraction must be below 1 (got {val_fraction} + {test_fraction}); "
            "nothing would be left to train on."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}.")
    fit = _choice("fit", fit, FITS)
    size = parse_image_size(image_size)
    raw = _read(data, data_dir, download, target_columns, size, fit)
    return _assemble(raw, task, layout, val_fraction, test_fraction, int(seed))


# ------------------------------------------------------------------------------------- resolution


def _choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    key = str(value).strip().lower()
    if key in choices:
        return key
    if kind == "task" and key.replace("-", "").replace("_", "") == "multilabel":
        return "multilabel"
    if kind == "fit" and key.replace("-", "_") in choices:
        return key.replace("-", "_")
    raise unknown(kind, str(value), choices)


def _read(
    data: str | os.PathLike,
    data_dir: str | os.PathLike | None,
    download: bool,
    target_columns: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    fit: str = "resize",
) -> RawData:
    if isinstance(data, str):
        if not data.strip():
            raise UserError(
                "no data given: pass a named dataset, a .npz file, an idx folder, a CSV of image "
                "files or a folder of class subfolders."
            )
        name = canonical_name(data)
        if name is not None:
            return _ignoring(load_named(name, data_dir, download), target_columns, image_size)
    path = Path(os.fspath(data)).expanduser()
    if path.is_dir():
        if find_idx_files(path) or not _is_class_folder_dataset(path):
            # read_idx_dir also explains folders that are neither kind.
            return _ignoring(read_idx_dir(path), target_columns, image_size)
        raw = read_class_folders(path, image_size=image_size, fit=fit)
        return _ignoring(raw, target_columns, None)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return _ignoring(read_npz(path), target_columns, image_size)
        if suffix in TABLE_SUFFIXES:
            if is_feature_table(path):
                return _ignoring(
                    read_feature_csv(path, target_columns=target_columns), None, image_size
                )
            return read_image_csv(
                path, target_columns=target_columns, image_size=image_size, fit=fit
            )
        if is_idx_name(path.name):
            raise UserError(
                f"{path} is a single idx file: pass the folder that holds the train-/t10k- idx "
                f"files ({path.parent}) instead."
            )
        if suffix in IMAGE_SUFFIXES:
            raise UserError(
                f"{path} is a single image: pass the folder that holds one subfolder of images "
                "per class, or a CSV that lists the image files with their targets."
            )
        raise UserError(
            f"unsupported data file {path}: scinas reads .npz files (x_train, y_train, ...), "
            "folders of MNIST-style idx files, CSV tables of image files (file,label) and "
            "folders of class subfolders of images. Convert it with numpy.savez(path, "
            "x_train=..., y_train=...)."
        )
    text = os.fspath(data)
    if not isinstance(data, str) or "/" in text or os.sep in text or path.suffix:
        raise UserError(
            f"data path not found: {path} (resolved to {path.absolute()}). A path must be an "
            "existing .npz file or a directory of MNIST-style idx files."
        )
    err = unknown("dataset", text, NAMED_DATASETS)
    raise UserError(
        f"{err} Or pass a path: a .npz file or a directory of MNIST-style idx files "
        f"('{text}' does not exist here)."
    )


def _is_class_folder_dataset(path: Path) -> bool:
    """Whether a folder without idx files should be read as class subfolders of images.

    A folder whose subfolders hold idx files is left to :func:`read_idx_dir`, whose error
    points at them (the usual slip is passing the parent of the idx folder).
    """
    if not has_class_subfolders(path):
        return False
    subs = sorted(p for p in path.iterdir() if p.is_dir())[:50]
    return not any("x_train" in find_idx_files(p) for p in subs)


def _ignoring(
    raw: RawData, target_columns: Sequence[str] | None, image_size: tuple[int, int] | None
) -> RawData:
    """Note the image-file options that do not apply to this source, rather than fail on them.

    A config that sets them for a CSV can then be reused on a .npz of the same data.
    """
    if target_columns is not None:
        raw.notes.append("target_columns ignored: it applies to CSV tables only")
    if image_size is not None:
        raw.notes.append("image_size/fit ignored: they apply to image files only")
    return raw


# --------------------------------------------------------------------------------------- assembly


def _check_numeric(a: np.ndarray, label: str, role: str) -> None:
    if a.dtype.kind not in "biuf":
        raise UserError(
            f"{label} has dtype {a.dtype}; {role} must be numeric"
            + (
                " (map string labels to integers 0..K-1 first)."
                if role == "targets"
                else " (uint8 or float)."
            )
        )


def _check_finite(a: np.ndarray, label: str) -> None:
    if a.dtype.kind != "f":
        return
    finite = np.isfinite(a)
    bad = a.size - int(np.count_nonzero(finite))
    if bad:
        n_nan = int(np.count_nonzero(np.isnan(a)))
        raise UserError(
            f"{label} contains {bad} NaN or infinite value(s) ({n_nan} NaN, {bad - n_nan} "
            "infinite, counted after conversion to float32); remove those samples or replace the "
            "values (e.g. numpy.nan_to_num) before training."
        )


def _images(raw: RawData, split: str, layout: str, notes: list[str]) -> tuple[np.ndarray, str]:
    key = f"x_{split}"
    label = raw.label(key)
    x = raw.arrays[key]
    _check_numeric(x, label, "images")
    if x.ndim == 2:  # N×F feature vectors: F channels of a 1×1 image
        if split == "train":
            notes.append(
                f"x is N×F ({x.shape[1]} features per sample): read as {x.shape[1]} channels "
                "of 1×1, so each cell acts per sample on the feature vector (no spatial ops)"
            )
        x = x.astype(np.float32, copy=False)
        _check_finite(x, label)
        return x[:, :, None, None], "nf"
    x, used = to_nchw(x, layout, label)
    if split == "train":
        if used == "nhw":
            notes.append("images are N×H×W: read as one channel")
        elif raw.layout is None:
            how = "detected from the shape" if layout == "auto" else f"--layout {layout}"
            other = "nchw" if used == "nhwc" else "nhwc"
            notes.append(
                f"images are {used.upper()} ({how}: {tuple(raw.arrays[key].shape)})"
                + (f"; pass --layout {other} if that is wrong" if layout == "auto" else "")
            )
    if x.dtype != np.uint8:
        if split == "train":
            notes.append(f"images converted from {x.dtype} to float32")
        x = x.astype(np.float32, copy=False)
        _check_finite(x, label)
    _, _, h, w = x.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(
            f"images in {label} are {h}×{w} pixels; the minimum is {MIN_SIDE}×{MIN_SIDE}. Pad or "
            "resize them (or arrange the features on a larger grid)."
        )
    return x, used


def _labels(y: np.ndarray, label: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(
            f"{label} has shape {tuple(y.shape)}; class labels must be 1-D (N,) or (N, 1). For "
            "several 0/1 labels per sample use --task multilabel, for several continuous "
            "targets --task regression."
        )
    if y.dtype.kind == "f":
        _check_finite(y, label)
        frac = np.flatnonzero(y != np.round(y))
        if frac.size:
            i = int(frac[0])
            raise UserError(
                f"class labels must be integers: {label} has {frac.size} non-integer value(s), "
                f"e.g. {y[i]!r} at index {i}. Use --task regression for continuous targets."
            )
    y = y.astype(np.int64)
    neg = np.flatnonzero(y < 0)
    if neg.size:
        i = int(neg[0])
        raise UserError(
            f"class labels must be non-negative integers 0..K-1: {label} has {neg.size} negative "
            f"label(s), e.g. {int(y[i])} at index {i}. Remap the labels to 0..K-1."
        )
    return y


def _is_multilabel(y: np.ndarray) -> bool:
    """Auto-detection: an N×K (K >= 2) integer or bool array of 0s and 1s, both present.

    A matrix of only 1s (or only 0s) teaches nothing and is more likely a mistake, so it is
    left to the classification checks, whose error names --task multilabel to force it.
    """
    if y.ndim != 2 or y.shape[1] < 2 or y.dtype.kind not in "biu":
        return False
    values = np.unique(y)
    return values.size == 2 and values[0] == 0 and values[1] == 1


def _values_found(y: np.ndarray) -> str:
    """The distinct values of ``y`` for a message: the first few, their count, NaN if any."""
    flat = y.reshape(-1)
    nan = flat.dtype.kind == "f" and bool(np.isnan(flat).any())
    values = np.unique(flat[~np.isnan(flat)] if nan else flat)
    parts = [str(v) for v in values[:8].tolist()]
    if values.size > 8:
        parts.append(f"... ({values.size} distinct, up to {values[-1]})")
    return ", ".join(parts + (["NaN"] if nan else []))


def _multilabels(y: np.ndarray, label: str) -> np.ndarray:
    """Validate multi-label targets and return them as float32 (N, K) of 0/1."""
    if y.ndim != 2 or y.shape[1] < 2:
        raise UserError(
            f"multi-label targets must be an (N, K) matrix of 0/1 with one column per label, "
            f"K >= 2; {label} has shape {tuple(y.shape)} with values {_values_found(y)}. For one "
            "class per sample use --task classification."
        )
    ok = np.isin(y, (0, 1))
    if not ok.all():
        bad = y[~ok]
        raise UserError(
            f"multi-label targets must all be 0 or 1, but {label} has {bad.size} other "
            f"value(s): {_values_found(bad)}. Binarise them (e.g. y > threshold), or use "
            "--task regression for continuous targets."
        )
    return y.astype(np.float32)


def multilabel_strata(y: np.ndarray) -> np.ndarray:
    """Group ids for a stratified split of multi-label targets (N, K) of 0/1.

    Stratifying on the whole label combination keeps co-occurrences in proportion, but only
    works when every combination occurs at least twice; otherwise each row is grouped by its
    rarest positive label (rows without any positive label form one more group), which still
    spreads rare labels over the splits.  Pass the ids to :func:`stratified_split`.

    Args:
        y: The targets, one row per sample.

    Returns:
        (N,) int64 group ids.
    """
    on = np.asarray(y) > 0.5
    _, combo, counts = np.unique(on, axis=0, return_inverse=True, return_counts=True)
    if counts.min() >= 2:
        return combo.reshape(-1).astype(np.int64)
    freq = on.sum(axis=0)
    rarest = np.argmin(np.where(on, freq[None, :], np.iinfo(np.int64).max), axis=1)
    return np.where(on.any(axis=1), rarest, on.shape[1]).astype(np.int64)


def _matrix_targets(raw, present, ys: dict, parse, what: str) -> None:
    """Parse each split's (N, K) targets into ``ys``; every split must have the train's K."""
    for split in present:
        ys[split] = parse(raw.arrays[f"y_{split}"], raw.label(f"y_{split}"))
        if ys[split].shape[1] != ys["train"].shape[1]:
            raise UserError(
                f"{raw.label(f'y_{split}')} has {ys[split].shape[1]} {what} per sample but "
                f"{raw.label('y_train')} has {ys['train'].shape[1]}; all splits must agree."
            )


def _targets(y: np.ndarray, label: str) -> np.ndarray:
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise UserError(
            f"{label} has shape {tuple(y.shape)}; regression targets must be (N,) or (N, K)."
        )
    y = y.astype(np.float32, copy=False)
    _check_finite(y, label)
    return y


def _channel_stats(
    a: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], list[int]]:
    """Per-channel (axis 1) mean and std over all other axes, in float64, in chunks.

    Returns the means, the stds (constant channels get 1.0) and the indices of those channels.

    Two passes (mean, then squared deviations) instead of E[x²] - E[x]², which loses precision
    for float data with a large offset; chunks keep the float64 temporaries small.
    """
    n, c = a.shape[:2]
    flat = a.reshape(n, c, -1)
    per = flat.shape[2]
    step = max(1, (1 << 21) // max(1, c * per))
    count = n * per
    total = np.zeros(c)
    for i in range(0, n, step):
        total += flat[i : i + step].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    sq = np.zeros(c)
    for i in range(0, n, step):
        d = flat[i : i + step].astype(np.float64) - mean[None, :, None]
        sq += np.einsum("ijk,ijk->j", d, d)
    std = np.sqrt(sq / count)
    constant = [int(i) for i in np.flatnonzero(std < _STD_FLOOR)]
    # Dividing by ~0 would blow constant channels up; 1.0 leaves them centred at zero.
    std = np.where(std < _STD_FLOOR, 1.0, std)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std), constant


def _constant_label_notes(y: np.ndarray, names: tuple[str, ...] | None) -> list[str]:
    """Labels that never (or always) occur in train: the network cannot learn them from it."""
    pos = y.sum(axis=0)
    out = []
    for what, idx in (
        ("never", np.flatnonzero(pos == 0)),
        ("always", np.flatnonzero(pos == len(y))),
    ):
        if idx.size:
            shown = ", ".join(repr(names[i]) if names else str(int(i)) for i in idx[:10])
            more = ", ..." if idx.size > 10 else ""
            out.append(
                f"{idx.size} label(s) are {what} set in the train split ({shown}{more}): the "
                "network cannot learn them from this data"
            )
    return out


def _assemble(
    raw: RawData, task: str, layout: str, val_fraction: float, test_fraction: float, seed: int
) -> Dataset:
    notes = list(raw.notes)
    present = [s for s in _SPLITS if f"x_{s}" in raw.arrays]
    layout = raw.layout or layout

    # Cheap structural checks first, so a bad file fails before any conversion work.
    for split in present:
        x, y = raw.arrays[f"x_{split}"], raw.arrays[f"y_{split}"]
        if y.ndim == 0 or x.ndim == 0:
            raise UserError(
                f"the {split} split has scalar arrays; x and y need one row per sample."
            )
        if len(x) != len(y):
            raise UserError(
                f"the {split} split has {len(x)} images ({raw.label(f'x_{split}')}) but {len(y)} "
                f"targets ({raw.label(f'y_{split}')}); they must match one to one."
            )
        if len(x) == 0:
            raise UserError(
                f"the {split} split is empty (0 samples in {raw.label(f'x_{split}')}); add samples"
                + (
                    " or leave the split out to have it carved from train."
                    if split != "train"
                    else "."
                )
            )
        _check_numeric(y, raw.label(f"y_{split}"), "targets")

    xs: dict[str, np.ndarray] = {}
    x_train, used = _images(raw, "train", layout, notes)
    xs["train"] = x_train
    for split in present[1:]:
        # Same layout as train, so e.g. a 32x32x32 test array cannot be read differently.
        xs[split], _ = _images(raw, split, used if used != "nhw" else "auto", notes)
        if xs[split].shape[1:] != x_train.shape[1:]:
            raise UserError(
                f"images in {raw.label(f'x_{split}')} are C×H×W = {xs[split].shape[1:]} but "
                f"those in {raw.label('x_train')} are {x_train.shape[1:]}; all splits must agree."
            )

    y_train_raw = raw.arrays["y_train"]
    if task == "auto":
        if _is_multilabel(y_train_raw):
            task = "multilabel"
            notes.append(
                f"task: multilabel (y_train is an N×{y_train_raw.shape[1]} matrix of 0/1 integers)"
            )
        elif y_train_raw.dtype.kind in "biu":
            task = "classification"
            notes.append("task: classification (y_train holds integers)")
        else:
            task = "regression"
            whole = bool(
                np.all(np.isfinite(y_train_raw)) and np.all(y_train_raw == np.round(y_train_raw))
            )
            binary = whole and y_train_raw.ndim == 2 and y_train_raw.shape[1] >= 2
            binary = binary and bool(np.isin(y_train_raw, (0, 1)).all())
            hint = ""
            if binary:
                hint = "; they are all 0 or 1: pass --task multilabel if they are labels"
            elif whole:
                hint = (
                    "; they are all whole numbers: pass --task classification if they are class ids"
                )
            notes.append("task: regression (y_train holds floats)" + hint)

    ys: dict[str, np.ndarray] = {}
    class_names = raw.class_names
    if task == "classification":
        for split in present:
            ys[split] = _labels(raw.arrays[f"y_{split}"], raw.label(f"y_{split}"))
        top = max(int(y.max()) for y in ys.values())
        num_outputs = top + 1
        if class_names is not None:
            if len(class_names) >= num_outputs:
                num_outputs = len(class_names)
            else:
                notes.append(
                    f"ignored class_names: {len(class_names)} names for labels up to {top}"
                )
                class_names = None
        if num_outputs < 2:
            raise UserError(
                f"classification needs at least 2 classes, but every label is {top}; check "
                "y_train, or use --task regression for a single continuous target."
            )
        absent = np.setdiff1d(np.arange(num_outputs), ys["train"])
        if absent.size:
            shown = ", ".join(str(int(c)) for c in absent[:10]) + (
                ", ..." if absent.size > 10 else ""
            )
            notes.append(
                f"{absent.size} of {num_outputs} classes have no training samples ({shown}); "
                "labels are expected to be 0..K-1"
            )
    elif task == "multilabel":
        _matrix_targets(raw, present, ys, _multilabels, "labels")
        num_outputs = int(ys["train"].shape[1])
        if class_names is not None and len(class_names) != num_outputs:
            notes.append(f"ignored class_names: {len(class_names)} names for {num_outputs} labels")
            class_names = None
    else:
        _matrix_targets(raw, present, ys, _targets, "targets")
        num_outputs = int(ys["train"].shape[1])
        class_names = None

    missing = [s for s in ("test", "val") if s not in present]
    n_all = len(xs["train"])
    if missing and n_all < 4:
        raise UserError(
            f"the train split has only {n_all} samples; at least 4 are needed to carve out the "
            f"missing {' and '.join(missing)} split(s). Add samples, or give x_val/y_val and "
            "x_test/y_test explicitly."
        )
    how = {"classification": "stratified by class", "multilabel": "stratified by labels"}
    for split in missing:
        # Both fractions are of the original training data: test is carved first, so val's
        # share of what is left is scaled up accordingly.
        frac = test_fraction if split == "test" else val_fraction
        if split == "val" and "test" in missing:
            frac = val_fraction / (1.0 - test_fraction)
        strata = multilabel_strata(ys["train"]) if task == "multilabel" else ys["train"]
        # A different seed per split keeps the two draws independent.
        keep, take = stratified_split(strata, frac, seed + (1 if split == "val" else 0))
        xs[split], ys[split] = xs["train"][take], ys["train"][take]
        xs["train"], ys["train"] = xs["train"][keep], ys["train"][keep]
        notes.append(
            f"no {split} split given: held out {len(take)} of {n_all} training samples "
            f"({100 * len(take) / n_all:.0f}%, {how.get(task, 'random')}, seed {seed}) as "
            f"{split}"
        )
    if task == "multilabel":
        notes += _constant_label_notes(ys["train"], class_names)

    mean, std, constant = _channel_stats(xs["train"])
    if constant:
        notes.append(f"image channel(s) {constant} are constant in train: std set to 1.0")
    target_mean = target_std = None
    if task == "regression":
        target_mean, target_std, constant = _channel_stats(ys["train"])
        if constant:
            notes.append(f"target(s) {constant} are constant in train: std set to 1.0")

    splits = {
        s: Split(
            x=torch.from_numpy(np.ascontiguousarray(xs[s])),
            y=torch.from_numpy(np.ascontiguousarray(ys[s])),
        )
        for s in _SPLITS
    }
    _, c, h, w = xs["train"].shape
    return Dataset(
        name=raw.name,
        task=task,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        num_outputs=int(num_outputs),
        input_shape=(int(c), int(h), int(w)),
        mean=mean,
        std=std,
        target_mean=target_mean,
        target_std=target_std,
        class_names=class_names,
        notes=tuple(notes),
    )
