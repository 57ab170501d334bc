"""The official CIFAR-10 *binary* folder (``cifar-10-batches-bin``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scinas.data.formats import RawData, Reader, ReadOptions, register_reader
from scinas.errors import UserError
from scinas.userpaths import check_regular_file, path_error

__all__ = [
    "CIFAR10_CLASS_NAMES",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "CifarReader",
    "has_cifar_files",
    "read_cifar_binary",
    "read_cifar_dir",
]

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 3072 pixel bytes in CHW order
CIFAR10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def read_cifar_binary(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 *binary* batch (``data_batch_<i>.bin`` or ``test_batch.bin``).

    Each record is one label byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024
    blue; rows of 32).

    Args:
        path: The batch file.

    Returns:
        ``(x, y)``: x of shape (N, 3, 32, 32) uint8 and y of shape (N,) int64.

    Raises:
        UserError: If the file is missing, has a size that is not a whole number of records, or
            holds a label outside 0..9.
    """
    path = Path(path)
    check_regular_file(path, "CIFAR-10 batch")  # a FIFO or a device is never opened
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise path_error(path, e, "CIFAR-10 batch") from None
    if data.size == 0 or data.size % _CIFAR_RECORD:
        raise UserError(
            f"{path} is not a CIFAR-10 binary batch: its size ({data.size} bytes) is not a "
            f"positive multiple of {_CIFAR_RECORD} (1 label byte + 3072 pixels). The file may be "
            "truncated: download it again."
        )
    records = data.reshape(-1, _CIFAR_RECORD)
    y = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(y > 9)
    if bad.size:
        raise UserError(
            f"{path} has label {int(y[bad[0]])} at record {int(bad[0])} ({bad.size} records with "
            "labels above 9); is this a CIFAR-100 file? Only CIFAR-10 binary is supported."
        )
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), y


def read_cifar_dir(directory: str | os.PathLike, name: str = "cifar10") -> RawData:
    """Read the official CIFAR-10 binary folder (``cifar-10-batches-bin``).

    Args:
        directory: Folder with ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``.
        name: Dataset name.

    Returns:
        Train (batches 1-5 in order) and test arrays, already NCHW.
    """
    directory = Path(directory)
    parts = [read_cifar_binary(directory / f) for f in CIFAR10_TRAIN_FILES]
    x_test, y_test = read_cifar_binary(directory / CIFAR10_TEST_FILE)
    arrays = {
        "x_train": np.concatenate([p[0] for p in parts]),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test,
        "y_test": y_test,
    }
    raw = RawData(name=name, arrays=arrays, layout="nchw")
    raw.notes.append(f"read CIFAR-10 binary batches from {directory}")
    return raw


def has_cifar_files(folder: Path) -> bool:
    """Whether ``folder`` holds all five CIFAR-10 training batches and the test batch."""
    return all((folder / f).is_file() for f in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE))


@register_reader("cifar10-binary")
class CifarReader(Reader):
    """A folder with the six CIFAR-10 binary batches (the data ``cifar10`` downloads)."""

    description = "folders of CIFAR-10 binary batches (data_batch_1.bin, ...)"

    def recognises(self, path: Path) -> bool:
        return path.is_dir() and has_cifar_files(path)

    def read(self, path: Path, options: ReadOptions) -> RawData:
        raw = read_cifar_dir(path, name=path.name)
        raw.class_names = CIFAR10_CLASS_NAMES
        return raw

    def explain(self, path: Path) -> str | None:
        if not path.is_dir() or not any(path.glob("data_batch_*")):
            return None
        missing = [f for f in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE) if not (path / f).is_file()]
        return (
            f"{path} looks like a CIFAR-10 binary folder but lacks {', '.join(missing)}: it "
            f"needs {', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE}. Put the missing "
            "batches there, or use data 'cifar10', which downloads them."
        )

    def example(self, folder: Path) -> Path:
        root = folder / "cifar-10-batches-bin"
        root.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate((*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)):
            y = (np.arange(4) + i) % 10
            x = (np.arange(4 * 3072).reshape(4, 3072) * (i + 1) % 256).astype(np.uint8)
            (root / name).write_bytes(np.concatenate([y.astype(np.uint8)[:, None], x], 1).tobytes())
        return root
