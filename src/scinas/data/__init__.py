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
from pathlib import Path

import numpy as np

# The format modules register their readers on import, and readers are asked in that order: e.g.
# feature tables before image tables, which take every other table.  Imported before any other
# scinas.data module, which may import some of them.
# isort: off
from scinas.data import npz, cifar, idx, class_folders, ucr, ts, feature_table, image_csv  # noqa: E402, F401
# isort: on

from scinas.data.assemble import assemble
from scinas.data.dataset import LAYOUTS, MIN_SIDE, Dataset, Split  # noqa: F401
from scinas.data.formats import READERS, RawData, ReadOptions, note_ignored, read_path
from scinas.data.images import FITS, parse_image_size
from scinas.data.named import DATASETS, NAMED_DATASETS, default_data_dir, find_dataset
from scinas.data.split import stratified_split
from scinas.errors import UserError, unknown
from scinas.tasks import TASKS, multilabel_strata
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
    return assemble(raw, task, layout, val_fraction, test_fraction, int(seed))


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
