"""Readers for the on-disk formats scinas accepts: ``.npz``, MNIST-style idx and CIFAR-10 binary.

Every reader returns plain numpy arrays in a :class:`RawData` (no torch, no splitting, no
normalisation); :func:`scinas.data.load_dataset` validates and assembles them.  Every problem
with a file is raised as a :class:`~scinas.errors.UserError` that names the file.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scinas.errors import UserError

__all__ = [
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "IDX_DTYPES",
    "IMAGE_SUFFIXES",
    "RawData",
    "detect_layout",
    "find_idx_files",
    "is_idx_name",
    "read_cifar_binary",
    "read_cifar_dir",
    "read_idx",
    "read_idx_dir",
    "read_npz",
    "to_nchw",
]

SPLITS = ("train", "val", "test")

#: idx type code -> dtype; the format stores every multi-byte value big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 3072 pixel bytes in CHW order

_IDX_NAME = re.compile(
    r"^(train|t10k|test)-(images|labels)[-.]idx(\d)-ubyte(\.gz)?$", re.IGNORECASE
)
#: File names (lower case) that count as images when scanning folders.
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm",
    ".pnm",
)  # fmt: skip
_NPZ_HELP = (
    "Save it with numpy.savez(path, x_train=..., y_train=...) (optionally also x_val, y_val, "
    "x_test, y_test)."
)


@dataclass
class RawData:
    """Arrays read from one source, before validation.

    Attributes:
        name: Dataset name shown to the user.
        arrays: ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``/``x_test``/``y_test``.
        labels: How to call each array in messages (e.g. the idx file it came from).
        layout: ``"nchw"``/``"nhwc"`` when the source fixes the layout of 4-D images, else None.
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


# --------------------------------------------------------------------------------------- layouts


def detect_layout(shape: tuple[int, ...]) -> str:
    """Guess whether a 4-D image array of ``shape`` is NCHW or NHWC.

    Args:
        shape: ``(N, s1, s2, s3)``.

    Returns:
        ``"nchw"`` or ``"nhwc"``.

    Raises:
        UserError: If all three trailing sizes are equal, so the shape cannot tell.
    """
    _, s1, s2, s3 = shape
    if s2 == s3 and s1 != s2:
        return "nchw"
    if s1 == s2 and s3 != s1:
        return "nhwc"
    # Non-square images: channels are usually the smaller axis.
    if s1 < s3:
        return "nchw"
    if s3 < s1:
        return "nhwc"
    raise UserError(
        f"cannot tell the image layout from shape {tuple(shape)}: all three trailing sizes are "
        "equal. Pass --layout nhwc or --layout nchw (layout='nhwc'|'nchw' in Python)."
    )


def to_nchw(x: np.ndarray, layout: str, what: str) -> tuple[np.ndarray, str]:
    """Bring an image array to (N, C, H, W).

    Args:
        x: N×H×W (one channel) or a 4-D array.
        layout: ``"auto"``, ``"nhwc"`` or ``"nchw"``; only used for 4-D arrays.
        what: Name of the array for messages.

    Returns:
        The (N, C, H, W) array (a view where possible) and the layout used
        (``"nhw"`` for 3-D input).

    Raises:
        UserError: If the array is not 3-D or 4-D, or a 4-D layout is ambiguous.
    """
    if x.ndim == 3:
        return x[:, None, :, :], "nhw"
    if x.ndim != 4:
        raise UserError(
            f"{what} has shape {tuple(x.shape)} ({x.ndim}-D); images must be 3-D N×H×W "
            "(one channel) or 4-D NHWC / NCHW, and feature vectors 2-D N×F."
        )
    used = detect_layout(x.shape) if layout == "auto" else layout
    if used == "nhwc":
        x = x.transpose(0, 3, 1, 2)
    return x, used


# ------------------------------------------------------------------------------------------- npz


def read_npz(path: str | os.PathLike) -> RawData:
    """Read a ``.npz`` file with ``x_train``, ``y_train`` and optional val/test arrays.

    Other keys are ignored, except a 1-D string array ``class_names``, which is used for the
    class names.  Pickled (object) arrays are refused: ``allow_pickle`` stays off.

    Args:
        path: The ``.npz`` file.

    Returns:
        The arrays, unvalidated apart from the key checks.

    Raises:
        UserError: If the file is missing or unreadable, or keys are missing or unpaired.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}. Check the path (or pass a named dataset).")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"could not read {path} as a .npz file ({e}). {_NPZ_HELP}") from e
    if not hasattr(npz, "files"):  # a plain .npy array renamed to .npz
        raise UserError(
            f"{path} holds a single array, not a .npz archive of named arrays. {_NPZ_HELP}"
        )
    with npz:
        keys = list(npz.files)
        for key in ("x_train", "y_train"):
            if key not in keys:
                raise UserError(
                    f"{path} has no '{key}' array (it has: {', '.join(keys) or 'nothing'}). "
                    f"{_NPZ_HELP}"
                )
        for split in ("val", "test"):
            xk, yk = f"x_{split}", f"y_{split}"
            if (xk in keys) != (yk in keys):
                have, miss = (xk, yk) if xk in keys else (yk, xk)
                raise UserError(
                    f"{path} has '{have}' but no '{miss}': give both arrays of the {split} split "
                    "or neither (then it is carved out of the train split)."
                )
        wanted = [f"{p}_{s}" for s in SPLITS for p in ("x", "y") if f"{p}_{s}" in keys]
        arrays = {key: _npz_array(npz, key, path) for key in wanted}
        class_names = None
        if "class_names" in keys:
            names = _npz_array(npz, "class_names", path)
            if names.ndim == 1 and names.dtype.kind in "US":
                class_names = tuple(str(n) for n in names.tolist())
        ignored = [k for k in keys if k not in wanted and k != "class_names"]

    raw = RawData(name=path.stem, arrays=arrays, class_names=class_names)
    raw.notes.append(f"read {path} (arrays: {', '.join(wanted)})")
    if ignored:
        raw.notes.append(f"ignored other arrays in the file: {', '.join(ignored)}")
    return raw


def _npz_array(npz, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as e:
        # allow_pickle=False refuses object arrays; say so rather than numpy's generic text.
        raise UserError(
            f"'{key}' in {path} is an object (pickled) array, which scinas does not load for "
            f"safety ({e}). Save it as a numeric array."
        ) from e
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"could not read '{key}' from {path}: the file looks corrupt ({e}).") from e


# ------------------------------------------------------------------------------------------- idx


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise UserError(f"file not found: {path}") from e
    except OSError as e:
        raise UserError(f"could not read {path}: {e}") from e
    if data[:2] == b"\x1f\x8b":  # gzip magic; trust the content, not the file suffix
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(
                f"{path} is a damaged gzip file ({e}); download it again or gunzip a good copy."
            ) from e
    return data


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (see :data:`IDX_DTYPES`), the number of dimensions
    and one big-endian uint32 per dimension; the data follows, big-endian, row-major.

    Args:
        path: The ``.idx*-ubyte`` or ``.idx*-ubyte.gz`` file.

    Returns:
        A writable array in native byte order with the shape the header gives.

    Raises:
        UserError: Naming the file, if it is missing, not idx, truncated or too long.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(
            f"{path} is not an idx file: bad magic number (expected two zero bytes, a type code "
            "and the number of dimensions)."
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise UserError(
            f"{path} has unknown idx type code 0x{code:02X} (known: "
            f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)})."
        )
    if ndim == 0:
        raise UserError(f"{path} is not a usable idx file: it declares 0 dimensions.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated: the file ends inside its header.")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = count * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise UserError(
            f"{path} is truncated: its header declares shape {dims} ({expected} bytes of data) "
            f"but only {actual} bytes follow. Download the file again."
        )
    if actual > expected:
        raise UserError(
            f"{path} has {actual - expected} bytes more than its header's shape {dims} allows; "
            "it is not a valid idx file."
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    # astype copies: the result is writable (torch warns on read-only buffers) and native-endian.
    return arr.astype(dtype.newbyteorder("="))


def is_idx_name(name: str) -> bool:
    """Whether ``name`` is an MNIST-style idx file name (e.g. ``t10k-labels-idx1-ubyte.gz``)."""
    return _IDX_NAME.match(name) is not None


def find_idx_files(directory: str | os.PathLike) -> dict[str, Path]:
    """Find MNIST-style idx files in ``directory``.

    Accepted names: ``{train,t10k,test}-{images,labels}{-,.}idx<N>-ubyte[.gz]``.

    Args:
        directory: Folder to look in (not recursive).

    Returns:
        A mapping from ``x_train``/``y_train``/``x_test``/``y_test`` to the files found.  When a
        part exists in several forms, ``t10k`` beats ``test`` and uncompressed beats ``.gz``.
    """
    directory = Path(directory)
    found: dict[str, tuple[tuple[int, int, str], Path]] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return {}
    for entry in entries:
        m = _IDX_NAME.match(entry.name)
        if not m or not entry.is_file():
            continue
        split, kind, _, gz = (g.lower() if g else g for g in m.groups())
        key = ("x_" if kind == "images" else "y_") + ("train" if split == "train" else "test")
        rank = (int(split == "test"), int(bool(gz)), entry.name)
        if key not in found or rank < found[key][0]:
            found[key] = (rank, entry)
    return {k: v[1] for k, v in found.items()}


def read_idx_dir(directory: str | os.PathLike, name: str | None = None) -> RawData:
    """Read a folder of MNIST-style idx files (train required, test optional).

    Args:
        directory: Folder holding the idx files.
        name: Dataset name; defaults to the folder name.

    Returns:
        The train (and test, if present) arrays.

    Raises:
        UserError: If the train files are missing, a test file lacks its partner, or a file is bad.
    """
    directory = Path(directory)
    files = find_idx_files(directory)
    missing = [k for k in ("x_train", "y_train") if k not in files]
    if missing:
        try:
            present = sorted(p.name for p in directory.iterdir())
        except OSError:
            present = []
        shown = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "")
        hint = ""
        images = [p for p in present if p.lower().endswith(IMAGE_SUFFIXES)]
        if any(p.endswith(".npz") for p in present):
            hint = " It has .npz files: pass one of them as the data path instead."
        elif any(p.lower().endswith((".csv", ".tsv")) for p in present):
            hint = " It has a CSV file: if it lists image files, pass the CSV as the data path."
        elif images:
            hint = (
                f" It holds {len(images)} image file(s) directly: put them in one subfolder per "
                "class (e.g. cats/001.png, dogs/002.png), or list them with their labels in a CSV "
                "(file,label) and pass the CSV."
            )
        elif any(p.startswith("data_batch_") for p in present):
            hint = (
                f" It looks like CIFAR-10 binary: use data 'cifar10' with --data-dir {directory}."
            )
        else:
            subs = [p for p in present[:50] if "x_train" in find_idx_files(directory / p)]
            if subs:
                hint = (
                    f" Its subfolder(s) {', '.join(subs)} hold idx files: pass one of them, or a "
                    f"named dataset with --data-dir {directory}."
                )
        raise UserError(
            f"{directory} is not an idx dataset folder: it needs train-images-idx3-ubyte[.gz] and "
            f"train-labels-idx1-ubyte[.gz] (t10k-/test- files optional); nor is it a folder of "
            f"class subfolders of images. It contains: {shown or 'nothing'}.{hint}"
        )
    if ("x_test" in files) != ("y_test" in files):
        have = "images" if "x_test" in files else "labels"
        raise UserError(
            f"{directory} has test {have} ({files.get('x_test') or files.get('y_test')}) but not "
            "the matching test file; add it or remove this one."
        )
    arrays = {key: read_idx(path) for key, path in files.items()}
    labels = {key: f"{path.name} ({key})" for key, path in files.items()}
    raw = RawData(name=name or directory.name, arrays=arrays, labels=labels)
    raw.notes.append(
        f"read idx files from {directory}: {', '.join(p.name for p in files.values())}"
    )
    return raw


# ------------------------------------------------------------------------------- CIFAR-10 binary


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
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError as e:
        raise UserError(f"file not found: {path}") from e
    except OSError as e:
        raise UserError(f"could not read {path}: {e}") from e
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
