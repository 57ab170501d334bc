"""Datasets for scinas: named ones (digits, MNIST, Fashion-MNIST, CIFAR-10), ``.npz`` files,
folders of MNIST-style idx files or CIFAR-10 batches, CSV tables of image files or of feature
vectors and folders of class subfolders of images, loaded into one validated :class:`Dataset`.

Named datasets are entries of :data:`~scinas.data.named.DATASETS`, file formats readers in
:data:`~scinas.data.formats.READERS` (asked in the order their modules are imported below), and
the targets are detected and parsed by the tasks of :data:`scinas.tasks.TASKS`.

Images are kept in their raw units (uint8 stays uint8): the trainer normalises per batch with
:attr:`Dataset.mean` / :attr:`Dataset.std`, which avoids holding a float copy of the whole set.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# The format modules register their readers on import, and readers are asked in that order: e.g.
# feature tables before image tables, which take every other table.  Imported before any other
# scinas.data module, which may import some of them.
# isort: off
from scinas.data import npz, cifar, idx, class_folders, feature_table, image_csv  # noqa: E402, F401
# isort: on

from scinas.data.formats import READERS, RawData, ReadOptions, note_ignored, read_path
from scinas.data.images import FITS, parse_image_size
from scinas.data.layouts import to_nchw
from scinas.data.named import DATASETS, NAMED_DATASETS, default_data_dir, find_dataset
from scinas.data.split import stratified_split
from scinas.errors import UserError, unknown
from scinas.tasks import TASKS, Task, check_finite, detect_task, multilabel_strata
from scinas.userpaths import file_kind, stat_user_path

__all__ = [
    "DATASETS",
    "NAMED_DATASETS",
    "READERS",
    "Dataset",
    "Split",
    "default_data_dir",
    "load_dataset",
    "multilabel_strata",
    "stratified_split",
]

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
        what = TASKS.get(self.task).describe_outputs(self.num_outputs)
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
        data: A named dataset (see :data:`DATASETS`; names win over same-named paths, use
            ``./name`` for a folder), or a file or folder in a format of :data:`READERS`: a
            ``.npz`` file with ``x_train``/``y_train`` (and optionally ``x_val``/``y_val``,
            ``x_test``/``y_test``), a folder of MNIST-style idx files or of the CIFAR-10 binary
            batches, a ``.csv``/``.tsv`` of feature vectors or one listing image files and their
            targets (see :func:`~scinas.data.image_csv.read_image_csv`), or a folder of class
            subfolders of images, optionally inside ``train/``, ``val/``, ``test/`` folders.
        data_dir: Where named datasets are looked for and downloaded to (default
            :func:`default_data_dir`).
        task: ``"auto"`` (integer targets -> classification; N×K integer or bool 0/1 targets,
            K >= 2 -> multi-label; float -> regression: see :func:`scinas.tasks.detect_task`),
            or a task of :data:`scinas.tasks.TASKS`: ``"classification"``, ``"regression"`` or
            ``"multilabel"``.
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
    task = _choice("task", task, ("auto", *TASKS.names()))
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
    options = ReadOptions(target_columns=target_columns, image_size=size, fit=fit)
    raw = _read(data, data_dir, download, options)
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
    options: ReadOptions,
) -> RawData:
    """A named dataset if ``data`` names one, else the file or folder it points at."""
    if isinstance(data, str):
        if not data.strip():
            raise UserError(
                "no data given: pass a named dataset, a .npz file, an idx folder, a CSV of image "
                "files or a folder of class subfolders."
            )
        dataset = find_dataset(data)
        if dataset is not None:
            return note_ignored(dataset.load(data_dir, download), options, ())
    path = Path(os.fspath(data)).expanduser()
    st = stat_user_path(path, "data path")
    if st is not None:
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise UserError(
                f"data path {path} is {file_kind(st.st_mode)}, not a file or folder: scinas "
                "reads data from files on disk. Save the data to a file and pass that."
            )
        return read_path(path, options)
    text = os.fspath(data)
    if not isinstance(data, str) or "/" in text or os.sep in text or path.suffix:
        raise UserError(
            f"data path not found: {path} (resolved to {path.absolute()}). A path must be an "
            "existing .npz file or a directory of MNIST-style idx files."
        )
    err = unknown("dataset", text, DATASETS.names())
    raise UserError(
        f"{err} Or pass a path: a .npz file or a directory of MNIST-style idx files "
        f"('{text}' does not exist here)."
    )


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


def _check_float32_range(a: np.ndarray, label: str) -> None:
    """Refuse (UserError) finite values that float32, which scinas computes in, cannot hold,
    with the largest and its row (they would become infinities)."""
    if a.dtype.kind != "f" or a.dtype.itemsize <= 4 or a.size == 0:
        return
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(a) & (np.abs(a) > np.finfo(np.float32).max)
    n = int(np.count_nonzero(beyond))
    if n:
        big = np.where(beyond, np.abs(a), 0)
        row = int(np.argmax(big)) // max(1, a[0].size if a.ndim else 1)
        raise UserError(
            f"{label} holds {n} value(s) beyond the float32 range that scinas computes in "
            f"(±{np.finfo(np.float32).max:.3g}), up to {float(big.max()):.4g} (row {row}). "
            "Rescale the data (e.g. divide it by a power of ten) or fix those values."
        )


def _images(raw: RawData, split: str, layout: str, notes: list[str]) -> tuple[np.ndarray, str]:
    key = f"x_{split}"
    label = raw.label(key)
    x = raw.arrays[key]
    _check_numeric(x, label, "images")
    _check_float32_range(x, label)
    if x.ndim >= 2 and 0 in x.shape[1:]:
        what = "features" if x.ndim == 2 else "values"
        raise UserError(
            f"{label} has shape {tuple(x.shape)}: each sample has 0 {what}. Give at least one "
            + ("feature column (N×F with F ≥ 1)." if x.ndim == 2 else "pixel in every dimension.")
        )
    if x.ndim == 2:  # N×F feature vectors: F channels of a 1×1 image
        if split == "train":
            notes.append(
                f"x is N×F ({x.shape[1]} features per sample): read as {x.shape[1]} channels "
                "of 1×1, so each cell acts per sample on the feature vector (no spatial ops)"
            )
        x = x.astype(np.float32, copy=False)
        check_finite(x, label)
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
        check_finite(x, label)
    _, _, h, w = x.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(
            f"images in {label} are {h}×{w} pixels; the minimum is {MIN_SIDE}×{MIN_SIDE}. Pad or "
            "resize them (or arrange the features on a larger grid)."
        )
    return x, used


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


#: Largest distance from the training mean that ``(x - mean) / std`` takes in float32 with room
#: to spare: beyond it the subtraction overflows to infinity and the first step's loss is NaN.
NORMALISABLE = float(np.finfo(np.float32).max) / 2


def _check_normalisable(
    arrays: dict[str, np.ndarray], mean: tuple[float, ...], raw: RawData, prefix: str, what: str
) -> None:
    """Refuse (UserError) float values so far from the training mean (per channel or target)
    that normalising them would overflow float32, naming the array, the sample and the value."""
    centre = np.asarray(mean, dtype=np.float64)
    for split, a in arrays.items():
        if a.dtype.kind != "f" or a.size == 0:
            continue
        flat = a.reshape(a.shape[0], a.shape[1], -1) if a.ndim > 1 else a.reshape(-1, 1, 1)
        hi = flat.max(axis=(0, 2)).astype(np.float64) - centre
        lo = centre - flat.min(axis=(0, 2)).astype(np.float64)
        far = np.maximum(hi, lo)
        if far.max() <= NORMALISABLE:
            continue
        c = int(far.argmax())
        col = flat[:, c, :].astype(np.float64)
        value = float(col.reshape(-1)[np.abs(col - centre[c]).argmax()])
        # the sample's row in the source (hold-out splits were carved out of train since)
        src = raw.arrays[f"{prefix}_{split}"]
        with np.errstate(all="ignore"):
            hits = np.flatnonzero(src.reshape(len(src), -1).astype(np.float32) == value)
        row = f"row {hits[0] // max(1, src[0].size)}, " if hits.size else ""
        raise UserError(
            f"{raw.label(f'{prefix}_{split}')} holds {value:.4g} ({row}{what} {c}), "
            f"{far[c]:.3g} away from the training mean {centre[c]:.4g}: normalising it "
            f"((x - mean) / std in float32, whose largest value is {2 * NORMALISABLE:.3g}) would "
            "overflow, and training would stop at NaN. Rescale the data (e.g. divide it by a "
            "power of ten) or remove the sample."
        )


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
        task = detect_task(y_train_raw)
        notes.append(TASKS.get(task).detection_note(y_train_raw))
    kind: type[Task] = TASKS.get(task)

    ys: dict[str, np.ndarray] = {}
    for split in present:
        label = raw.label(f"y_{split}")
        if kind.standardises_targets:  # float targets: the others are refused by their values
            _check_float32_range(raw.arrays[f"y_{split}"], label)
        ys[split] = kind.parse_targets(raw.arrays[f"y_{split}"], label)
        if ys[split].ndim == 2 and ys[split].shape[1] != ys["train"].shape[1]:
            raise UserError(
                f"{label} has {ys[split].shape[1]} {kind.output_noun} per sample but "
                f"{raw.label('y_train')} has {ys['train'].shape[1]}; all splits must agree."
            )
    num_outputs, class_names = kind.outputs(ys, raw.class_names, notes)

    missing = [s for s in ("test", "val") if s not in present]
    n_all = len(xs["train"])
    if missing and n_all < 4:
        raise UserError(
            f"the train split has only {n_all} samples; at least 4 are needed to carve out the "
            f"missing {' and '.join(missing)} split(s). Add samples, or give x_val/y_val and "
            "x_test/y_test explicitly."
        )
    for split in missing:
        # Both fractions are of the original training data: test is carved first, so val's
        # share of what is left is scaled up accordingly.
        frac = test_fraction if split == "test" else val_fraction
        if split == "val" and "test" in missing:
            frac = val_fraction / (1.0 - test_fraction)
        strata = kind.strata(ys["train"])
        # A different seed per split keeps the two draws independent.
        keep, take = stratified_split(strata, frac, seed + (1 if split == "val" else 0))
        xs[split], ys[split] = xs["train"][take], ys["train"][take]
        xs["train"], ys["train"] = xs["train"][keep], ys["train"][keep]
        notes.append(
            f"no {split} split given: held out {len(take)} of {n_all} training samples "
            f"({100 * len(take) / n_all:.0f}%, {kind.split_how}, seed {seed}) as "
            f"{split}"
        )
    notes += kind.train_notes(ys["train"], class_names)

    mean, std, constant = _channel_stats(xs["train"])
    if constant:
        notes.append(f"image channel(s) {constant} are constant in train: std set to 1.0")
    _check_normalisable(xs, mean, raw, "x", "channel")
    target_mean = target_std = None
    if kind.standardises_targets:
        target_mean, target_std, constant = _channel_stats(ys["train"])
        if constant:
            notes.append(f"target(s) {constant} are constant in train: std set to 1.0")
        _check_normalisable(ys, target_mean, raw, "y", "target")

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
