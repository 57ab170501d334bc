"""Files written atomically and read safely: JSON that is valid and finite, and tensors loaded with
``weights_only=True`` (anything that would run code is refused)."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError
from .signals import STOP

# errno values that say the disk, not scinas, refused a write
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def file_mode() -> int:
    """The mode a plain ``open()`` gives a new file under the process's umask (0o644 under the
    usual 022): temporary files from mkstemp are 0o600, and renaming them would keep that."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: read it the old way (set, then restore)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file and a rename: a crash or a full disk never
    leaves half a file, and the file it replaces stays whole until the rename. A stop signal
    waits for the file (`StopFlag.critical`); one that comes inside anyway (after the grace)
    is the error raised, not what a writer cut short says about it (torch.save's zip writer:
    "unexpected pos 64 vs 0")."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with STOP.critical():
            os.fchmod(fd, file_mode())
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        stop = _stop_behind(e)
        if stop is not None:
            raise stop from None
        raise


def _stop_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The stop (`Interrupted`, a KeyboardInterrupt) that ``e`` was raised while handling."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__context__
    return None


def json_bytes(obj, what: str = "the data") -> bytes:
    """``obj`` as the JSON scinas writes (strict: no NaN or infinity), or a UserError naming
    the first value JSON cannot hold."""
    try:
        return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as e:
        where = _non_finite(obj)
        at = f" at {where}" if where else ""
        raise UserError(
            f"{what} cannot be written as JSON{at} ({e}); every setting must be a finite number."
        ) from None


def _non_finite(obj, prefix: str = "") -> str | None:
    """The dotted key of the first NaN or infinite float in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return prefix or "the top level"
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, f"{prefix}.{k}" if prefix else str(k))
        if found:
            return found
    return None


def write_json(path: str | os.PathLike, obj) -> None:
    data = json_bytes(obj, str(path))
    atomic_write(Path(path), lambda f: f.write(data))


def read_json(path: str | os.PathLike):
    """A JSON file of a run directory; a UserError names it when it is unreadable or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing: the run directory is incomplete.") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not the JSON file scinas wrote there.") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        what = f"line {e.lineno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise UserError(
            f"{path} is corrupt (not valid JSON, {what}); it is not the file scinas wrote. "
            "Restore it from a copy, or start a new run."
        ) from None


def read_mapping(path: str | os.PathLike) -> dict:
    """A JSON file that must hold one object (run.json, config.json, data.json...)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(
            f"{path} is corrupt: it holds a JSON {type(data).__name__}, not the object of keys "
            "scinas wrote. Restore it from a copy, or start a new run."
        )
    return data


def disk_error(e: OSError, what: str, hint: str = "") -> UserError:
    """A write the file system refused (full, read-only, no permission) as the one message the
    user sees: what was being written, the system's reason, and what to do."""
    reason = e.strerror or type(e).__name__
    name = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "Free some disk space"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "Make it writable"
    else:
        fix = "Check the disk"
    return UserError(f"could not write {what}: {reason}{name}. {fix}{hint}.")


_CODE_WORDS = ("global", "reduce", "build", "unsupported class")


class UnsafeFile(UserError):
    """A torch file holding more than tensors and plain containers: unpickling it would run
    code, so it is refused (never retried with ``weights_only=False``)."""


def safe_torch_load(path: str | os.PathLike, what: str = "weights"):
    """`torch.load` with ``weights_only=True``, its failures as one message each: missing,
    unsafe (refused, and why), or corrupt. torch's own advice to retry with
    ``weights_only=False`` is never passed on: following it would run the file's code."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: this run has no {what}.") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a file of {what}.") from None
    except Exception as e:
        text = str(e)
        low = text.lower()
        # torch's safe unpickler names what it refused: a global (a function or class to look
        # up and call) means code; an unknown opcode only means the bytes are not a pickle
        if "weights only load failed" in low and any(w in low for w in _CODE_WORDS):
            raise UnsafeFile(
                f"{path} is refused as unsafe: it holds Python objects beyond tensors and plain "
                "containers, which would run code when unpickled (scinas only writes tensors). "
                f"Do not load it; replace it with {what} written by scinas."
            ) from None
        first = text.strip().splitlines()[0][:200] if text.strip() else ""
        if "weights_only" in first:  # never pass on the advice to switch it off
            first = ""
        raise UserError(
            f"cannot load {what} from {path}: the file is corrupt or not a PyTorch file "
            f"({type(e).__name__}{': ' + first if first else ''})."
        ) from None


def load_state(path: str | os.PathLike) -> dict:
    """Load weights saved by `RunDir.save_state`, never unpickling code."""
    state = safe_torch_load(path, "trained weights")
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not the weights scinas saves.")
    return state
