"""A throwaway task in one file (tests/test_one_file.py imports it): counts, trained with a
Poisson loss on a log-rate output, judged by the mean absolute error of the rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scinas.errors import UserError
from scinas.tasks import TASKS, Task


@TASKS.decorator("count")
@dataclass(frozen=True)
class Count(Task):
    name: str = "count"
    num_outputs: int = 1
    primary_metric: str = "mae"
    higher_is_better: bool = False

    @classmethod
    def parse_targets(cls, y, label):
        y = np.asarray(y).reshape(len(y), -1).astype(np.float32)
        if y.shape[1] != 1 or (y < 0).any() or (y != np.round(y)).any():
            raise UserError(f"{label}: counts are one whole number ≥ 0 per sample")
        return y

    @classmethod
    def example_targets(cls, n=24):
        return np.arange(n) % 5

    def loss(self, output, target):
        return F.poisson_nll_loss(output, target, log_input=True)

    def decode_outputs(self, output):
        return output.exp()

    def metrics(self, outputs, targets):
        rate = self.decode_outputs(outputs.double())
        return {
            "loss": self.loss(outputs.double(), targets.double()).item(),
            "mae": (rate - targets.double()).abs().mean().item(),
        }

    def sample_scores(self, outputs, targets):
        return -(self.decode_outputs(outputs) - targets).abs().sum(dim=1)

    def constant_scores(self, train_targets, targets):
        mean = torch.full((len(targets), 1), float(train_targets.float().mean()))
        return self.sample_scores(mean.log(), targets)
