"""The `scinas` command line: thin wrappers over the Python API in `scinas.pipeline`, one module
per verb group, sharing the options and helpers of `common`."""

from __future__ import annotations

# registers the verbs on the app, in the order --help lists them
from . import runs, studies, listings  # noqa: F401, I001  # isort: skip
from ..signals import INTERRUPT_EXIT
from .common import app
from .listings import _searches, spaces_text, strategies_text

__all__ = ["_searches", "app", "main", "spaces_text", "strategies_text"]


LINGER_SECONDS = 2.0  # how long a stopped process waits for threads a library left running


def main() -> None:
    try:
        app(prog_name="scinas")
    except SystemExit as e:
        if e.code == INTERRUPT_EXIT:
            leave_now(INTERRUPT_EXIT)
        raise


def leave_now(code: int) -> None:
    """End a stopped process even where a library's non-daemon thread outlived the stop (optuna's
    trial heartbeat, when the stop came as it started: the interpreter then waited for it
    forever at exit). Such threads get LINGER_SECONDS to end; then the process exits at once."""
    import os
    import sys
    import threading
    import time

    end = time.monotonic() + LINGER_SECONDS
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for t in others:
        t.join(max(0.0, end - time.monotonic()))
    if any(t.is_alive() for t in others):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
