"""Checks every config value goes through (finite, within float32) and how a bad one is named in
the one message the user sees."""

from __future__ import annotations

import math
import reprlib

from pydantic import BaseModel, ValidationError

from ..bounds import MAX_FLOAT, note


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _finite(values: dict) -> dict:
    """Strategy settings are validated by their own models; every float among them must be
    finite too (as `_Section`'s ``allow_inf_nan=False`` makes the shared ones)."""
    for key, value in values.items():
        number = value
        if isinstance(value, str):  # "inf", "nan": what pydantic would turn into floats
            try:
                number = float(value)
            except ValueError:
                continue
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"search.{key} must be a finite number (got {value!r})")
        if isinstance(number, float) and abs(number) > MAX_FLOAT:
            raise ValueError(f"search.{key}: {_in_float32.__doc__} (got {value!r})")
    return values


def _in_float32(value):
    """must lie within ±3.4e38, the float32 range the networks compute in"""
    if isinstance(value, float) and abs(value) > MAX_FLOAT:  # torch cannot take it as a float
        raise ValueError(_in_float32.__doc__)
    return value


def _bound(err: dict) -> str:
    """What an upper bound a value broke stands for (`scinas.bounds`), else nothing."""
    if err.get("type") in ("less_than_equal", "less_than"):
        return note((err.get("ctx") or {}).get("le", (err.get("ctx") or {}).get("lt")))
    return ""


def _validated(settings: type[BaseModel], values: dict) -> dict:
    """``values`` checked by a strategy's ``Settings`` (defaults filled in); its first error
    as a ValueError naming the ``search.KEY``."""
    try:
        return settings.model_validate(values).model_dump()
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {_SHORT.repr(err['input'])}){_bound(err)}"
        raise ValueError(f"search.{loc}: {msg}{got}" if loc else msg) from None


#: Values in messages: a few levels and items of a nested or aliased value, never all of it.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring = 3, 6, 6, 80


def strategy_keys() -> list[str]:
    """Every strategy's and space's own setting names (the search keys besides the shared
    ones)."""
    from ..registry import SPACES, STRATEGIES

    return sorted(
        {k for n in STRATEGIES for k in STRATEGIES.get(n).Settings.model_fields}
        | {k for n in SPACES for k in SPACES.get(n).Settings.model_fields}
    )
