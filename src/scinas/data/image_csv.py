"""CSV/TSV tables that list image files with their targets (and optionally their split)."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from scinas.data.formats import SPLITS, RawData, Reader, ReadOptions, register_reader, shown
from scinas.data.images import load_images, size_note
from scinas.data.tables import (
    FILE_COLUMNS,
    TABLE_SUFFIXES,
    norm,
    parse_column,
    read_rows,
    split_assignment,
    target_indices,
    targets_from_table,
)
from scinas.errors import UserError
from scinas.userpaths import file_kind, os_reason

__all__ = ["ImageCsvReader", "read_image_csv"]


def _pick_file_column(header: list[str]) -> int:
    by_norm = {norm(c): i for i, c in reversed(list(enumerate(header)))}
    for name in FILE_COLUMNS:
        if name in by_norm:
            return by_norm[name]
    return 0


def _check_files(files: list[str], paths: list[Path]) -> tuple[list[str], list[str]]:
    """The listed names that do not exist, and the others that are not readable image files
    (with the reason), by their type: a FIFO or a device is never opened."""
    missing, unreadable = [], []
    for name, p in zip(files, paths, strict=True):
        try:
            mode = os.stat(p).st_mode
        except (FileNotFoundError, NotADirectoryError):
            missing.append(name)
            continue
        except OSError as e:
            short = name if len(name) <= 80 else f"{name[:40]}...{name[-37:]}"
            unreadable.append(f"{short} ({os_reason(e, p)})")
            continue
        except ValueError:
            unreadable.append(f"{name!r} (a NUL character in the name)")
            continue
        if stat.S_ISDIR(mode):
            unreadable.append(f"{name} (a folder, not an image file)")
        elif not stat.S_ISREG(mode):
            unreadable.append(f"{name} ({file_kind(mode)}, not an image file)")
    return missing, unreadable


def read_image_csv(
    path: str | os.PathLike,
    *,
    target_columns: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    fit: str = "resize",
    workers: int | None = None,
) -> RawData:
    """Read a CSV (or TSV) that lists image files and their targets.

    The file column is the one named file, filename, image, path or id (any case), else the
    first; relative names are resolved against the CSV's own folder.  All other columns are
    targets (or those in ``target_columns``), except an optional ``split`` column with values
    train/val/test.  One integer column gives class ids, one text column class names (sorted,
    ids in that order), several 0/1 columns multi-label targets and numeric columns regression
    targets.

    Args:
        path: The ``.csv``/``.tsv`` file (comma, tab or semicolon separated; with a header).
        target_columns: Target columns to use, in that order (default: all other columns).
        image_size: ``(H, W)`` to bring every image to (see :func:`load_images`).
        fit: ``"resize"`` or ``"center_crop"``.
        workers: Decoding threads.

    Returns:
        NCHW images and targets per split given by the ``split`` column (all train without).

    Raises:
        UserError: For an empty table, missing or undecodable images, unknown columns, bad
            split values, or images of mixed sizes without ``image_size``.
    """
    path = Path(path)
    header, rows = read_rows(path)
    notes: list[str] = []
    file_col = _pick_file_column(header)
    split_col = next(
        (i for i, c in enumerate(header) if c.lower() == "split" and i != file_col), None
    )
    target_idx = target_indices(header, target_columns, path, file_col, split_col)
    columns = [header[i] for i in target_idx]
    lines = [ln for ln, _ in rows]

    base = path.parent
    files = [cells[file_col] for _, cells in rows]
    empty = [ln for ln, f in zip(lines, files, strict=True) if not f]
    if empty:
        raise UserError(
            f"column '{header[file_col]}' of {path} has no file name on line(s) "
            f"{shown([str(n) for n in empty])}; fill them in or remove those rows."
        )
    paths = [base / f for f in files]  # an absolute name replaces the base
    missing, unreadable = _check_files(files, paths)
    if missing:
        raise UserError(
            f"{len(missing)} of {len(files)} image files listed in column '{header[file_col]}' "
            f"of {path} are missing: {shown(missing)} (relative names are looked for in "
            f"{base.absolute()}). Fix the names or put the images next to the CSV."
        )

    if unreadable:
        raise UserError(
            f"{len(unreadable)} of {len(files)} image files listed in column "
            f"'{header[file_col]}' of {path} cannot be read: {shown(unreadable, 3)}. Fix those "
            "entries or remove their rows."
        )

    parsed = [
        parse_column(header[i], [cells[i] for _, cells in rows], lines, path) for i in target_idx
    ]
    y, class_names = targets_from_table(columns, parsed, path, notes)

    which = split_assignment(header, rows, split_col, path)

    x, image_notes = load_images(paths, image_size=image_size, fit=fit, workers=workers)
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for split in SPLITS:
        mask = which == split
        if not mask.any():
            continue
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[mask], y[mask]
        part = f" (split={split})" if split_col is not None else ""
        labels[f"x_{split}"] = f"images listed in {path.name}{part}"
        labels[f"y_{split}"] = f"column(s) {', '.join(columns)} of {path.name}{part}"
    raw = RawData(
        name=path.stem, arrays=arrays, labels=labels, layout="nchw", class_names=class_names
    )
    counts = ", ".join(f"{s} {int((which == s).sum())}" for s in SPLITS if (which == s).any())
    raw.notes.append(
        f"read {len(paths)} images listed in {path} (file column '{header[file_col]}', targets "
        f"{shown(columns, 8)}"
        + (f"; splits from column '{header[split_col]}': {counts}" if split_col is not None else "")
        + ")"
    )
    raw.notes += notes + image_notes + size_note(image_size, fit)
    return raw


@register_reader("image-csv")
class ImageCsvReader(Reader):
    """A CSV/TSV of image files; it takes every table the feature-table reader leaves, so a
    malformed table gets this reader's message about what a table needs."""

    description = "CSV/TSV tables of image files (file,label)"
    uses = ("target_columns", "image_size")

    def recognises(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in TABLE_SUFFIXES

    def read(self, path: Path, options: ReadOptions) -> RawData:
        return read_image_csv(
            path,
            target_columns=options.target_columns,
            image_size=options.image_size,
            fit=options.fit,
        )

    def example(self, folder: Path) -> Path:
        rows = []
        for i in range(12):
            pixels = ((np.arange(8 * 6 * 3).reshape(8, 6, 3) * (i + 1)) % 256).astype(np.uint8)
            (folder / "img").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / "img" / f"{i:02d}.png")
            rows.append(f"img/{i:02d}.png,{i % 3}")
        path = folder / "labels.csv"
        path.write_text("\n".join(["file,label", *rows]) + "\n")
        return path
