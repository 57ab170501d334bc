"""Paths the user gave (data, image lists, configs): what the operating system says about them
as one UserError that names the path and the reason.

Every reader asks here before it opens a file, so a FIFO or a device is refused by its type
(opening one would block or read forever) and a name the file system refuses is named, not
raised as an OSError.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import UserError

__all__ = [
    "check_regular_file",
    "file_kind",
    "os_reason",
    "path_error",
    "read_user_bytes",
    "read_user_text",
    "stat_user_path",
]

_NAME_MAX = 255  # bytes in one name on the usual Linux and macOS file systems


def os_reason(e: OSError, path: str | os.PathLike | None = None) -> str:
    """The reason an OSError gives, in words a user can act on."""
    code = e.errno
    if code == errno.ENAMETOOLONG:
        longest = max((len(os.fsencode(p)) for p in Path(path).parts), default=0) if path else 0
        size = f" (a part of it is {longest} bytes long)" if longest > _NAME_MAX else ""
        return (
            f"its name is longer than the file system allows{size}; names may have at most "
            f"{_NAME_MAX} bytes per part and about 4096 in all: shorten or rename it"
        )
    if code == errno.ELOOP:
        return "it is a loop of symbolic links (a link that points back at itself): fix the link"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: make it readable (chmod) or copy it somewhere readable"
    if code == errno.EISDIR:
        return "it is a folder where a file is expected"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if code == errno.ENOENT:
        return "it does not exist"
    if code in (errno.ENXIO, errno.ENODEV):
        return "it is a device without data to read"
    if code == errno.EIO:
        return "input/output error (a failing disk or network mount): copy the file again"
    return e.strerror or str(e) or type(e).__name__


def path_error(path: str | os.PathLike, e: OSError, what: str = "file") -> UserError:
    """One message for an OSError raised by ``path``."""
    return UserError(f"cannot read {what} {path}: {os_reason(e, path)}.")


def file_kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, for a message."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def stat_user_path(path: str | os.PathLike, what: str = "file") -> os.stat_result | None:
    """``os.stat`` (following links) of a path the user gave; None when it does not exist.

    Raises:
        UserError: For any other OSError (name too long, a loop of links, permission denied).
    """
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise path_error(path, e, what) from None
    except ValueError as e:  # an embedded NUL byte
        raise UserError(f"cannot read {what} {path!r}: {e}.") from None


def check_regular_file(path: str | os.PathLike, what: str = "file") -> None:
    """Refuse (UserError) anything but an existing regular file, before it is opened."""
    st = stat_user_path(path, what)
    if st is None:
        raise UserError(f"{what} not found: {path}. Check the path.")
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} {path} is a folder where a file is expected.")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(
            f"{what} {path} is {file_kind(st.st_mode)}, not a regular file: scinas reads data "
            "from files on disk. Save the data to a file and pass that."
        )


def read_user_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of a regular file the user gave (UserError for anything else)."""
    check_regular_file(path, what)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise path_error(path, e, what) from None


def read_user_text(path: str | os.PathLike, what: str = "file", encoding: str = "utf-8") -> str:
    """The text of a regular file the user gave; UnicodeDecodeError is left to the caller."""
    check_regular_file(path, what)
    try:
        return Path(path).read_text(encoding=encoding)
    except OSError as e:
        raise path_error(path, e, what) from None
