"""From the arrays a reader returns to a checked `Dataset`: numeric and finite values, images in
(N, C, H, W) or series in (N, C, L) (`scinas.data.layouts` says how the axes are read), the task's
targets, and per-channel normalisation statistics."""

from __future__ import annotations

import numpy as np
import torch

from scinas.data.dataset import _SPLITS, _STD_FLOOR, MIN_SIDE, Dataset, Split
from scinas.data.formats import RawData
from scinas.data.layouts import SERIES_LAYOUTS, detect_3d, to_nchw, to_ncl
from scinas.data.series import check_series
from scinas.data.split import stratified_split
from scinas.errors import UserError
from scinas.tasks import TASKS, Task, check_finite, detect_task


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


def _series(x: np.ndarray, label: str, layout: str, how: str, split: str, notes: list[str]):
    """Series (N, C, L) from ``x`` in ``layout``, checked; the train split notes how it was read."""
    shape = tuple(x.shape)
    x = to_ncl(x, layout, label)
    if split == "train":
        notes.append(
            f"x read as series: {x.shape[1]} channel(s) of {x.shape[2]} steps "
            f"({layout.upper()}, {how}: {shape})"
        )
    if x.dtype != np.uint8:
        x = x.astype(np.float32, copy=False)
    check_series(x, label)
    return x, layout


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
    if layout in SERIES_LAYOUTS:
        how = f"--layout {layout}" if raw.layout is None else "as its format stores them"
        return _series(x, label, layout, how, split, notes)
    if layout == "auto" and raw.layout is None and x.ndim == 3:
        read = detect_3d(x.shape)
        if read != "nhw":
            return _series(x, label, read, "the only reading of the shape", split, notes)
    if x.ndim == 2:  # N×F feature vectors: F channels of a 1×1 image
        if split == "train":
            notes.append(
                f"x is N×F ({x.shape[1]} features per sample): read as {x.shape[1]} channels "
                "of 1×1, so each cell acts per sample on the feature vector (no spatial ops); "
                "pass --layout nl if each row is a series"
            )
        x = x.astype(np.float32, copy=False)
        check_finite(x, label)
        return x[:, :, None, None], "nf"
    x, used = to_nchw(x, layout, label)
    if split == "train":
        if used == "nhw":
            _, h, w = raw.arrays[key].shape
            series = (
                ""
                if h == w or layout != "auto"
                else (
                    f"; pass --layout ncl if these are series ({h} channels of {w} steps) or "
                    "--layout nlc if the channels are last"
                )
            )
            notes.append("images are N×H×W: read as one channel" + series)
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


def assemble(
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
        xs[split], _ = _images(raw, split, used if used != "nf" else "auto", notes)
        if xs[split].shape[1:] != x_train.shape[1:]:
            dims = "C×L" if used in SERIES_LAYOUTS else "C×H×W"
            what = "series" if used in SERIES_LAYOUTS else "images"
            raise UserError(
                f"{what} in {raw.label(f'x_{split}')} are {dims} = {xs[split].shape[1:]} but "
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
        what = "series" if xs["train"].ndim == 3 else "image"
        notes.append(f"{what} channel(s) {constant} are constant in train: std set to 1.0")
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
    return Dataset(
        name=raw.name,
        task=task,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        num_outputs=int(num_outputs),
        input_shape=tuple(int(s) for s in xs["train"].shape[1:]),
        mean=mean,
        std=std,
        target_mean=target_mean,
        target_std=target_std,
        class_names=class_names,
        notes=tuple(notes),
    )
