"""Search spaces, each one registered plugin behind `SearchSpace` (see `scinas.spaces.base`).

Adding a space is one module under ``spaces/`` that subclasses `SearchSpace` and decorates it with
`register_space`, plus its import below; the tests pick it up from `SPACES`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UserError, unknown

# registration order is the order spaces are listed and short forms are tried
from . import darts, nb201, baselines, macro  # noqa: F401, I001  # isort: skip
from .base import SPACES, DecisionSpace, Drawing, SearchSpace, register_space, space_of


def arch_from_dict(data, source: str = "genotype"):
    """An architecture from its JSON object: ``"space"`` names its space (DARTS genotypes, the
    format every DARTS-family tool reads, have none)."""
    if not isinstance(data, dict):
        raise UserError(f"{source} is not a genotype: expected a JSON object.")
    name = data.get("space", "darts")
    if name not in SPACES:
        raise UserError(f"{source}: unknown search space {name!r} ({' | '.join(SPACES.names())}).")
    return SPACES.get(name).from_dict(data, source=source)


def load_genotype(name_or_path: str | os.PathLike):
    """Load an architecture of any space: a JSON file, a run directory (its genotype.json), or a
    short form one space reads (a published name such as ``DARTS_V2``, a hand-designed network
    such as ``resnet18``, a NAS-Bench-201 string ``|nor_conv_3x3~0|+|...|``)."""
    path = Path(name_or_path)
    if path.is_dir() and (path / "genotype.json").is_file():
        path = path / "genotype.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(
                f"cannot read genotype file {path}: {e}. Give a JSON genotype."
            ) from None
        return arch_from_dict(data, source=str(path))
    text = str(name_or_path)
    for name in SPACES:
        arch = SPACES.get(name).parse(text)
        if arch is not None:
            return arch
    raise unknown("genotype", text, [n for name in SPACES for n in SPACES.get(name).named()])


def named_architectures() -> list[str]:
    """Every name `load_genotype` accepts, across the spaces."""
    return [n for name in SPACES for n in SPACES.get(name).named()]


__all__ = [
    "SPACES",
    "DecisionSpace",
    "Drawing",
    "SearchSpace",
    "arch_from_dict",
    "load_genotype",
    "named_architectures",
    "register_space",
    "space_of",
]
