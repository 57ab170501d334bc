"""The ``.ts`` series format of the UEA/UCR and Monash archives (sktime's and aeon's): a header of
``@`` lines (``@problemName``, ``@univariate``, ``@equalLength``, ``@classLabel true A B`` or
``@targetLabel true``, ``@data``), then one series per line, its channels separated by ``:`` and
their values by ``,``, the class label or target last.

Read with sktime's ``load_from_tsfile`` (the optional extra ``scinas[series]``): no parser of our
own. Given ``NAME_TRAIN.ts`` or ``NAME_TEST.ts`` (or the folder holding the pair), both splits are
read; another ``.ts`` file is the training data alone. Series are N×C×L; class labels become
classes in sorted order (numerically when every label is a number), named by their values;
``@targetLabel`` files are regression. Series of different lengths in one file (``@equalLength
false``) are refused, saying so; missing values (``?``) are read as NaN, which the series checks
refuse with their count and place.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from scinas.data.formats import RawData, Reader, ReadOptions, register_reader, shown
from scinas.data.limits import check_decoded_size
from scinas.errors import UserError
from scinas.parallel import torch_threads_kept

__all__ = ["TsReader"]

_SPLIT = re.compile(r"^(?P<name>.+)_(?P<split>TRAIN|TEST)\.ts$", re.IGNORECASE)
EXTRA = "pip install 'scinas[series]'"


def _files(path: Path) -> dict[str, Path]:
    """The files to read by split: a pair ``NAME_TRAIN.ts``/``NAME_TEST.ts`` (from one of them
    or their folder), or one other ``.ts`` file as the training split; empty when ``path`` is
    not a ``.ts`` input."""
    if path.is_file():
        if path.suffix.lower() != ".ts":
            return {}
        own = _SPLIT.match(path.name)
        if own is None:
            return {"train": path}
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


def _header(path: Path) -> dict[str, str]:
    """The ``@key value`` lines before ``@data``, keys in lower case."""
    out = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("@"):
                break
            key, _, value = line[1:].partition(" ")
            if key.lower() == "data":
                break
            out[key.lower()] = value.strip()
    return out


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """Series (N×C×L float32), their labels as text, and whether they are regression targets."""
    try:
        from sktime.datasets import load_from_tsfile
    except ImportError as e:
        raise UserError(
            f"{path}: reading .ts files needs sktime, which is not installed ({e}): {EXTRA}, "
            "or save the series as .npz (x_train N×C×L)."
        ) from None
    check_decoded_size(path.stat().st_size * 2, path, "the series")
    head = _header(path)
    if head.get("equallength", "true").lower() == "false":
        raise UserError(
            f"{path}: its series have different lengths (@equalLength false): scinas needs "
            "series of one length. Resample, crop or pad them to one length and save them as "
            ".npz (x_train N×C×L)."
        )
    regression = head.get("targetlabel", "false").lower().startswith("true")
    if not regression and not head.get("classlabel", "").lower().startswith("true"):
        raise UserError(
            f"{path}: no @classLabel true ... or @targetLabel true line in its header: scinas "
            "needs each series' class or target (the last field of a data line)."
        )
    try:
        with torch_threads_kept():  # sktime sets torch's threads to every core
            x, y = load_from_tsfile(str(path), return_data_type="numpy3d")
    except Exception as e:  # sktime's parser raises ValueError, TypeError, IOError...
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        hint = (
            "its series have different lengths: scinas needs one length"
            if "same shape" in first
            else f"sktime cannot read it: {first}"
        )
        raise UserError(f"{path}: not a .ts series file scinas can use ({hint}).") from None
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or len(x) == 0:
        raise UserError(f"{path}: no series in it.")
    y = np.asarray(y).astype(str)
    declared = {c.lower(): c for c in head.get("classlabel", "").split()[1:]}
    if not regression and declared and all(v.lower() in declared for v in y):
        y = np.array([declared[v.lower()] for v in y])  # sktime lower-cases the labels it reads
    return x.astype(np.float32), y, regression


def _class_order(labels: np.ndarray) -> np.ndarray:
    """The distinct labels sorted numerically when every one is a number, else as text."""
    distinct = np.unique(labels)
    try:
        return distinct[np.argsort(distinct.astype(np.float64), kind="stable")]
    except ValueError:
        return distinct


@register_reader("ts")
class TsReader(Reader):
    description = ".ts series (sktime/UEA format: NAME_TRAIN.ts and NAME_TEST.ts, or one file)"

    def recognises(self, path: Path) -> bool:
        try:
            return bool(_files(path))
        except OSError:
            return False

    def read(self, path: Path, options: ReadOptions) -> RawData:
        files = _files(path)
        if "train" not in files:
            name = _SPLIT.match(files["test"].name)["name"]
            raise UserError(
                f"{files['test']} is a test split without its training split: put "
                f"{name}_TRAIN.ts next to it, and give either file or their folder."
            )
        arrays, labels, ys, kinds = {}, {}, {}, {}
        for split, file in files.items():
            arrays[f"x_{split}"], ys[split], kinds[split] = _load(file)
            labels[f"x_{split}"] = labels[f"y_{split}"] = str(file)
        if len(set(kinds.values())) > 1:
            raise UserError(
                f"{files['test']} and {files['train']}: one holds class labels, the other "
                "regression targets."
            )
        if "x_test" in arrays and arrays["x_test"].shape[1:] != arrays["x_train"].shape[1:]:
            raise UserError(
                f"{files['test']}: its series are {'×'.join(map(str, arrays['x_test'].shape[1:]))}"
                f" (channels×steps), those of {files['train']} "
                f"{'×'.join(map(str, arrays['x_train'].shape[1:]))}: the splits must agree."
            )
        regression = kinds["train"]
        class_names = None
        if regression:
            for split, y in ys.items():
                try:
                    arrays[f"y_{split}"] = y.astype(np.float64).astype(np.float32)
                except ValueError:
                    raise UserError(f"{files[split]}: its targets are not all numbers.") from None
            what = "regression targets"
        else:
            classes = _class_order(ys["train"])
            if "test" in ys and (unseen := np.setdiff1d(ys["test"], classes)).size:
                raise UserError(
                    f"{files['test']}: class label(s) {shown(list(unseen))} never appear in "
                    f"{files['train']}."
                )
            index = {c: i for i, c in enumerate(classes)}
            for split, y in ys.items():
                arrays[f"y_{split}"] = np.array([index[v] for v in y], dtype=np.int64)
            class_names = tuple(str(c) for c in classes)
            what = f"{len(classes)} class labels ({shown(list(class_names))})"
        x = arrays["x_train"]
        notes = [
            f"read the .ts series {', '.join(str(p) for p in files.values())} with sktime: "
            f"{x.shape[1]} channel(s) of {x.shape[2]} steps, {what}"
        ]
        name = _SPLIT.match(files["train"].name)
        return RawData(
            name=name["name"] if name else files["train"].stem,
            arrays=arrays,
            labels=labels,
            layout="ncl",
            class_names=class_names,
            notes=notes,
        )

    def example(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for split, n in (("TRAIN", 24), ("TEST", 12)):
            lines = [
                "@problemName Toy",
                "@timeStamps false",
                "@missing false",
                "@univariate false",
                "@dimensions 2",
                "@equalLength true",
                "@seriesLength 30",
                "@classLabel true slow fast",
                "@data",
            ]
            for i in range(n):
                label = ("slow", "fast")[i % 2]
                t = np.linspace(0, 3 * (2 + 3 * (i % 2)), 30)
                channels = [np.sin(t), np.cos(t)] + 0.1 * rng.normal(size=(2, 30))
                lines.append(
                    ":".join(",".join(f"{v:.5f}" for v in c) for c in channels) + ":" + label
                )
            (folder / f"Toy_{split}.ts").write_text("\n".join(lines) + "\n")
        return folder / "Toy_TRAIN.ts"
