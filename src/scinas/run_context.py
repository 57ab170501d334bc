"""What a search or a training run works with: the config, the data, the task, the device and the
run directory (`scinas.context.setup` builds one from a config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import Config
    from .data import Dataset
    from .placement import Placement
    from .progress import Reporter
    from .rundir import RunDir
    from .tasks import Task


@dataclass
class SearchContext:
    cfg: Config
    data: Dataset
    task: Task
    place: Placement  # the device, memory format and normalisation of every batch and model
    reporter: Reporter
    run: RunDir | None = None
    resume: bool = False  # continue from the run directory's checkpoints
    plans: dict = field(default_factory=dict)  # time-budget plans made by the checks (budget.py)

    @property
    def device(self) -> torch.device:
        return self.place.device
