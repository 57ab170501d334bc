"""The learning-rate settings' type: a positive number, or ``auto`` (found on the data by a range
test before the phase starts, `scinas.lr_finder`). A leaf module, so the config and the
strategies' settings can both use it."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BeforeValidator

AUTO = "auto"


def is_auto(value) -> bool:
    return isinstance(value, str) and value == AUTO


def _learning_rate(value):
    """A positive finite number or ``auto``."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a positive finite number or 'auto'") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError("must be a positive finite number or 'auto'")
    return number


LearningRate = Annotated[float | Literal["auto"], BeforeValidator(_learning_rate)]
