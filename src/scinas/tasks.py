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

from .errors import UserError


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


@dataclass(frozen=True)
class MultiLabel(Task):
    """Independent binary labels: BCE on logits; per-label and mean ROC AUC and accuracy."""

    name: str = "multilabel"
    num_outputs: int = 2
    primary_metric: str = "auc"

    def encode_targets(self, y):
        return y.float()

    def loss(self, output, target):
        return F.binary_cross_entropy_with_logits(output, target)

    def decode_outputs(self, output):
        return torch.sigmoid(output)

    def metrics(self, outputs, targets):
        outputs, targets = outputs.double(), targets.double()
        loss = F.binary_cross_entropy_with_logits(outputs, targets).item()
        scores, truth = outputs.cpu().numpy(), targets.cpu().numpy() > 0.5
        acc = ((scores > 0) == truth).mean(axis=0)
        aucs = [roc_auc(scores[:, k], truth[:, k]) for k in range(truth.shape[1])]
        defined = [a for a in aucs if a is not None]
        return {
            "loss": loss,
            "auc": float(np.mean(defined)) if defined else float("nan"),
            "accuracy": float(acc.mean()),
            "exact_match": float(((scores > 0) == truth).all(axis=1).mean()),
            "auc_per_label": aucs,
            "accuracy_per_label": acc.tolist(),
        }


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties, as sklearn's
    roc_auc_score); None when only one class is present."""
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ordered = np.asarray(scores)[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(ordered)]
    ranks = np.empty(len(ordered))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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


def make_task(
    task: str,
    num_outputs: int,
    target_mean=None,
    target_std=None,
    *,
    loss: str = "mse",
    output_groups=None,
) -> Task:
    """The task named ``task``; regression needs the training targets' mean and std (which a
    `scinas.data.Dataset` and a run's data.json both carry)."""
    if task == "classification":
        return Classification(num_outputs=num_outputs)
    if task == "multilabel":
        return MultiLabel(num_outputs=num_outputs)
    if task == "regression":
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
        return Regression(
            num_outputs=num_outputs,
            target_mean=tuple(target_mean),
            target_std=tuple(target_std),
            loss_name=loss,
            output_groups=groups,
        )
    raise ValueError(f"unsupported task {task!r}")
