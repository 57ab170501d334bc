"""Stop signals: SIGINT/SIGTERM stop a run within seconds, wherever it is.

Where a loop checks `STOP` between steps (training: `STOP.listening`), a signal is a request to
checkpoint and stop at the next step; if no step ends within `GRACE` seconds (a long validation,
a slow step), or a second signal comes, it interrupts at once. Anywhere else (data loading,
preflight, planning, a search between trainings, a report, a worker waiting for a trial) it
interrupts at once: the run's newest checkpoint is what a resume continues from. Inside
`STOP.critical()` (a few file and database writes that must not be cut in half) it waits for
the block's end, `GRACE` seconds at most. Either way `Interrupted` is raised, which the CLI
turns into a message and exit code 130.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

GRACE = 3.0  # seconds a listening loop has to reach its next step before the stop is forced
RETRY = 0.05  # seconds after which a stop that Python dropped is raised again
INTERRUPT_EXIT = 130  # the CLI's exit code after SIGINT/SIGTERM (128 + SIGINT, as shells do)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived and the run stopped. The message says how to resume."""


def _distributed() -> bool:
    """Whether this process is one of a data-parallel group (`scinas.parallel`)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class StopFlag:
    """Set by SIGINT/SIGTERM while a run is in progress; listening loops check it between
    steps."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""
        self._listening = 0
        self._critical = 0
        self._pending = False
        self._timer: threading.Timer | None = None
        self.signum = signal.SIGTERM
        self._hook = sys.unraisablehook
        self.forced = False  # the last stop came at once, not at a listening loop's step

    def __bool__(self) -> bool:
        return self.requested

    @contextmanager
    def listening(self):
        """A loop that checks `STOP` between steps (and checkpoints there) runs inside this:
        a signal then waits for its next step, `GRACE` seconds at most."""
        self._listening += 1
        try:
            yield self
        finally:
            self._listening -= 1

    @contextmanager
    def critical(self):
        """A short block that must not be cut in half (creating a run directory, recording a
        trial): a signal inside it interrupts at its end, or after `GRACE` seconds."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if not self._critical and self._pending:
                self._pending = False
                self._cancel_timer()
                self._arrived()  # as if the signal came now

    def _stopped(self) -> str:
        return f"stopped by {self.signal_name or 'a signal'}"

    def handle(self, signum, frame) -> None:
        """The SIGINT/SIGTERM handler (in the main thread)."""
        self.signal_name = signal.Signals(signum).name
        self.signum = signum
        if self._critical and not self._pending:
            # the block's end acts on it; a block still running GRACE seconds on (a database
            # waiting on a lock) is cut short by the same signal again
            self._pending = True
            self._again(GRACE, signum)
            return
        self._arrived()

    def _arrived(self) -> None:
        """A signal outside a critical block (or at its end): a listening loop stops at its next
        step, anything else at once."""
        if _distributed() and not self.requested:
            # data-parallel processes stop together at a training step (a collective would
            # break under one that stopped alone); a second signal stops at once
            self.requested = True
            return
        if self.requested or not self._listening or self._critical:
            self.forced = self.requested = True
            self._pending = False
            raise Interrupted(self._stopped())
        self.requested = True
        # no step within GRACE seconds: the same signal again, which then interrupts at once
        self._again(GRACE, self.signum)

    def _again(self, seconds: float, signum: int) -> None:
        self._cancel_timer()
        self._timer = threading.Timer(seconds, os.kill, (os.getpid(), signum))
        self._timer.daemon = True
        self._timer.start()

    def unraisable(self, info) -> None:
        """`sys.unraisablehook`: an Interrupted raised inside a finaliser or a weakref
        callback is dropped by Python (printed, then the run goes on): the signal comes again."""
        if isinstance(info.exc_value, Interrupted):
            self._again(RETRY, self.signum)
        else:
            self._hook(info)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reset(self) -> None:
        self._cancel_timer()
        self.requested, self._pending = False, False


STOP = StopFlag()


def install_startup() -> None:
    """Until `handling`: SIGINT/SIGTERM end the process at once with exit code 130 (the imports
    take seconds and write nothing)."""

    def handler(signum, frame):
        name = signal.Signals(signum).name
        sys.stderr.write(
            f"scinas: interrupted: stopped by {name} while starting; nothing written\n"
        )
        sys.stderr.flush()
        os._exit(INTERRUPT_EXIT)

    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, handler)


@contextmanager
def handling():
    """SIGINT/SIGTERM stop a CLI command the scinas way anywhere inside (then as before)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, STOP.handle) for s in SIGNALS}
    try:
        with _hooked():
            yield
    finally:
        STOP.reset()
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _hooked():
    """`StopFlag.unraisable` as `sys.unraisablehook` (once, however deeply nested)."""
    hook = sys.unraisablehook
    if hook == STOP.unraisable:
        yield
        return
    STOP._hook, sys.unraisablehook = hook, STOP.unraisable
    try:
        yield
    finally:
        sys.unraisablehook = hook


@contextmanager
def stop_on_signals():
    """While a run works: SIGINT/SIGTERM raise `Interrupted` at once, or, inside a listening
    loop, at its next step after checkpointing it (`StopFlag`)."""
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    old = {s: signal.signal(s, STOP.handle) for s in SIGNALS}
    STOP.reset()
    STOP.forced = False
    try:
        with _hooked():
            yield STOP
    finally:
        STOP.reset()
        for s, h in old.items():
            signal.signal(s, h)
