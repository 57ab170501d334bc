"""Image files as datasets: a CSV that lists image files with their targets, or a folder with one
subfolder per class (optionally inside ``train/``, ``val/`` and ``test/`` folders).

Images are decoded with Pillow in a thread pool (Pillow releases the GIL while it decodes, so
thousands of small files load in seconds) and stacked into one N×C×H×W array.  8-bit images stay
uint8; 16-bit and float images become float32 in their raw units, so no precision is lost.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scinas.data.readers import IMAGE_SUFFIXES, SPLITS, RawData
from scinas.errors import UserError, did_you_mean

__all__ = [
    "FILE_COLUMNS",
    "FITS",
    "IMAGE_SUFFIXES",
    "TABLE_SUFFIXES",
    "load_images",
    "parse_image_size",
    "has_class_subfolders",
    "read_class_folders",
    "read_image_csv",
    "is_feature_table",
    "read_feature_csv",
]

#: How images are brought to ``image_size``: scaled (bilinear) or cut/zero-padded around the centre.
FITS = ("resize", "center_crop")
#: Suffixes of the label tables :func:`read_image_csv` reads.
TABLE_SUFFIXES = (".csv", ".tsv")
#: Column names (compared lower case, without ``_``, ``-`` and spaces) that hold the image files,
#: in order of preference; without one, the first column is used.
FILE_COLUMNS = ("file", "filename", "image", "path", "id")

_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_SHOW = 5  # how many offending names an error message lists
_INT = re.compile(r"[+-]?\d+")


def _workers() -> int:
    # Decoding is mostly GIL-free C, but file opening and numpy glue are not: a few threads per
    # core hide the I/O latency without oversubscribing.
    return min(32, 4 * (os.cpu_count() or 1))


def _shown(items: Sequence[str], n: int = _SHOW) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def parse_image_size(value: str | int | Sequence[int] | None) -> tuple[int, int] | None:
    """Parse ``image_size``: ``"HxW"`` (e.g. ``"64x48"``), one number for a square, or ``(H, W)``.

    Raises:
        UserError: If the value is not of that form or a side is not positive.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        sides = None
    elif isinstance(value, (int, np.integer)):
        sides = (int(value), int(value))
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×*,]\s*(\d+)\s*)?", value)
        sides = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else None
    else:
        try:
            sides = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            sides = None
    if sides is None or len(sides) != 2 or min(sides) < 1:
        raise UserError(
            f"image_size must be 'HxW' with positive sides, e.g. '64x64' (--set "
            f"data.image_size=64x64), got {value!r}."
        )
    return sides[0], sides[1]


# ---------------------------------------------------------------------------------------- decode


@dataclass
class _Decoded:
    """One decoded image (H×W×C) or the reason it could not be decoded."""

    array: np.ndarray | None
    depth: str = ""  # "u8", "u16" (16-bit integer) or "float"
    error: str | None = None


def _center_crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Cut the central h×w window; sides smaller than that are padded with zeros on both ends."""
    out = np.zeros((h, w, a.shape[2]), dtype=a.dtype)
    ch, cw = min(h, a.shape[0]), min(w, a.shape[1])
    sy, sx = (a.shape[0] - ch) // 2, (a.shape[1] - cw) // 2
    dy, dx = (h - ch) // 2, (w - cw) // 2
    out[dy : dy + ch, dx : dx + cw] = a[sy : sy + ch, sx : sx + cw]
    return out


def _decode(path: Path, size: tuple[int, int] | None, fit: str) -> _Decoded:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "LA", "RGB", "RGBA"):
                depth = "u8"
            elif mode == "1":
                im, depth = im.convert("L"), "u8"
            elif mode in ("P", "PA"):
                alpha = mode == "PA" or "transparency" in im.info
                im, depth = im.convert("RGBA" if alpha else "RGB"), "u8"
            elif mode.startswith(("I", "F")):
                depth = "u16" if mode.startswith("I;16") else "float"
            elif mode in ("La", "RGBa"):
                im, depth = im.convert("LA" if mode == "La" else "RGBA"), "u8"
            else:  # CMYK, YCbCr, LAB, HSV, RGBX: all carry colour
                im, depth = im.convert("RGB"), "u8"
            if depth != "u8":
                # Pillow resamples single-channel float images ("F") in full precision.
                im = Image.fromarray(np.asarray(im).astype(np.float32))
            if size is not None and fit == "resize" and (im.height, im.width) != size:
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im)
    except Exception as e:  # Pillow raises many exception types for broken files
        return _Decoded(None, error=f"{type(e).__name__}: {e}")
    if a.ndim == 2:
        a = a[:, :, None]
    if size is not None and fit == "center_crop":
        a = _center_crop(a, *size)
    return _Decoded(a, depth)


def _to_channels(a: np.ndarray, c: int, alpha: float) -> np.ndarray:
    """Convert gray (1), gray+alpha (2), RGB (3) or RGBA (4) pixels to ``c`` channels."""
    have = a.shape[2]
    if have == c:
        return a
    gray = have <= 2
    opacity = a[:, :, -1:] if have in (2, 4) else np.full((*a.shape[:2], 1), alpha, a.dtype)
    if c == 2:
        return np.concatenate([a[:, :, :1], opacity], axis=2)
    colour = np.repeat(a[:, :, :1], 3, axis=2) if gray else a[:, :, :3]
    return colour if c == 3 else np.concatenate([colour, opacity], axis=2)


def load_images(
    paths: Sequence[Path],
    *,
    image_size: tuple[int, int] | None = None,
    fit: str = "resize",
    workers: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Decode image files into one (N, C, H, W) array, in a thread pool.

    Gray images give 1 channel, RGB 3, RGBA 4; when the files disagree all are converted to the
    largest count.  8-bit images stay uint8; 16-bit and float images give float32 (mixed with
    8-bit ones, those are scaled by 257 to the 16-bit range so white stays white).

    Args:
        paths: The image files, in the order of the result.
        image_size: ``(H, W)`` to bring every image to, or None to require one common size.
        fit: ``"resize"`` (bilinear) or ``"center_crop"`` (pads with zeros where smaller).
        workers: Threads (default: 4 per CPU core, at most 32).

    Returns:
        The images and notes on conversions made.

    Raises:
        UserError: If files cannot be decoded, or sizes differ and no ``image_size`` was given.
    """
    if fit not in FITS:
        raise UserError(f"fit must be one of {', '.join(FITS)}, got {fit!r}.")
    if not paths:
        raise UserError("no image files to read.")
    workers = workers or _workers()
    # Chunks of files per task: one future per small file would cost about as much as decoding.
    step = max(1, min(64, -(-len(paths) // (4 * workers))))
    chunks = [paths[i : i + step] for i in range(0, len(paths), step)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda chunk: [_decode(p, image_size, fit) for p in chunk], chunks)
        decoded = [d for part in done for d in part]

    bad = [(str(p), d.error) for p, d in zip(paths, decoded, strict=True) if d.error is not None]
    if bad:
        first, why = bad[0]
        more = f" ({len(bad)} files failed, also: {_shown([b[0] for b in bad[1:]])})"
        raise UserError(
            f"could not decode image {first} ({why}){more if len(bad) > 1 else ''}. Pillow must "
            "be able to read every file (PNG, JPEG, TIFF, BMP, ...): replace or remove the "
            "broken file(s)."
        )
    arrays = [d.array for d in decoded]
    notes: list[str] = []

    sizes = Counter(a.shape[:2] for a in arrays)
    if len(sizes) > 1:
        example = {}
        for p, a in zip(paths, arrays, strict=True):
            example.setdefault(a.shape[:2], p.name)
        found = [
            f"{h}x{w} ({n} images, e.g. {example[(h, w)]})" for (h, w), n in sizes.most_common()
        ]
        (h0, w0), _ = sizes.most_common(1)[0]
        raise UserError(
            f"the images have {len(sizes)} different sizes (HxW): {_shown(found, 8)}. Bring them "
            f"to one size with --set data.image_size=HxW (e.g. {h0}x{w0}) and --set "
            "data.fit=resize (bilinear scaling) or --set data.fit=center_crop (cut or zero-pad "
            "around the centre); in Python: load_dataset(..., image_size='HxW', fit=...)."
        )

    depths = {d.depth for d in decoded}
    dtype = np.uint8 if depths == {"u8"} else np.float32
    scale_u8 = depths >= {"u8", "u16"}
    if scale_u8:
        notes.append(
            "images mix 8-bit and 16-bit files: all read as float32, 8-bit values scaled by 257 "
            "to the 16-bit range"
        )
    elif dtype == np.float32 and "u8" in depths:
        notes.append("images mix 8-bit and float files: all read as float32 in their raw values")
    elif dtype == np.float32:
        notes.append("images are 16-bit or float: read as float32 in their raw values")
    alpha = 255.0 if dtype == np.uint8 or not depths & {"u16"} else 65535.0

    channels = Counter(a.shape[2] for a in arrays)
    c = max(channels)
    if len(channels) > 1:
        what = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}
        mix = ", ".join(f"{n} {what[k]}" for k, n in sorted(channels.items()))
        notes.append(f"images have mixed channel counts ({mix}): all converted to {c} channels")

    h, w = arrays[0].shape[:2]
    out = np.empty((len(arrays), c, h, w), dtype=dtype)
    for i, d in enumerate(decoded):
        a = d.array
        if a.dtype != dtype:
            a = a.astype(dtype)
            if scale_u8 and d.depth == "u8":
                a *= 257.0
        out[i] = _to_channels(a, c, alpha).transpose(2, 0, 1)
        d.array = arrays[i] = None  # free each image once copied: peak memory stays ~1x the set
    return out, notes


def _size_note(image_size: tuple[int, int] | None, fit: str) -> list[str]:
    if image_size is None:
        return []
    how = "resized (bilinear)" if fit == "resize" else "center-cropped (zero-padded if smaller)"
    return [f"images {how} to {image_size[0]}x{image_size[1]}"]


# ----------------------------------------------------------------------------------------- table


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]", "", name.lower())


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of the non-blank data rows."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e}); save the table as UTF-8 CSV.") from e
    except OSError as e:
        raise UserError(f"could not read {path}: {e}") from e
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise UserError(
            f"{path} is empty: it needs a header row and one row per image, e.g. 'file,label' "
            "then 'img001.png,3'."
        )
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(first)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        # line_num is the physical line the row ends on, which is what an editor shows.
        rows = [
            (reader.line_num, [c.strip() for c in row])
            for row in reader
            if any(c.strip() for c in row)
        ]
    except csv.Error as e:
        raise UserError(f"could not parse {path} as CSV: {e}") from e
    header = rows[0][1]
    if all(_is_number(c) for c in header):
        raise UserError(
            f"unsupported data file {path}: its first line ({first.strip()[:60]}) holds numbers, "
            "not column names. Add a header row: for a list of image files e.g. 'file,label' "
            "then 'img001.png,3'; for a table of feature vectors e.g. 'f1,f2,...,label'."
        )
    if any(not c for c in header):
        raise UserError(f"{path} has an empty column name in its header ({first.strip()[:80]}).")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise UserError(f"{path} names column(s) {', '.join(dupes)} twice; rename one of them.")
    if len(rows) == 1:
        raise UserError(
            f"{path} has a header ({', '.join(header)}) but no rows: add one row per image, e.g. "
            f"'img001.png,{'3' if len(header) > 1 else ''}'."
        )
    for line, cells in rows[1:]:
        if len(cells) != len(header):
            raise UserError(
                f"line {line} of {path} has {len(cells)} cells but the header has {len(header)} "
                f"columns ({', '.join(header)}); every row needs one value per column."
            )
    return header, rows[1:]


def _pick_file_column(header: list[str]) -> int:
    by_norm = {_norm(c): i for i, c in reversed(list(enumerate(header)))}
    for name in FILE_COLUMNS:
        if name in by_norm:
            return by_norm[name]
    return 0


def _parse_column(name: str, values: list[str], lines: list[int], path: Path):
    """Return ``(kind, array)``: kind is ``"int"``, ``"float"`` or ``"str"``."""
    empty = [ln for ln, v in zip(lines, values, strict=True) if not v]
    if empty:
        raise UserError(
            f"column '{name}' of {path} is empty on {len(empty)} line(s) "
            f"({_shown([str(n) for n in empty])}); fill in a value or remove those rows."
        )
    if all(_INT.fullmatch(v) for v in values):
        return "int", np.array([int(v) for v in values], dtype=np.int64)
    lower = [v.lower() for v in values]
    if set(lower) <= {"true", "false"}:
        return "int", np.array([v == "true" for v in lower], dtype=np.int64)
    if all(_is_number(v) for v in values):
        return "float", np.array([float(v) for v in values], dtype=np.float64)
    return "str", np.array(values)


def _targets_from_table(
    columns: list[str], parsed: list[tuple[str, np.ndarray]], path: Path, notes: list[str]
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Turn the parsed target columns into y (and class names) following the column types."""
    kinds = [k for k, _ in parsed]
    if len(parsed) == 1:
        kind, values = parsed[0]
        if kind != "str":
            return values, None
        names, codes = np.unique(values, return_inverse=True)
        notes.append(f"class labels: the {len(names)} distinct names in column '{columns[0]}'")
        return codes.reshape(-1).astype(np.int64), tuple(str(n) for n in names)
    text = [c for c, k in zip(columns, kinds, strict=True) if k == "str"]
    if text:
        raise UserError(
            f"target columns {', '.join(text)} of {path} hold text; text class labels work in a "
            "single target column only. Choose the target(s) with --set "
            f"data.target_columns=[{text[0]}] (target_columns=[...] in Python)."
        )
    y = np.stack([v for _, v in parsed], axis=1)
    if set(kinds) == {"int"} and np.isin(y, (0, 1)).all():
        notes.append(f"targets: {len(columns)} 0/1 label columns ({_shown(columns, 8)})")
        return y.astype(np.int64), tuple(columns)
    notes.append(f"targets: {len(columns)} numeric columns read as floats ({_shown(columns, 8)})")
    return y.astype(np.float64), None


def _target_indices(
    header: list[str],
    target_columns: Sequence[str] | str | None,
    path: Path,
    file_col: int | None,
    split_col: int | None,
) -> list[int]:
    """Indices of the target columns: ``target_columns`` (checked) or, for an image list, every
    column but the file and split ones."""
    if target_columns is None:
        target_idx = [i for i in range(len(header)) if i not in (file_col, split_col)]
        if not target_idx:
            raise UserError(
                f"{path} has no target column besides the files ('{header[file_col]}'): add a "
                "column with the label or target value of each image."
            )
        return target_idx
    if isinstance(target_columns, str):
        target_columns = [target_columns]
    target_columns = list(target_columns)
    if not target_columns:
        raise UserError("target_columns is empty: name at least one column, or leave it unset.")
    for name in target_columns:
        if name not in header:
            raise UserError(
                f"target column '{name}' is not in {path}.{did_you_mean(name, header)} "
                f"Its columns are: {', '.join(header)}."
            )
    if file_col is not None and header[file_col] in target_columns:
        raise UserError(
            f"target column '{header[file_col]}' of {path} is the column of image files; "
            "pick other target columns."
        )
    if len(set(target_columns)) != len(target_columns):
        raise UserError(f"target_columns {target_columns} names a column twice.")
    return [header.index(name) for name in target_columns]


def _split_assignment(
    header: list[str], rows: list[tuple[int, list[str]]], split_col: int | None, path: Path
) -> np.ndarray:
    """Each row's split from the ``split`` column (all train without one)."""
    if split_col is None:
        return np.full(len(rows), "train")
    raw_split = [cells[split_col].lower() for _, cells in rows]
    bad = [
        f"'{cells[split_col]}' (line {ln})"
        for (ln, cells), s in zip(rows, raw_split, strict=True)
        if s not in _SPLIT_NAMES
    ]
    if bad:
        raise UserError(
            f"column '{header[split_col]}' of {path} must hold train, val or test; found "
            f"{_shown(bad)}. Fix those values, or rename the column to use it as a target."
        )
    which = np.array([_SPLIT_NAMES[s] for s in raw_split])
    if not (which == "train").any():
        raise UserError(
            f"column '{header[split_col]}' of {path} assigns no row to train; mark the "
            "training rows with 'train'."
        )
    return which


TARGET_NAMES = ("target", "label", "y", "class", "targets", "labels")


def is_feature_table(path: str | os.PathLike) -> bool:
    """A CSV of feature vectors rather than of image files: no file/image/path column, no column
    of image file names, and a numeric first column."""
    header, rows = _read_rows(Path(path))
    names = {_norm(c) for c in header}
    if any(name in names for name in FILE_COLUMNS):
        return False
    for i in range(len(header)):  # a column of image file names, however it is named
        values = [cells[i].lower() for _, cells in rows]
        if all(v.endswith(IMAGE_SUFFIXES) for v in values):
            return False
    first = [cells[0] for _, cells in rows]
    return any(first) and all(_is_number(v) for v in first if v)  # (empty cells fail later)


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
    header, rows = _read_rows(path)
    split_col = next((i for i, c in enumerate(header) if c.lower() == "split"), None)
    if target_columns is None:
        named = [i for i, c in enumerate(header) if _norm(c) in TARGET_NAMES and i != split_col]
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
        target_idx = _target_indices(header, target_columns, path, None, split_col)
    feature_idx = [i for i in range(len(header)) if i not in target_idx and i != split_col]
    if not feature_idx:
        raise UserError(f"{path} has no feature column besides the target(s).")
    lines = [ln for ln, _ in rows]
    features = []
    for i in feature_idx:
        kind, values = _parse_column(header[i], [cells[i] for _, cells in rows], lines, path)
        if kind == "str":
            bad = next(v for v in values if not _is_number(v))
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
        _parse_column(header[i], [cells[i] for _, cells in rows], lines, path) for i in target_idx
    ]
    y, class_names = _targets_from_table(columns, parsed, path, notes)
    which = _split_assignment(header, rows, split_col, path)
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
        f"{_shown(columns, 8)})"
    )
    raw.notes += notes
    return raw


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
    header, rows = _read_rows(path)
    notes: list[str] = []
    file_col = _pick_file_column(header)
    split_col = next(
        (i for i, c in enumerate(header) if c.lower() == "split" and i != file_col), None
    )
    target_idx = _target_indices(header, target_columns, path, file_col, split_col)
    columns = [header[i] for i in target_idx]
    lines = [ln for ln, _ in rows]

    base = path.parent
    files = [cells[file_col] for _, cells in rows]
    empty = [ln for ln, f in zip(lines, files, strict=True) if not f]
    if empty:
        raise UserError(
            f"column '{header[file_col]}' of {path} has no file name on line(s) "
            f"{_shown([str(n) for n in empty])}; fill them in or remove those rows."
        )
    paths = [base / f for f in files]  # an absolute name replaces the base
    missing = [f for f, p in zip(files, paths, strict=True) if not p.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} of {len(files)} image files listed in column '{header[file_col]}' "
            f"of {path} are missing: {_shown(missing)} (relative names are looked for in "
            f"{base.absolute()}). Fix the names or put the images next to the CSV."
        )

    parsed = [
        _parse_column(header[i], [cells[i] for _, cells in rows], lines, path) for i in target_idx
    ]
    y, class_names = _targets_from_table(columns, parsed, path, notes)

    which = _split_assignment(header, rows, split_col, path)

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
        f"{_shown(columns, 8)}"
        + (f"; splits from column '{header[split_col]}': {counts}" if split_col is not None else "")
        + ")"
    )
    raw.notes += notes + image_notes + _size_note(image_size, fit)
    return raw


# ------------------------------------------------------------------------------- class folders


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise UserError(f"could not list {folder}: {e}") from e
    # Hidden folders (.ipynb_checkpoints, .git) and macOS zip leftovers are never classes.
    return [
        e for e in entries if e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX"
    ]


def has_class_subfolders(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` has visible subfolders (so it may be a class-folder dataset)."""
    return bool(_visible_dirs(Path(directory)))


def _images_in(folder: Path) -> tuple[list[Path], int]:
    """Image files directly in ``folder`` (sorted) and the number of other files ignored."""
    images, other = [], 0
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        else:
            other += 1
    return images, other


def read_class_folders(
    directory: str | os.PathLike,
    *,
    image_size: tuple[int, int] | None = None,
    fit: str = "resize",
    workers: int | None = None,
) -> RawData:
    """Read a folder with one subfolder of images per class (``cats/001.png``, ``dogs/7.jpg``).

    With top-level ``train/`` (required), ``val/`` and ``test/`` folders, each holds the class
    subfolders of its split.  Class names are the sorted subfolder names (over all splits), the
    labels their index.  Only image files directly inside a class folder are read.

    Args:
        directory: The dataset folder.
        image_size: ``(H, W)`` to bring every image to (see :func:`load_images`).
        fit: ``"resize"`` or ``"center_crop"``.
        workers: Decoding threads.

    Returns:
        NCHW images with int64 labels per split, and the class names.

    Raises:
        UserError: For an empty class folder, no images at all, fewer than 2 classes, split
            folders mixed with class folders, or images that cannot be decoded or differ in size.
    """
    directory = Path(directory)
    subs = _visible_dirs(directory)
    splits = [s for s in subs if s.name.lower() in _SPLIT_NAMES]
    if splits:
        others = [s.name for s in subs if s.name.lower() not in _SPLIT_NAMES]
        if others:
            raise UserError(
                f"{directory} mixes split folders ({', '.join(s.name for s in splits)}) with "
                f"other folders ({_shown(others)}): put the class folders inside train/ (and "
                "val/, test/), or rename the split folders if they are classes."
            )
        roots: dict[str, Path] = {}
        for s in splits:
            key = _SPLIT_NAMES[s.name.lower()]
            if key in roots:
                raise UserError(
                    f"{directory} has two folders for the {key} split ({roots[key].name} and "
                    f"{s.name}); merge them."
                )
            roots[key] = s
        if "train" not in roots:
            raise UserError(
                f"{directory} has {' and '.join(r.name for r in roots.values())} folder(s) but no "
                "train/ folder; the training images must be in train/<class>/."
            )
    else:
        roots = {"train": directory}

    found: dict[str, dict[str, list[Path]]] = {}
    ignored = 0
    for split, root in roots.items():
        classes = _visible_dirs(root)
        if not classes:
            raise UserError(
                f"{root} has no class subfolders: put the images of each class in their own "
                f"subfolder ({root}/<class>/<image>), or list them in a CSV with their labels and "
                "pass the CSV."
            )
        found[split] = {}
        for folder in classes:
            images, other = _images_in(folder)
            found[split][folder.name] = images
            ignored += other
    total = sum(len(v) for per in found.values() for v in per.values())
    if total == 0:
        raise UserError(
            f"{directory} has subfolders but no image files in them ({', '.join(IMAGE_SUFFIXES)}); "
            "it is neither a folder of class subfolders of images nor an idx dataset folder."
        )
    empty = [roots[s] / c for s, per in found.items() for c, v in per.items() if not v]
    if empty:
        raise UserError(
            f"class folder {empty[0]} has no image files"
            + (f" (nor do {len(empty) - 1} other class folders)" if len(empty) > 1 else "")
            + ": remove the folder or add images to it."
        )
    class_names = sorted({c for per in found.values() for c in per})
    if len(class_names) < 2:
        tables = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
        hint = (
            f" ({tables[0]} is here: pass it as the data path if it lists the images.)"
            if tables
            else ""
        )
        raise UserError(
            f"{directory} has a single class folder ('{class_names[0]}'); classification needs at "
            "least 2, one subfolder per class. For other targets list the images in a CSV "
            "(file,target) and pass the CSV." + hint
        )
    index = {c: i for i, c in enumerate(class_names)}
    paths: list[Path] = []
    owner: list[str] = []
    ys: list[int] = []
    for split, per in found.items():
        for c, images in per.items():
            paths += images
            owner += [split] * len(images)
            ys += [index[c]] * len(images)
    x, notes = load_images(paths, image_size=image_size, fit=fit, workers=workers)
    which, y = np.array(owner), np.array(ys, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for split, root in roots.items():
        mask = which == split
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[mask], y[mask]
        labels[f"x_{split}"] = f"images in {root}"
        labels[f"y_{split}"] = f"class folders of {root}"
    raw = RawData(
        name=directory.name,
        arrays=arrays,
        labels=labels,
        layout="nchw",
        class_names=tuple(class_names),
    )
    counts = ", ".join(f"{s} {int((which == s).sum())}" for s in roots)
    raw.notes.append(
        f"read {len(paths)} images in {len(class_names)} class folders from {directory}"
        + (f" (split folders: {counts})" if splits else "")
    )
    if ignored:
        raw.notes.append(f"ignored {ignored} non-image file(s) in the class folders")
    raw.notes += notes + _size_note(image_size, fit)
    return raw
