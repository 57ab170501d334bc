"""CSV/TSV tables: the parsing shared by the table formats (image lists and feature tables).

A table has a header row; cells are stripped, blank rows skipped, and every problem is raised as
a UserError that names the file, the column and the line.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scinas.data.formats import shown
from scinas.errors import UserError, did_you_mean
from scinas.userpaths import read_user_bytes

__all__ = [
    "FILE_COLUMNS",
    "SPLIT_NAMES",
    "TABLE_SUFFIXES",
    "TARGET_NAMES",
    "is_number",
    "norm",
    "parse_column",
    "read_rows",
    "split_assignment",
    "target_indices",
    "targets_from_table",
]

#: Suffixes of the tables the table formats read.
TABLE_SUFFIXES = (".csv", ".tsv")
#: Column names (compared lower case, without ``_``, ``-`` and spaces) that hold the image files,
#: in order of preference; without one, the first column is used.
FILE_COLUMNS = ("file", "filename", "image", "path", "id")
#: Column names (compared as :data:`FILE_COLUMNS`) a feature table's target may have.
TARGET_NAMES = ("target", "label", "y", "class", "targets", "labels")
#: Values of a ``split`` column (lower case) and of split folder names, and the split they mean.
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_INT = re.compile(r"[+-]?\d+")
_INT64 = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def norm(name: str) -> str:
    return re.sub(r"[\s_-]", "", name.lower())


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of the non-blank data rows."""
    data = read_user_bytes(path, "table")
    # UTF-8, with or without a BOM; UTF-16 when its BOM says so (Excel's "Unicode text")
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e}); save the table as UTF-8 CSV.") from None
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
    if all(is_number(c) for c in header):
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


def parse_column(name: str, values: list[str], lines: list[int], path: Path):
    """Return ``(kind, array)``: kind is ``"int"``, ``"float"`` or ``"str"``."""
    empty = [ln for ln, v in zip(lines, values, strict=True) if not v]
    if empty:
        raise UserError(
            f"column '{name}' of {path} is empty on {len(empty)} line(s) "
            f"({shown([str(n) for n in empty])}); fill in a value or remove those rows."
        )
    numeric = all(is_number(v) for v in values)
    ints = [_int64(v) if numeric and _INT.fullmatch(v) else 0 for v in values]
    for line, v, i in zip(lines, values, ints, strict=True):
        # in any numeric column: the same number gets the same answer whatever the other rows
        # hold (a text column's names are names)
        if i is None:
            raise UserError(
                f"column '{name}' of {path} holds an integer beyond the 64-bit range on line "
                f"{line}: {_digits(v)}. Integers must lie within ±9.2e18; a class label is "
                "0..K-1, and a measurement can be written as a float (e.g. 1.5e21)."
            )
    if all(_INT.fullmatch(v) for v in values):
        return "int", np.array(ints, dtype=np.int64)
    lower = [v.lower() for v in values]
    if set(lower) <= {"true", "false"}:
        return "int", np.array([v == "true" for v in lower], dtype=np.int64)
    if numeric:
        floats = np.array([float(v) for v in values], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            beyond = np.flatnonzero(np.abs(floats) > _FLOAT32_MAX)
        for i in beyond:
            if "inf" not in values[i].lower():  # written as a number, not as infinity
                raise UserError(
                    f"column '{name}' of {path} holds {_digits(values[i])} on line {lines[i]}, "
                    f"beyond the float32 range that scinas computes in (±{_FLOAT32_MAX:.3g}). "
                    "Rescale the column (e.g. divide it by a power of ten) or fix the value."
                )
        return "float", floats
    return "str", np.array(values)


def _int64(v: str) -> int | None:
    """The integer ``v`` writes, or None beyond the 64-bit range (told by its digit count
    first: int() refuses strings of more than 4300 digits)."""
    digits = v.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 19:
        return None
    i = -int(digits) if v.startswith("-") else int(digits)
    return i if _INT64[0] <= i <= _INT64[1] else None


def _digits(v: str) -> str:
    """A number as written, shortened for a message when it is long."""
    if len(v) <= 30:
        return v
    return f"{v[:12]}...{v[-6:]} ({len(v.lstrip('+-'))} characters)"


def targets_from_table(
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
        notes.append(f"targets: {len(columns)} 0/1 label columns ({shown(columns, 8)})")
        return y.astype(np.int64), tuple(columns)
    notes.append(f"targets: {len(columns)} numeric columns read as floats ({shown(columns, 8)})")
    return y.astype(np.float64), None


def target_indices(
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


def split_assignment(
    header: list[str], rows: list[tuple[int, list[str]]], split_col: int | None, path: Path
) -> np.ndarray:
    """Each row's split from the ``split`` column (all train without one)."""
    if split_col is None:
        return np.full(len(rows), "train")
    raw_split = [cells[split_col].lower() for _, cells in rows]
    bad = [
        f"'{cells[split_col]}' (line {ln})"
        for (ln, cells), s in zip(rows, raw_split, strict=True)
        if s not in SPLIT_NAMES
    ]
    if bad:
        raise UserError(
            f"column '{header[split_col]}' of {path} must hold train, val or test; found "
            f"{shown(bad)}. Fix those values, or rename the column to use it as a target."
        )
    which = np.array([SPLIT_NAMES[s] for s in raw_split])
    if not (which == "train").any():
        raise UserError(
            f"column '{header[split_col]}' of {path} assigns no row to train; mark the "
            "training rows with 'train'."
        )
    return which
