"""One run at a time per run directory: an advisory lock on its marker, released by the process's
end however it ends."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .errors import UserError


class RunLock:
    """An exclusive lock on a run directory (``DIR/.lock``), held while a process writes to it.

    flock: released by the OS when the process dies, even by SIGKILL, so a crash never leaves a
    stale lock behind. A clean end removes the file too (while still holding the lock); a process
    that opened the file just before that finds, once it holds the lock, that the path no longer
    names what it locked, and tries again on the new file."""

    def __init__(self, path: Path):
        self.path = Path(path) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(
                        f"{self.path.parent} is in use by another scinas process (pid {holder}). "
                        "Wait for it to finish, or stop it, before writing to this run directory."
                    ) from None
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # removed (or replaced) by its previous holder: lock the current one
        else:
            raise UserError(f"could not lock {self.path.parent}: its .lock keeps changing.")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def release(self, remove: bool = False) -> None:
        """Unlock; with ``remove``, delete the file first (still locked, so no other process
        can hold it at that moment)."""
        if self.fd is not None:
            if remove:
                with contextlib.suppress(OSError):
                    if _same_file(self.fd, self.path):
                        self.path.unlink()
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def is_locked(path: Path) -> bool:
    lock = Path(path) / ".lock"
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
