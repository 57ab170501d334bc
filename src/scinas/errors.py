"""Errors a user can cause and fix.

Every problem with the user's input (files, data, options, config) is raised as a
:class:`UserError` whose message names what is wrong and what to do.  The CLI turns it into one
line on stderr and exit code 2, with no traceback; the Python API lets it propagate.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""

    exit_code = 2


class TrainingDiverged(RuntimeError):
    """The loss became NaN or exploded; the message says which learning rate to lower."""

    exit_code = 1
    # what the divergence guard reads, set by `scinas.divergence.diverged` (loss None: a
    # divergence the guard cannot roll back)
    loss: float | None = None
    lr_key: str = ""
    where: str = ""
    reason: str | None = None  # the guard's test that failed (None: an unguarded step's check)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return a ' Did you mean X?' hint (or '') for a mistyped ``name``."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if not close:
        close = [c for c in choices if c.lower() == name.lower()]
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """Build the standard 'unknown X' error with the closest match and the list of valid names."""
    choices = sorted(choices)
    return UserError(
        f"unknown {kind} '{name}'.{did_you_mean(name, choices)} "
        f"Valid {kind}s: {', '.join(choices)}."
    )
