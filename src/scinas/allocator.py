"""Large blocks kept for reuse by the C allocator (Linux, glibc), for work on the CPU.

glibc serves each allocation above its mmap threshold (at most 32 MiB on 64-bit) with a fresh
mapping and unmaps it when freed, so a network whose activations are that large pays for fresh
pages, zeroed by the kernel, on every forward and backward pass. `tune` makes such blocks come
from the heap and stay there once freed (``M_MMAP_MAX`` 0, a trim threshold of 2 GiB), so the
next step reuses them: `benchmarks/allocator.py` measures what it buys against
``SCINAS_MALLOC=system``, the allocator as it comes. What it costs: freed memory stays with the
process (up to the trim threshold above what is in use) until it ends.

`scinas.context.setup` calls it, so every verb and API call that runs work has it; elsewhere (musl,
macOS, Windows) and with ``SCINAS_MALLOC=system`` it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

from .errors import UserError

ENV = "SCINAS_MALLOC"  # "reuse" (the default) or "system": the C allocator as it is
CHOICES = ("reuse", "system")
M_TRIM_THRESHOLD = -1  # mallopt's parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # a C int: free memory above what is in use beyond this goes back

_tuned: bool | None = None  # once per process: whether it applied


def tune() -> bool:
    """Keep large freed blocks for reuse (see the module); returns whether it applied. An
    ``SCINAS_MALLOC`` other than `CHOICES` is a UserError."""
    global _tuned
    choice = os.environ.get(ENV, "reuse").strip().lower() or "reuse"
    if choice not in CHOICES:
        raise UserError(
            f"{ENV}={os.environ[ENV]!r} is not a choice: set it to reuse (large freed blocks kept "
            "for the next step, the default) or system (the C allocator as it is), or unset it."
        )
    if _tuned is None:
        _tuned = choice == "reuse" and _apply()
    return _tuned


def _apply() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
