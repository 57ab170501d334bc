"""The strategy interface and its registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import Config
    from ..data import Dataset
    from ..genotype import Genotype
    from ..progress import Reporter
    from ..rundir import RunDir
    from ..tasks import Task


@dataclass
class SearchContext:
    cfg: Config
    data: Dataset
    task: Task
    device: torch.device
    channels_last: bool
    reporter: Reporter
    run: RunDir | None = None
    resume: bool = False  # continue from the run directory's checkpoints
    plans: dict = field(default_factory=dict)  # time-budget plans made by the checks (budget.py)


@dataclass
class SearchResult:
    genotype: Genotype
    history: list[dict] = field(default_factory=list)
    model: torch.nn.Module | None = None  # the trained supernet, for one-shot strategies
    val_metrics: dict | None = None  # the supernet's final validation metrics
    seconds: float = 0.0


class Strategy(Protocol):
    def search(self, ctx: SearchContext) -> SearchResult: ...


STRATEGIES: Registry[type] = Registry("strategy")


def create_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)()
