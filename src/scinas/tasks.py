"""Tasks: the loss, the output head size and the metrics for classification and regression.

Metrics are always computed over a whole evaluation set from the concatenated predictions, never
averaged over mini-batches (a per-batch R² is wrong: it was a real bug in earlier DARTS forks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Task(ABC):
    """Base class: ``encode_targets`` maps dataset targets to what the loss sees."""

    name: str
    num_outputs: int

    primary_metric: str = ""
    higher_is_better: bool = True

    def encode_targets(self, y: torch.Tensor) -> torch.Tensor:
        return y

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch (``target`` already encoded)."""

    def decode_outputs(self, output: torch.Tensor) -> torch.Tensor:
        """Network outputs -> predictions in the targets' original units / label space."""
        return output

    @abstractmethod
    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict:
        """Metrics of the whole set: ``outputs`` raw network outputs (N, K), ``targets`` as in
        the dataset."""


@dataclass(frozen=True)
class Classification(Task):
    name: str = "classification"
    num_outputs: int = 2
    primary_metric: str = "accuracy"

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def decode_outputs(self, output):
        return output.argmax(dim=1)

    def metrics(self, outputs, targets):
        outputs, targets = outputs.float(), targets.long()
        pred = outputs.argmax(dim=1)
        return {
            "loss": F.cross_entropy(outputs, targets).item(),
            "accuracy": (pred == targets).double().mean().item(),
        }


@dataclass(frozen=True)
class Regression(Task):
    """MSE on targets standardised with the training mean and std; metrics in original units."""

    name: str = "regression"
    num_outputs: int = 1
    primary_metric: str = "r2"
    target_mean: tuple[float, ...] = (0.0,)
    target_std: tuple[float, ...] = (1.0,)

    def _stats(self, like: torch.Tensor):
        mean = torch.tensor(self.target_mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.target_std, dtype=like.dtype, device=like.device)
        return mean, std

    def encode_targets(self, y):
        mean, std = self._stats(y)
        return (y - mean) / std

    def loss(self, output, target):
        return F.mse_loss(output, target)

    def decode_outputs(self, output):
        mean, std = self._stats(output)
        return output * std + mean

    def metrics(self, outputs, targets):
        loss = F.mse_loss(outputs.double(), self.encode_targets(targets.double())).item()
        pred = self.decode_outputs(outputs.double()).cpu().numpy()
        return {"loss": loss, **regression_metrics(pred, targets.double().cpu().numpy())}


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    """RMSE, MAE and R² per target and averaged over targets (R² as sklearn's r2_score:
    1 - SS_res / SS_tot about the evaluation set's own mean; a constant target gives R² 1.0 when
    predicted exactly and 0.0 otherwise, as sklearn does)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.ndim == 1:
        pred, true = pred[:, None], true[:, None]
    err = pred - true
    rmse = np.sqrt((err**2).mean(axis=0))
    mae = np.abs(err).mean(axis=0)
    ss_res = (err**2).sum(axis=0)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(
            ss_tot > 0,
            1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
            np.where(ss_res == 0, 1.0, 0.0),
        )
    return {
        "rmse": float(rmse.mean()),
        "mae": float(mae.mean()),
        "r2": float(r2.mean()),
        "rmse_per_target": rmse.tolist(),
        "mae_per_target": mae.tolist(),
        "r2_per_target": r2.tolist(),
    }


def make_task(task: str, num_outputs: int, target_mean=None, target_std=None) -> Task:
    """The task named ``task``; regression needs the training targets' mean and std (which a
    `scinas.data.Dataset` and a run's data.json both carry)."""
    if task == "classification":
        return Classification(num_outputs=num_outputs)
    if task == "regression":
        return Regression(
            num_outputs=num_outputs, target_mean=tuple(target_mean), target_std=tuple(target_std)
        )
    raise ValueError(f"unsupported task {task!r}")
