"""Regression: real-valued targets, standardised for the loss (MSE or Huber), R² and errors in
the targets' units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import TASKS, Task, check_finite, regression_metrics


@TASKS.decorator("regression")
@dataclass(frozen=True)
class Regression(Task):
    """MSE (or Huber) on targets standardised with the training mean and std; metrics in
    original units.

    With ``output_groups`` (lists of output indices, e.g. the answer groups of Galaxy Zoo's 37
    vote fractions) the head is a softmax within each group and the loss is taken on those
    probabilities directly (no standardisation): the predictions of a group always sum to one.
    """

    name: str = "regression"
    num_outputs: int = 1
    primary_metric: str = "r2"
    target_mean: tuple[float, ...] = (0.0,)
    target_std: tuple[float, ...] = (1.0,)
    loss_name: str = "mse"
    output_groups: tuple[tuple[int, ...], ...] = ()

    detect_order: ClassVar[int] = 30
    output_noun: ClassVar[str] = "targets"
    standardises_targets: ClassVar[bool] = True

    @classmethod
    def detects(cls, y):
        return y.dtype.kind == "f"

    @classmethod
    def detection_note(cls, y):
        whole = bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))
        binary = whole and y.ndim == 2 and y.shape[1] >= 2 and bool(np.isin(y, (0, 1)).all())
        hint = ""
        if binary:
            hint = "; they are all 0 or 1: pass --task multilabel if they are labels"
        elif whole:
            hint = "; they are all whole numbers: pass --task classification if they are class ids"
        return "task: regression (y_train holds floats)" + hint

    @classmethod
    def parse_targets(cls, y, label):
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] == 0:
            raise UserError(
                f"{label} has shape {tuple(y.shape)}; regression targets must be (N,) or (N, K) "
                "with K ≥ 1."
            )
        y = y.astype(np.float32, copy=False)
        check_finite(y, label)
        return y

    @classmethod
    def describe_outputs(cls, n):
        return f"{n} target{'s' if n != 1 else ''}"

    @classmethod
    def build(
        cls, num_outputs, target_mean=None, target_std=None, *, loss="mse", output_groups=None
    ):
        groups = tuple(tuple(int(i) for i in g) for g in (output_groups or ()))
        for g in groups:
            if not g or min(g) < 0 or max(g) >= num_outputs:
                raise UserError(
                    f"data.output_groups entry {list(g)} must list output indices in "
                    f"0..{num_outputs - 1}."
                )
        flat = [i for g in groups for i in g]
        if len(flat) != len(set(flat)):
            raise UserError("data.output_groups: an output belongs to more than one group.")
        return cls(
            num_outputs=num_outputs,
            target_mean=tuple(target_mean),
            target_std=tuple(target_std),
            loss_name=loss,
            output_groups=groups,
        )

    @classmethod
    def example_targets(cls, n=24):
        return np.linspace(-1.0, 2.0, 2 * n).reshape(n, 2)

    def _stats(self, like: torch.Tensor):
        mean = torch.tensor(self.target_mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.target_std, dtype=like.dtype, device=like.device)
        return mean, std

    def encode_targets(self, y):
        if self.output_groups:
            return y
        mean, std = self._stats(y)
        return (y - mean) / std

    def _head(self, output):
        """Group softmax (outputs outside every group pass through unchanged)."""
        out = output.clone()
        for g in self.output_groups:
            idx = list(g)
            out[:, idx] = F.softmax(output[:, idx], dim=1)
        return out

    def loss(self, output, target):
        if self.output_groups:
            output = self._head(output)
        if self.loss_name == "huber":
            return F.huber_loss(output, target)
        return F.mse_loss(output, target)

    def decode_outputs(self, output):
        if self.output_groups:
            return self._head(output)
        mean, std = self._stats(output)
        return output * std + mean

    def metrics(self, outputs, targets):
        loss = self.loss(outputs.double(), self.encode_targets(targets.double())).item()
        pred = self.decode_outputs(outputs.double()).cpu().numpy()
        return {"loss": loss, **regression_metrics(pred, targets.double().cpu().numpy())}
