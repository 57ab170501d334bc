"""Series as a data kind: N×C×L arrays (C channels of L steps), checked for what breaks a series
network before anything is written, with messages that say where the problem is.

A series is not a small image: its one axis is time (or wavelength), the networks built for it
are 1-D (`scinas.spaces.nd`), and the checks speak in series and steps, not pixels.
"""

from __future__ import annotations

import numpy as np

from scinas.data.layouts import MIN_SIDE
from scinas.errors import UserError

__all__ = ["check_series", "describe_missing"]

_SHOW = 5  # how many series a message lists


def _steps(steps: np.ndarray) -> str:
    """Step indices for a message: ``3``, ``10-12`` for a run, or the first few."""
    if steps.size == 1:
        return f"step {steps[0]}"
    if steps[-1] - steps[0] == steps.size - 1:
        return f"steps {steps[0]}-{steps[-1]}"
    shown = ", ".join(map(str, steps[:4])) + (", ..." if steps.size > 4 else "")
    return f"{steps.size} steps: {shown}"


def describe_missing(bad: np.ndarray) -> str:
    """Where the True values of a (N, C, L) mask are: the series (rows), channels and steps."""
    rows = np.flatnonzero(bad.any(axis=(1, 2)))
    parts = []
    for r in rows[:_SHOW]:
        channels = np.flatnonzero(bad[r].any(axis=1))
        where = []
        for c in channels[:2]:
            at = _steps(np.flatnonzero(bad[r, c]))
            where.append(at if bad.shape[1] == 1 else f"channel {c} {at}")
        if channels.size > 2:
            where.append(f"{channels.size - 2} more channel(s)")
        parts.append(f"row {r} ({', '.join(where)})")
    more = f" and {rows.size - _SHOW} more series" if rows.size > _SHOW else ""
    return f"{rows.size} series: " + "; ".join(parts) + more


def check_series(x: np.ndarray, label: str) -> None:
    """Refuse (UserError) series the networks cannot take: shorter than `MIN_SIDE` steps, or
    holding NaN or infinite values (how many, and in which series, channels and steps).

    Args:
        x: The (N, C, L) series, float or integer.
        label: The array's name in messages (e.g. ``x_train`` or its file).
    """
    length = x.shape[2]
    if length < MIN_SIDE:
        raise UserError(
            f"the series in {label} are {length} step(s) long, shorter than the networks' "
            f"smallest kernel and first reduction take (at least {MIN_SIDE} steps; shape "
            f"{tuple(x.shape)} read as N×C×L). Pad the series, or pass another --layout if the "
            "axes were read wrongly."
        )
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x)
    n = int(np.count_nonzero(bad))
    if not n:
        return
    n_nan = int(np.count_nonzero(np.isnan(x)))
    what = f"{n_nan} NaN" + (f" and {n - n_nan} infinite value(s)" if n > n_nan else "")
    if not n_nan:
        what = f"{n} infinite value(s)"
    raise UserError(
        f"{label} holds {what} (counted after conversion to float32) in "
        f"{describe_missing(bad)}. scinas does not fill gaps in series: remove those series, or "
        "fill the gaps (e.g. interpolate) before training."
    )
