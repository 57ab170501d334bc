"""Folders of MNIST-style idx files (``train-images-idx3-ubyte[.gz]`` and friends)."""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from scinas.data.formats import RawData, Reader, ReadOptions, register_reader
from scinas.data.images import IMAGE_SUFFIXES
from scinas.data.limits import CHUNK, MAX_DEFLATE_RATIO, check_decoded_size, size_text
from scinas.errors import UserError
from scinas.userpaths import check_regular_file, path_error

__all__ = ["IDX_DTYPES", "IdxReader", "find_idx_files", "is_idx_name", "read_idx", "read_idx_dir"]

#: idx type code -> dtype; the format stores every multi-byte value big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_IDX_NAME = re.compile(
    r"^(train|t10k|test)-(images|labels)[-.]idx(\d)-ubyte(\.gz)?$", re.IGNORECASE
)
#: File names (lower case) that count as images when scanning folders.


_MAX_HEADER = 4 + 4 * 255  # magic, type code, ndim and up to 255 uint32 sizes


def _header(data: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """The dtype, the shape and the header length of idx ``data`` (its first bytes suffice)."""
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
    return IDX_DTYPES[code], dims, header


def _declared_total(head: bytes, path: Path, compressed: int) -> int:
    """The total size the idx header at the start of ``head`` declares, refused when no gzip
    stream of ``compressed`` bytes inflates to it or when it exceeds the memory available."""
    dtype, dims, header = _header(head, path)
    total = header + math.prod(dims) * dtype.itemsize
    if total > MAX_DEFLATE_RATIO * compressed + (1 << 20):
        raise UserError(
            f"{path} has a corrupt header: it declares shape {dims} of {dtype.name} "
            f"({size_text(total)} once decompressed), but a gzip file of {size_text(compressed)} "
            f"cannot inflate to more than {size_text(MAX_DEFLATE_RATIO * compressed)}. "
            "Download the file again."
        )
    check_decoded_size(total, path, f"the idx data (shape {dims} of {dtype.name})")
    return total


def _gunzip(f, path: Path, compressed: int) -> bytes:
    """Inflate the gzip stream ``f`` in bounded chunks, never past what its idx header declares
    (plus one byte, to tell a file that is too long), and only once that size is known to be
    possible for this stream and to fit in memory."""
    limit = _MAX_HEADER  # until the header is read
    checked = False
    out = bytearray()
    d = zlib.decompressobj(wbits=31)
    pending = b""
    try:
        while len(out) <= limit:
            if not pending:
                pending = f.read(CHUNK)
                if not pending:
                    if not d.eof:
                        raise EOFError("the compressed stream ends before its end marker")
                    break
            if d.eof:  # another gzip member follows (as gzip.decompress accepts), or padding
                if not pending.strip(b"\0"):
                    pending = b""
                    continue
                d = zlib.decompressobj(wbits=31)
            out += d.decompress(pending, limit + 1 - len(out))
            pending = d.unconsumed_tail or d.unused_data
            if not checked and len(out) >= _MAX_HEADER:
                checked, limit = True, _declared_total(bytes(out[:_MAX_HEADER]), path, compressed)
    except (zlib.error, EOFError) as e:
        raise UserError(
            f"{path} is a damaged gzip file ({e}); download it again or gunzip a good copy."
        ) from None
    if not checked:
        _declared_total(bytes(out), path, compressed)
    return bytes(out)


def _read_idx_bytes(path: Path) -> tuple[bytes, bool]:
    """The idx bytes of ``path``, inflated when it is gzip (by content, not by suffix), and
    whether they are the whole file (a gzip stream stops one byte past its declared size)."""
    check_regular_file(path, "idx file")
    try:
        with path.open("rb") as f:
            if f.read(2) == b"\x1f\x8b":  # gzip magic
                f.seek(0)
                return _gunzip(f, path, os.fstat(f.fileno()).st_size), False
            f.seek(0)
            return f.read(), True
    except OSError as e:
        raise path_error(path, e, "idx file") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (see :data:`IDX_DTYPES`), the number of dimensions
    and one big-endian uint32 per dimension; the data follows, big-endian, row-major.  A gzip
    file is inflated in bounded chunks, and no further than its header's shape allows.

    Args:
        path: The ``.idx*-ubyte`` or ``.idx*-ubyte.gz`` file.

    Returns:
        A writable array in native byte order with the shape the header gives.

    Raises:
        UserError: Naming the file, if it is missing, not idx, truncated, too long, or would
            decompress to more than memory holds.
    """
    path = Path(path)
    data, whole = _read_idx_bytes(path)
    dtype, dims, header = _header(data, path)
    count = math.prod(dims)  # Python ints: a corrupt header cannot overflow them
    expected = count * dtype.itemsize
    actual = len(data) - header
    if expected > 2 * actual + (1 << 20):
        raise UserError(
            f"{path} has a corrupt header: it declares shape {dims} of {dtype.name} "
            f"({count:,} values, {expected:,} bytes) but the file holds {actual:,} bytes of "
            "data. Download the file again."
        )
    if actual < expected:
        raise UserError(
            f"{path} is truncated: its header declares shape {dims} ({expected} bytes of data) "
            f"but only {actual} bytes follow. Download the file again."
        )
    if actual > expected:
        raise UserError(
            f"{path} has {f'{actual - expected} bytes' if whole else 'bytes'} more than its "
            f"header's shape {dims} allows; it is not a valid idx file."
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
        if not m or entry.is_dir():  # a FIFO or a broken link is kept: reading it says why
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
    if "x_train" not in files or "y_train" not in files:
        raise UserError(_not_idx_folder(directory))
    if ("x_test" in files) != ("y_test" in files):
        have = "images" if "x_test" in files else "labels"
        raise UserError(
            f"{directory} has test {have} ({files.get('x_test') or files.get('y_test')}) but not "
            "the matching test file; add it or remove this one."
        )
    arrays = {key: read_idx(path) for key, path in files.items()}
    labels = {key: f"{path.name} ({key})" for key, path in files.items()}
    # idx files hold images: a 3-D array is N×H×W, never series
    layout = "nhw" if arrays["x_train"].ndim == 3 else None
    raw = RawData(name=name or directory.name, arrays=arrays, labels=labels, layout=layout)
    raw.notes.append(
        f"read idx files from {directory}: {', '.join(p.name for p in files.values())}"
    )
    return raw


def _not_idx_folder(directory: Path) -> str:
    """Why ``directory`` is not an idx folder, with a hint from what it holds.

    This is also the message for a folder no reader recognises, so it names the other folder
    formats too.
    """
    try:
        present = sorted(p.name for p in directory.iterdir())
    except OSError:
        present = []
    listed = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "")
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
    else:
        subs = [p for p in present[:50] if "x_train" in find_idx_files(directory / p)]
        if subs:
            hint = (
                f" Its subfolder(s) {', '.join(subs)} hold idx files: pass one of them, or a "
                f"named dataset with --data-dir {directory}."
            )
    return (
        f"{directory} is not an idx dataset folder: it needs train-images-idx3-ubyte[.gz] and "
        f"train-labels-idx1-ubyte[.gz] (t10k-/test- files optional); nor is it a folder of "
        f"class subfolders of images. It contains: {listed or 'nothing'}.{hint}"
    )


@register_reader("idx")
class IdxReader(Reader):
    """A folder with idx files; it also explains the folders no reader recognises."""

    description = "folders of MNIST-style idx files"

    def recognises(self, path: Path) -> bool:
        return path.is_dir() and bool(find_idx_files(path))

    def read(self, path: Path, options: ReadOptions) -> RawData:
        return read_idx_dir(path)

    def explain(self, path: Path) -> str | None:
        if path.is_dir():
            return _not_idx_folder(path)
        if is_idx_name(path.name):
            return (
                f"{path} is a single idx file: pass the folder that holds the train-/t10k- idx "
                f"files ({path.parent}) instead."
            )
        return None

    def example(self, folder: Path) -> Path:
        root = folder / "idx"
        root.mkdir(parents=True, exist_ok=True)
        x = (np.arange(20 * 6 * 5).reshape(20, 6, 5) % 256).astype(np.uint8)
        y = (np.arange(20) % 4).astype(np.uint8)
        parts = {"train": (x[:16], y[:16]), "t10k": (x[16:], y[16:])}
        for split, (images, labels) in parts.items():
            for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
                header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
                data = gzip.compress(header + arr.tobytes())
                (root / f"{split}-{kind}-ubyte.gz").write_bytes(data)
        return root
