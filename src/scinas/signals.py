"""Stop signals: SIGINT/SIGTERM become a request to checkpoint and stop at the next step."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint was written. The message says how to resume."""


class StopFlag:
    """Set by SIGINT/SIGTERM while a run is in progress; loops check it between steps."""

    def __init__(self):
        self.requested = False

    def __bool__(self) -> bool:
        return self.requested


STOP = StopFlag()


@contextmanager
def stop_on_signals():
    """Turn SIGINT/SIGTERM into a request to checkpoint and stop at the next step boundary.

    A second signal interrupts at once (the last epoch checkpoint stays valid)."""
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return

    def handler(signum, frame):
        if STOP.requested:
            raise KeyboardInterrupt
        STOP.requested = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    STOP.requested = False
    try:
        yield STOP
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        STOP.requested = False
