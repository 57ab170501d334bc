""".npz files of named arrays: ``x_train``, ``y_train`` and optional val/test splits."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from scinas.data.formats import SPLITS, RawData, Reader, ReadOptions, register_reader
from scinas.data.limits import MAX_DEFLATE_RATIO, check_decoded_size, size_text
from scinas.errors import UserError
from scinas.userpaths import check_regular_file, path_error, stat_user_path

__all__ = ["NpzReader", "read_npz"]

# what a damaged or foreign file raises from np.load (zip directory, compression, npy header)
_DAMAGED = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)
_NPZ_HELP = (
    "Save it with numpy.savez(path, x_train=..., y_train=...) (optionally also x_val, y_val, "
    "x_test, y_test)."
)


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
    if stat_user_path(path, "data file") is None:
        raise UserError(f"data file not found: {path}. Check the path (or pass a named dataset).")
    check_regular_file(path, "data file")
    try:
        npz = np.load(path, allow_pickle=False)
    except OSError as e:
        if e.errno is not None:  # the OS refused the file; a damaged one has no errno
            raise path_error(path, e, "data file") from None
        raise UserError(
            f"could not read {path} as a .npz file ({_reason(e)}): it is corrupt or in another "
            f"format. {_NPZ_HELP}"
        ) from None
    except _DAMAGED as e:
        raise UserError(
            f"could not read {path} as a .npz file ({_reason(e)}): it is corrupt or in another "
            f"format. {_NPZ_HELP}"
        ) from None
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
    _check_declared_size(npz, key, path)
    try:
        return npz[key]
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            # refused by allow_pickle=False: say why, never how to switch the safety off
            raise UserError(
                f"'{key}' in {path} is an object (pickled) array, which scinas refuses to load: "
                "unpickling can run code. Save it as a numeric array."
            ) from None
        raise UserError(
            f"could not read '{key}' from {path}: the file looks corrupt ({_reason(e)})."
        ) from None
    except Exception as e:  # a damaged archive fails in zipfile, zlib or numpy, any way
        raise UserError(
            f"could not read '{key}' from {path}: the file looks corrupt ({_reason(e)})."
        ) from None


def _check_declared_size(npz, key: str, path: Path) -> None:
    """Refuse an array whose archive member or .npy header declares more bytes than its
    compressed data can inflate to, than the member holds, or than memory holds: numpy
    allocates the whole array before it reads any of it."""
    try:
        info = npz.zip.getinfo(f"{key}.npy")
    except Exception:
        return  # numpy's own read says what is wrong
    ratio = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: MAX_DEFLATE_RATIO}
    most = info.compress_size * ratio.get(info.compress_type, 0) + (1 << 16)
    if info.compress_type in ratio and info.file_size > most:
        raise UserError(
            f"'{key}' in {path} is corrupt: the archive says it inflates to "
            f"{size_text(info.file_size)}, but its {size_text(info.compress_size)} of "
            f"compressed data cannot hold more than {size_text(most)}. Save the arrays again."
        )
    try:
        with npz.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(f)
            offset = f.tell()
    except Exception:
        return  # numpy's own read says what is wrong
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size - offset:
        raise UserError(
            f"'{key}' in {path} is corrupt: its header declares shape {tuple(shape)} of "
            f"{dtype} ({declared:,} bytes) but the archive holds {info.file_size - offset:,} "
            "bytes of it. Save the arrays again."
        )
    check_decoded_size(declared, path, f"'{key}' (shape {tuple(shape)} of {dtype})")


def _reason(e: BaseException) -> str:
    """numpy's words for a failure, minus its advice to load pickled data (which would run
    whatever code the file holds)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "pickle" in text.lower():
        return "not a zip archive of .npy arrays"
    return text[:200]


@register_reader("npz")
class NpzReader(Reader):
    """A ``.npz`` file, recognised by its suffix (a bad archive gets read_npz's message)."""

    description = ".npz files (x_train, y_train, ...)"

    def recognises(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".npz"

    def read(self, path: Path, options: ReadOptions) -> RawData:
        return read_npz(path)

    def example(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        x = (np.arange(24 * 8 * 8).reshape(24, 8, 8) % 251).astype(np.uint8)
        path = folder / "arrays.npz"
        np.savez(path, x_train=x, y_train=np.arange(24) % 3)
        return path
