"""Tables of feature vectors (CSV/TSV): one row per sample, numeric feature columns and targets.

The features become x of shape (N, F), which `scinas.data.load_dataset` treats as F channels of
a 1×1 image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scinas.data.formats import SPLITS, RawData, Reader, ReadOptions, register_reader, shown
from scinas.data.images import IMAGE_SUFFIXES
from scinas.data.tables import (
    FILE_COLUMNS,
    TABLE_SUFFIXES,
    TARGET_NAMES,
    is_number,
    norm,
    parse_column,
    read_rows,
    split_assignment,
    target_indices,
    targets_from_table,
)
from scinas.errors import UserError

__all__ = ["FeatureTableReader", "is_feature_table", "read_feature_csv"]


def is_feature_table(path: str | os.PathLike) -> bool:
    """A CSV of feature vectors rather than of image files: no file/image/path column, no column
    of image file names, and a numeric first column."""
    header, rows = read_rows(Path(path))
    names = {norm(c) for c in header}
    if any(name in names for name in FILE_COLUMNS):
        return False
    for i in range(len(header)):  # a column of image file names, however it is named
        values = [cells[i].lower() for _, cells in rows]
        if all(v.endswith(IMAGE_SUFFIXES) for v in values):
            return False
    first = [cells[0] for _, cells in rows]
    return any(first) and all(is_number(v) for v in first if v)  # (empty cells fail later)


def read_feature_csv(
    path: str | os.PathLike, *, target_columns: Sequence[str] | None = None
) -> RawData:
    """Read a CSV (or TSV) table of feature vectors: one row per sample, numeric feature columns,
    the target column(s) and an optional ``split`` column (train/val/test).

    The targets are ``target_columns``, else the one column named target, label, y or class (any
    case); every other column is a feature. Targets follow the rules of `read_image_csv` (one
    integer or text column: classes; several 0/1 columns: multi-label; numbers: regression).
    The features become x of shape (N, F): scinas treats them as F channels of a 1×1 image.

    Raises:
        UserError: for no identifiable target column, a non-numeric or empty feature value, or a
            bad split value.
    """
    path = Path(path)
    header, rows = read_rows(path)
    split_col = next((i for i, c in enumerate(header) if c.lower() == "split"), None)
    if target_columns is None:
        named = [i for i, c in enumerate(header) if norm(c) in TARGET_NAMES and i != split_col]
        if len(named) != 1:
            raise UserError(
                f"{path} is a table of feature vectors, but which column is the target? "
                + (
                    f"Several are named like one ({', '.join(header[i] for i in named)}). "
                    if named
                    else "None is named target, label, y or class. "
                )
                + "Name it (or them) with --set data.target_columns=[COLUMN] "
                "(target_columns=[...] in Python)."
            )
        target_idx = named
    else:
        target_idx = target_indices(header, target_columns, path, None, split_col)
    feature_idx = [i for i in range(len(header)) if i not in target_idx and i != split_col]
    if not feature_idx:
        raise UserError(f"{path} has no feature column besides the target(s).")
    lines = [ln for ln, _ in rows]
    features = []
    for i in feature_idx:
        kind, values = parse_column(header[i], [cells[i] for _, cells in rows], lines, path)
        if kind == "str":
            bad = next(v for v in values if not is_number(v))
            raise UserError(
                f"feature column '{header[i]}' of {path} holds text ('{bad}'); features must be "
                "numbers. Encode it as numbers, drop the column, or name it a target with --set "
                "data.target_columns=[...]."
            )
        features.append(values.astype(np.float32))
    x = np.stack(features, axis=1)
    columns = [header[i] for i in target_idx]
    notes: list[str] = []
    parsed = [
        parse_column(header[i], [cells[i] for _, cells in rows], lines, path) for i in target_idx
    ]
    y, class_names = targets_from_table(columns, parsed, path, notes)
    which = split_assignment(header, rows, split_col, path)
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for split in SPLITS:
        mask = which == split
        if mask.any():
            arrays[f"x_{split}"], arrays[f"y_{split}"] = x[mask], y[mask]
            labels[f"x_{split}"] = f"feature columns of {path.name} ({split})"
            labels[f"y_{split}"] = f"column(s) {', '.join(columns)} of {path.name} ({split})"
    raw = RawData(name=path.stem, arrays=arrays, labels=labels, class_names=class_names)
    raw.notes.append(
        f"read {len(rows)} feature vectors of {len(feature_idx)} features from {path} (targets "
        f"{shown(columns, 8)})"
    )
    raw.notes += notes
    return raw


@register_reader("feature-table")
class FeatureTableReader(Reader):
    """A CSV/TSV of feature vectors; asked before the image-file tables, which take the rest."""

    description = "CSV/TSV tables of feature vectors (f1,f2,...,label)"
    uses = ("target_columns",)

    def recognises(self, path: Path) -> bool:
        if not path.is_file() or path.suffix.lower() not in TABLE_SUFFIXES:
            return False
        try:
            return is_feature_table(path)
        except UserError:  # a malformed table: the image-table reader explains what is wrong
            return False

    def read(self, path: Path, options: ReadOptions) -> RawData:
        return read_feature_csv(path, target_columns=options.target_columns)

    def example(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        rows = [f"{i * 0.5},{(i * 7) % 5},{i % 2}" for i in range(24)]
        path = folder / "features.csv"
        path.write_text("\n".join(["f1,f2,label", *rows]) + "\n")
        return path
