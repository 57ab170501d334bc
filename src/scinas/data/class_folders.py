"""Folders with one subfolder of images per class, optionally inside ``train/``, ``val/`` and
``test/`` folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from scinas.data.formats import RawData, Reader, ReadOptions, register_reader, shown
from scinas.data.idx import find_idx_files
from scinas.data.images import IMAGE_SUFFIXES, load_images, size_note
from scinas.data.tables import SPLIT_NAMES, TABLE_SUFFIXES
from scinas.errors import UserError
from scinas.userpaths import path_error

__all__ = ["ClassFoldersReader", "has_class_subfolders", "read_class_folders"]


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise path_error(folder, e, "folder") from None


def _visible_dirs(folder: Path) -> list[Path]:
    entries = _listing(folder)
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
    for entry in _listing(folder):
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
    splits = [s for s in subs if s.name.lower() in SPLIT_NAMES]
    if splits:
        others = [s.name for s in subs if s.name.lower() not in SPLIT_NAMES]
        if others:
            raise UserError(
                f"{directory} mixes split folders ({', '.join(s.name for s in splits)}) with "
                f"other folders ({shown(others)}): put the class folders inside train/ (and "
                "val/, test/), or rename the split folders if they are classes."
            )
        roots: dict[str, Path] = {}
        for s in splits:
            key = SPLIT_NAMES[s.name.lower()]
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
    raw.notes += notes + size_note(image_size, fit)
    return raw


@register_reader("class-folders")
class ClassFoldersReader(Reader):
    """A folder of class subfolders.

    A folder whose subfolders hold idx files is not claimed: the idx reader's message points at
    them (the usual slip is passing the parent of the idx folder).
    """

    description = "folders of class subfolders of images"
    uses = ("image_size",)

    def recognises(self, path: Path) -> bool:
        if not path.is_dir() or not has_class_subfolders(path):
            return False
        subs = sorted(p for p in path.iterdir() if p.is_dir())[:50]
        return not any("x_train" in find_idx_files(p) for p in subs)

    def read(self, path: Path, options: ReadOptions) -> RawData:
        return read_class_folders(path, image_size=options.image_size, fit=options.fit)

    def explain(self, path: Path) -> str | None:
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            return (
                f"{path} is a single image: pass the folder that holds one subfolder of images "
                "per class, or a CSV that lists the image files with their targets."
            )
        return None

    def example(self, folder: Path) -> Path:
        root = folder / "classes"
        for c, name in enumerate(("cat", "dog")):
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in range(6):
                pixels = np.full((7, 5), 40 * c + 10 * i, dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / f"{i}.png")
        return root
