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
    said: set = field(default_factory=set)  # lines logged once a run (`network_precision`)

    @property
    def device(self) -> torch.device:
        return self.place.device

    def network_precision(self, model: torch.nn.Module) -> str:
        """The precision ``model`` trains in under the run's setting (`scinas.precision.resolve`),
        the reason for ``auto``'s choice logged the first time it is made."""
        from .precision import resolve

        chosen, why = resolve(self.cfg.precision, model, self.data.input_shape, self.device)
        if why is not None and ("precision", chosen) not in self.said:
            self.said.add(("precision", chosen))
            self.reporter.log(f"note: {why}")
        return chosen
