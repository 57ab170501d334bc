"""Data formats as a registry: each format is a :class:`Reader` that recognises its input.

`scinas.data.load_dataset` asks the readers in :data:`READERS` order which one recognises a path
and lets that one read it, so a new format is one module with one registered reader (imported
in ``scinas/data/__init__.py``, whose import order is the order readers are asked in).  Every
reader returns plain numpy arrays in a :class:`RawData` (no torch, no splitting, no
normalisation); `load_dataset` validates and assembles them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from scinas.errors import UserError
from scinas.registry import Registry

__all__ = [
    "READERS",
    "SPLITS",
    "RawData",
    "ReadOptions",
    "Reader",
    "find_reader",
    "formats_text",
    "note_ignored",
    "read_path",
    "register_reader",
    "shown",
]

SPLITS = ("train", "val", "test")
_SHOW = 5  # how many offending names an error message lists


def shown(items: Sequence[str], n: int = _SHOW) -> str:
    """The first ``n`` of ``items`` for a message, with ``...`` when there are more."""
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


@dataclass
class RawData:
    """Arrays read from one source, before validation.

    Attributes:
        name: Dataset name shown to the user.
        arrays: ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``/``x_test``/``y_test``.
        labels: How to call each array in messages (e.g. the idx file it came from).
        layout: ``"nchw"``/``"nhwc"`` when the source fixes the layout of 4-D images, ``"nhw"``
            when its 3-D arrays are images, a series layout when they are series, else None.
        class_names: Names of the classes, when the source provides them.
        notes: Human-readable facts collected while reading.
    """

    name: str
    arrays: dict[str, np.ndarray]
    labels: dict[str, str] = field(default_factory=dict)
    layout: str | None = None
    class_names: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)

    def label(self, key: str) -> str:
        """Return the display name of array ``key``."""
        return self.labels.get(key, key)


@dataclass(frozen=True)
class ReadOptions:
    """The reading options of `load_dataset`; each reader uses those in its ``uses``.

    Attributes:
        target_columns: Tables only: the target columns (None: the reader's default).
        image_size: Image files only: ``(H, W)`` to bring every image to.
        fit: How images are brought to ``image_size``: ``"resize"`` or ``"center_crop"``.
    """

    target_columns: Sequence[str] | None = None
    image_size: tuple[int, int] | None = None
    fit: str = "resize"


class Reader(ABC):
    """One data format: recognise an input cheaply, then read it.

    ``recognises`` must not raise for inputs of other formats; ``read`` raises a UserError that
    names the file for any problem with it.
    """

    #: The format in the list of formats of messages, e.g. ``".npz" files (x_train, ...)``.
    description: ClassVar[str]
    #: Options of :class:`ReadOptions` the format uses: ``"target_columns"``, ``"image_size"``
    #: (which includes ``fit``).  Others that are set are noted as ignored, not refused, so a
    #: config written for one format still runs on the same data in another.
    uses: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def recognises(self, path: Path) -> bool:
        """Whether ``path`` (an existing file or folder) is in this format."""

    @abstractmethod
    def read(self, path: Path, options: ReadOptions) -> RawData:
        """Read ``path``, which :meth:`recognises` accepted."""

    def explain(self, path: Path) -> str | None:
        """A message for an input no reader recognises that looks like part of this format.

        E.g. a single idx file instead of its folder: the message says what to pass instead.
        """
        return None

    @abstractmethod
    def example(self, folder: Path) -> Path:
        """Write a tiny valid input of this format under ``folder`` and return its path.

        Tests read every registered reader's example, so a new format is tested without
        editing a test list.
        """


#: Readers by name, asked in this order.
READERS: Registry[Reader] = Registry("data format")

R = TypeVar("R", bound=type[Reader])


def register_reader(name: str) -> Callable[[R], R]:
    """``@register_reader("npz")`` registers an instance of the decorated Reader class."""

    def register(cls: R) -> R:
        READERS.register(name, cls())
        return cls

    return register


def find_reader(path: Path) -> str | None:
    """The name of the first reader in :data:`READERS` that recognises ``path``, or None."""
    return next((name for name in READERS if READERS.get(name).recognises(path)), None)


def formats_text() -> str:
    """The registered formats as one phrase, for messages."""
    parts = [READERS.get(name).description for name in READERS]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def read_path(path: Path, options: ReadOptions) -> RawData:
    """Read an existing file or folder with the first reader that recognises it.

    Raises:
        UserError: If no reader recognises it: a reader's explanation when one has one (a
            single idx file, a single image, ...), else the list of formats.
    """
    name = find_reader(path)
    if name is None:
        for other in READERS:
            hint = READERS.get(other).explain(path)
            if hint:
                raise UserError(hint)
        raise UserError(
            f"unsupported data {'folder' if path.is_dir() else 'file'} {path}: scinas reads "
            f"{formats_text()}. Convert it with numpy.savez(path, x_train=..., y_train=...)."
        )
    reader = READERS.get(name)
    return note_ignored(reader.read(path, options), options, reader.uses)


def note_ignored(raw: RawData, options: ReadOptions, uses: Sequence[str]) -> RawData:
    """Note the options that do not apply to this source, rather than fail on them.

    A config that sets them for a CSV can then be reused on a .npz of the same data.
    """
    if options.target_columns is not None and "target_columns" not in uses:
        raw.notes.append("target_columns ignored: it applies to CSV tables only")
    if options.image_size is not None and "image_size" not in uses:
        raw.notes.append("image_size/fit ignored: they apply to image files only")
    return raw
