"""Search strategies behind one interface; adding a strategy is one file that registers itself.

A strategy takes a `SearchContext` (config, data, task, device, run directory, reporter) and returns
a `SearchResult` (the genotype plus what it learned on the way). It writes its history to the run
directory through ``ctx.run`` as it goes.
"""

from __future__ import annotations

from . import blackbox, darts, drnas, gdas, lineage, receptive, rsws, zerocost  # noqa: F401  (register the strategies)
from .base import STRATEGIES, SearchResult, Strategy, create_strategy

__all__ = ["STRATEGIES", "SearchResult", "Strategy", "create_strategy"]
