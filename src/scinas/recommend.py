"""The recommended search for a dataset and a budget: what `scinas compare` runs as the method
``scinas``, and what the README tells a new user to run.

The recipe is chosen by measurement (README, "Was NAS worth it?"), not by the dataset's name:
it may look at the data's shape, size and the budget, never at which dataset it is.
"""

from __future__ import annotations

from .config import Config


def recommended(cfg: Config) -> Config:
    """``cfg`` with the recommended search strategy, space and settings filled in."""
    tree = cfg.model_dump()
    tree["search"].update(strategy="random", budget=10_000)
    return Config.model_validate(tree)
