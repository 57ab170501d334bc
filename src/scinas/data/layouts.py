"""Image array layouts: 4-D arrays are NCHW or NHWC, guessed from the shape unless given."""

from __future__ import annotations

import numpy as np

from scinas.errors import UserError

__all__ = ["detect_layout", "to_nchw"]


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
            "(one channel) or 4-D NHWC / NCHW, and feature vectors 2-D N×F."
        )
    used = detect_layout(x.shape) if layout == "auto" else layout
    if used == "nhwc":
        x = x.transpose(0, 3, 1, 2)
    return x, used
