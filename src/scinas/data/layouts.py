"""Array layouts: what the axes of ``x`` mean, given by the user (``--layout``) or read off a shape
that leaves no doubt, never guessed.

* 2-D N×F: feature vectors (1×1 images of F channels); ``nl``: one-channel series of length F.
* 3-D: ``nhw`` one-channel images, ``ncl`` series of C channels and length L, ``nlc`` the same
  with the channels last. Without a layout, only the shape's one possible reading is taken:
  square trailing sizes are images; a trailing size under `MIN_SIDE` cannot be an image side,
  so it is the series' channels (the smaller of the two when both are): N×C×L with C < 4 is NCL
  and N×L×C with C < 4 is NLC (a series shorter than 4 steps is then refused as too short).
  Other unequal shapes (e.g. 40×6×100) are images, as 3-D arrays were before series
  (`UNEQUAL_3D`; the log names the series layouts), or refused as ambiguous when it is None.
* 4-D: ``nchw`` or ``nhwc`` images, detected from the shape unless given (as before).
"""

from __future__ import annotations

import numpy as np

from scinas.bounds import MIN_SIDE
from scinas.errors import UserError

__all__ = ["IMAGE_LAYOUTS", "LAYOUTS", "SERIES_LAYOUTS", "detect_layout", "to_nchw", "to_ncl"]

IMAGE_LAYOUTS = ("nhwc", "nchw", "nhw")
SERIES_LAYOUTS = ("ncl", "nlc", "nl")
LAYOUTS = ("auto", *IMAGE_LAYOUTS, *SERIES_LAYOUTS)

#: How a 3-D array with unequal trailing sizes, both of 4 or more (40×6×100), is read without
#: ``--layout``: as N×H×W images, the meaning 3-D arrays had before series, so that existing data,
#: configs and runs keep their meaning (the log then names the series layouts). None refuses such
#: a shape as ambiguous, with the flags to choose from.
UNEQUAL_3D: str | None = "nhw"

_FLAGS = "--layout ncl (series, channels first), --layout nlc (channels last) or --layout nhw "
_FLAGS += "(one-channel images)"


def detect_layout(shape: tuple[int, ...]) -> str:
    """Guess whether a 4-D image array of ``shape`` is NCHW or NHWC.

    Args:
        shape: ``(N, s1, s2, s3)``.

    Returns:
        ``"nchw"`` or ``"nhwc"``.

    Raises:
        UserError: If all three trailing sizes are equal, so the shape cannot tell.
    """
    _, s1, s2, s3 = shape
    if s2 == s3 and s1 != s2:
        return "nchw"
    if s1 == s2 and s3 != s1:
        return "nhwc"
    # Non-square images: channels are usually the smaller axis.
    if s1 < s3:
        return "nchw"
    if s3 < s1:
        return "nhwc"
    raise UserError(
        f"cannot tell the image layout from shape {tuple(shape)}: all three trailing sizes are "
        "equal. Pass --layout nhwc or --layout nchw (layout='nhwc'|'nchw' in Python)."
    )


def detect_3d(shape: tuple[int, ...]) -> str:
    """The only reading of a 3-D array of ``shape`` (``nhw``, ``ncl`` or ``nlc``).

    Raises:
        UserError: When more than one reading is possible, naming the flags to choose with.
    """
    _, a, b = shape
    if a == b:
        return "nhw"
    if min(a, b) < MIN_SIDE:  # no image side: the smaller size is the channels
        return "ncl" if a < b else "nlc"
    if UNEQUAL_3D is not None:
        return UNEQUAL_3D
    raise UserError(
        f"cannot tell from shape {tuple(shape)} whether x holds images ({a}×{b} pixels) or "
        f"series ({a} channels of {b} steps, or {b} channels of {a} steps). Pass {_FLAGS} "
        "(layout='ncl'|'nlc'|'nhw' in Python)."
    )


def to_nchw(x: np.ndarray, layout: str, what: str) -> tuple[np.ndarray, str]:
    """Bring an image array to (N, C, H, W).

    Args:
        x: N×H×W (one channel) or a 4-D array.
        layout: ``"auto"``, ``"nhwc"`` or ``"nchw"``; only used for 4-D arrays.
        what: Name of the array for messages.

    Returns:
        The (N, C, H, W) array (a view where possible) and the layout used
        (``"nhw"`` for 3-D input).

    Raises:
        UserError: If the array is not 3-D or 4-D, or a 4-D layout is ambiguous.
    """
    if x.ndim == 3:
        return x[:, None, :, :], "nhw"
    if x.ndim != 4:
        raise UserError(
            f"{what} has shape {tuple(x.shape)} ({x.ndim}-D); images must be 3-D N×H×W "
            "(one channel) or 4-D NHWC / NCHW, series 3-D N×C×L (or 2-D N×L with --layout nl), "
            "and feature vectors 2-D N×F."
        )
    used = detect_layout(x.shape) if layout in ("auto", "nhw") else layout
    if used == "nhwc":
        x = x.transpose(0, 3, 1, 2)
    return x, used


def to_ncl(x: np.ndarray, layout: str, what: str) -> np.ndarray:
    """Bring a series array in ``layout`` (``ncl``, ``nlc`` or ``nl``) to (N, C, L).

    Raises:
        UserError: If the array's dimensions do not fit the layout.
    """
    want = 2 if layout == "nl" else 3
    if x.ndim != want:
        other = "--layout nl" if x.ndim == 2 else "--layout ncl or nlc" if x.ndim == 3 else None
        raise UserError(
            f"--layout {layout} reads {want}-D arrays ({'N×L' if want == 2 else layout.upper()}), "
            f"but {what} is {x.ndim}-D {tuple(x.shape)}"
            + (f": pass {other}." if other else ": series are N×C×L, N×L×C or N×L.")
        )
    if layout == "nl":
        return x[:, None, :]
    return x.transpose(0, 2, 1) if layout == "nlc" else x
