"""Size limits of compressed inputs (gzip idx files, .npz members, images): what they declare
and what they really hold is checked against the memory available before any buffer of that
size is allocated.
"""

from __future__ import annotations

import os

from scinas.errors import UserError
from scinas.memory import available_memory

__all__ = ["CHUNK", "MAX_DEFLATE_RATIO", "check_decoded_size", "size_text"]

#: Bytes read or inflated at a time from a compressed stream.
CHUNK = 1 << 20
#: Deflate (gzip, zip) inflates one byte to at most 1032 (its longest match per shortest code):
#: a header that declares more than this times the compressed size is corrupt.
MAX_DEFLATE_RATIO = 1032


def size_text(n: int) -> str:
    """Bytes for a message: ``1.5 GiB``, ``12.0 MiB`` or ``512 bytes``."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):,.1f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n:,} bytes"


def check_decoded_size(nbytes: int, path: str | os.PathLike, what: str) -> None:
    """Refuse (UserError) ``what`` of ``path`` if decoding it takes more than the host's memory.

    Args:
        nbytes: Bytes the decoded data would take.
        path: The file, for the message.
        what: e.g. ``"the data"``, ``"'x_train'"``, ``"the image"``.
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise UserError(
            f"{what} in {path} would take {size_text(nbytes)} once decompressed, more than the "
            f"{size_text(available)} of memory available (nothing was allocated). Use a smaller "
            "file, or a machine with more memory."
        )
