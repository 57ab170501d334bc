"""The UCR time-series archive's text format (2018 edition): ``<Name>_TRAIN.tsv`` and
``<Name>_TEST.tsv``, one series per line, tab-separated, the class label first, no header.

Given either file or the folder that holds the pair, both splits are read (numpy's ``loadtxt``)
as one-channel series (N×L). The archive's labels (e.g. ``-1``/``1`` or ``1``..``K``) become
class indices in sorted order, their original values the class names. The archive pads its
variable-length sets with NaN to the longest series: those are refused, saying so.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from scinas.data.formats import RawData, Reader, ReadOptions, register_reader, shown
from scinas.data.limits import check_decoded_size
from scinas.errors import UserError

__all__ = ["UCRReader"]

_SPLIT = re.compile(r"^(?P<name>.+)_(?P<split>TRAIN|TEST)\.tsv$", re.IGNORECASE)


def _split_files(path: Path) -> dict[str, Path]:
    """The ``NAME_TRAIN.tsv``/``NAME_TEST.tsv`` files of ``path`` (one of them, or a folder
    holding one NAME's), by split; empty when it is not UCR-shaped."""
    if path.is_file():
        own = _SPLIT.match(path.name)
        if own is None:
            return {}
        folder, name = path.parent, own["name"]
    else:
        folder, name = path, None
    found: dict[str, dict[str, Path]] = {}
    for p in folder.iterdir():
        m = _SPLIT.match(p.name)
        if m and (name is None or m["name"] == name) and p.is_file():
            found.setdefault(m["name"], {})[m["split"].lower()] = p
    if len(found) != 1:
        return {}
    (files,) = found.values()
    return {split: files[split] for split in ("train", "test") if split in files}


def _read_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    check_decoded_size(path.stat().st_size * 2, path, "the series")
    try:
        table = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise UserError(
            f"{path}: not a UCR series file ({str(e).splitlines()[0][:200]}). Each line must be "
            "a class label and the series' values, separated by tabs."
        ) from None
    if table.shape[0] == 0 or table.shape[1] < 2:
        raise UserError(f"{path}: no series in it (each line: a label, a tab, the values).")
    labels, x = table[:, 0], table[:, 1:]
    padded = np.isnan(x).any(axis=1)
    if padded.any():
        raise UserError(
            f"{path}: {int(padded.sum())} of {len(x)} series hold NaN, as the archive pads "
            "variable-length series to the longest: scinas needs series of one length. "
            "Resample or crop them to one length (and save them as .npz), or drop those rows."
        )
    if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
        raise UserError(f"{path}: the first column must hold whole-number class labels.")
    return x.astype(np.float32), labels.astype(np.int64)


@register_reader("ucr")
class UCRReader(Reader):
    description = "UCR archive series (NAME_TRAIN.tsv and NAME_TEST.tsv, or their folder)"

    def recognises(self, path: Path) -> bool:
        try:
            return bool(_split_files(path))
        except OSError:
            return False

    def read(self, path: Path, options: ReadOptions) -> RawData:
        pair = _split_files(path)
        if "train" not in pair:
            name = _SPLIT.match(pair["test"].name)["name"]
            raise UserError(
                f"{pair['test']} is a UCR test split without its training split: put "
                f"{name}_TRAIN.tsv next to it, and give either file or their folder."
            )
        arrays, labels, ys = {}, {}, {}
        for split, file in pair.items():
            x, ys[split] = _read_split(file)
            arrays[f"x_{split}"] = x
            labels[f"x_{split}"] = labels[f"y_{split}"] = str(file)
        if "x_test" in arrays and arrays["x_test"].shape[1] != arrays["x_train"].shape[1]:
            raise UserError(
                f"{pair['test']}: its series have {arrays['x_test'].shape[1]} steps, those of "
                f"{pair['train']} {arrays['x_train'].shape[1]}: the splits must have one length."
            )
        classes = np.unique(ys["train"])
        if "test" in ys and (unseen := np.setdiff1d(ys["test"], classes)).size:
            raise UserError(
                f"{pair['test']}: class label(s) {shown([str(v) for v in unseen])} never "
                f"appear in {pair['train']}."
            )
        for split, y in ys.items():
            arrays[f"y_{split}"] = np.searchsorted(classes, y).astype(np.int64)
        name = _SPLIT.match(pair["train"].name)["name"]
        notes = [
            f"read the UCR series {', '.join(str(p) for p in pair.values())}: "
            f"{len(classes)} class labels ({shown([str(c) for c in classes])}) as classes "
            f"0..{len(classes) - 1}"
        ]
        return RawData(
            name=name,
            arrays=arrays,
            labels=labels,
            layout="nl",
            class_names=tuple(str(c) for c in classes),
            notes=notes,
        )

    def example(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for split, n in (("TRAIN", 24), ("TEST", 12)):
            lines = []
            for i in range(n):
                label = (-1, 1)[i % 2]
                wave = np.sin(np.linspace(0, 3 * (2 + label), 30)) + 0.1 * rng.normal(size=30)
                lines.append("\t".join([str(label), *(f"{v:.5f}" for v in wave)]))
            (folder / f"Toy_{split}.tsv").write_text("\n".join(lines) + "\n")
        return folder / "Toy_TRAIN.tsv"
