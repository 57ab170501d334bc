"""What every task shares: the `Task` base class, target detection and checks, and the metrics
the tasks compute over a whole split."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..errors import UserError

# task classes by name, in the order ``--task`` lists them (`scinas.registry.TASKS`)
from ..registry import TASKS


@dataclass(frozen=True)
class Task(ABC):
    """Base class: ``encode_targets`` maps dataset targets to what the loss sees.

    The class methods work on the raw numpy targets of a dataset, before any instance exists
    (the number of outputs is only known once they are parsed).
    """

    name: str
    num_outputs: int

    primary_metric: str = ""
    higher_is_better: bool = True
    #: the highest `sample_scores` value a sample can have, where there is one (None: unbounded)
    best_sample_score: float | None = None
    #: the same for ``sample_scores(..., proper=True)``, and what that score is
    best_proper_score: float | None = None
    proper_name: ClassVar[str] = "minus the loss"
    smooths_labels: ClassVar[bool] = False  # its loss takes ``smoothing`` (train.label_smoothing)

    #: Auto-detection asks the tasks in increasing order, so a more specific task goes first.
    detect_order: ClassVar[int] = 100
    #: What one output is called, plural ("classes", "targets", "labels").
    output_noun: ClassVar[str] = "outputs"
    #: How hold-out splits are drawn, for the notes.
    split_how: ClassVar[str] = "random"
    #: Whether the loss sees targets standardised with the training mean and std.
    standardises_targets: ClassVar[bool] = False

    # ------------------------------------------------------------------------- dataset targets

    @classmethod
    def detects(cls, y: np.ndarray) -> bool:
        """Whether ``--task auto`` should pick this task for the training targets ``y``."""
        return False

    @classmethod
    def detection_note(cls, y: np.ndarray) -> str:
        """The note that says why auto-detection picked this task."""
        return f"task: {cls.name}"

    @classmethod
    @abstractmethod
    def parse_targets(cls, y: np.ndarray, label: str) -> np.ndarray:
        """Validate one split's raw targets and convert them to what `scinas.data.Split` holds.

        Args:
            y: The raw (numeric) targets, one row per sample.
            label: How to call them in messages (e.g. the file they came from).

        Raises:
            UserError: If the targets do not fit the task; the message says which task would.
        """

    @classmethod
    def outputs(
        cls, ys: dict[str, np.ndarray], class_names: tuple[str, ...] | None, notes: list[str]
    ) -> tuple[int, tuple[str, ...] | None]:
        """The number of network outputs and the class (or label) names that fit them.

        Args:
            ys: Parsed targets per split given (``"train"`` always present).
            class_names: Names the source provided, if any.
            notes: Facts about the data; a dropped name list is noted here.
        """
        return int(ys["train"].shape[1]), None

    @classmethod
    def strata(cls, y: np.ndarray) -> np.ndarray:
        """Group ids (or values) that `scinas.data.stratified_split` stratifies on."""
        return y

    @classmethod
    def train_notes(cls, y: np.ndarray, class_names: tuple[str, ...] | None) -> list[str]:
        """Warnings about the training targets once the splits are made."""
        return []

    @classmethod
    def describe_outputs(cls, n: int) -> str:
        """E.g. ``"10 classes"``, for one-line summaries."""
        return f"{n} {cls.output_noun}"

    @classmethod
    @abstractmethod
    def example_targets(cls, n: int = 24) -> np.ndarray:
        """Small raw targets of this task that auto-detection recognises (for tests and docs)."""

    @classmethod
    def build(
        cls,
        num_outputs: int,
        target_mean=None,
        target_std=None,
        *,
        loss: str = "mse",
        output_groups=None,
    ) -> Task:
        """The task for a dataset with ``num_outputs`` outputs (the arguments of `make_task`;
        a task ignores those it has no use for)."""
        return cls(num_outputs=num_outputs)

    # ------------------------------------------------------------------------------ training

    def encode_targets(self, y: torch.Tensor) -> torch.Tensor:
        return y

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch (``target`` already encoded)."""

    def decode_outputs(self, output: torch.Tensor) -> torch.Tensor:
        """Network outputs -> predictions in the targets' original units / label space."""
        return output

    def sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each sample's loss (``targets`` as in the dataset)."""
        enc = self.encode_targets(targets)
        return torch.stack([self.loss(o[None], t[None]) for o, t in zip(outputs, enc, strict=True)])

    def sample_scores(
        self, outputs: torch.Tensor, targets: torch.Tensor, proper: bool = False
    ) -> torch.Tensor:
        """Per-sample scores, higher is better, whose differences pair two networks on the same
        samples (`scinas.strategies.lineage`): minus each sample's loss, by default. ``proper``:
        a proper scoring rule of the predicted distribution where the metric's own per-sample
        scores are coarse (right or wrong); minus the loss is one already."""
        return -self.sample_losses(outputs, targets)

    def average_views(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """One output from the outputs for several views of the same samples (`scinas.symmetry`):
        their mean, by default (outputs in the targets' units)."""
        return torch.stack(outputs).mean(dim=0)

    def constant_scores(self, train_targets: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """`sample_scores` of a network that knows nothing: a constant output (zero: the
        training mean of standardised targets, even odds of logits)."""
        zeros = torch.zeros(len(targets), self.num_outputs)
        return self.sample_scores(zeros, targets)

    @abstractmethod
    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict:
        """Metrics of the whole set: ``outputs`` raw network outputs (N, K), ``targets`` as in
        the dataset."""


#: Labels at or above this are refused outright (a head of a million classes is no dataset's).
MAX_CLASSES = 1_000_000
#: Below this many classes, more classes than samples is allowed (a subset of a labelled set).
SPARSE_CLASSES = 1000


def _too_many_classes(label: str, value: str, index: int, count: int) -> UserError:
    return UserError(
        f"{label} has {count} label(s) of {MAX_CLASSES:,} or more, e.g. {value} at index "
        f"{index}: as class ids they would need a network output per class up to it. Labels must "
        "be class ids 0..K-1: remap them, e.g. y = numpy.unique(y, return_inverse=True)[1], or "
        "use --task regression if they are quantities."
    )


# ---------------------------------------------------------------------------------- targets


def detect_task(y: np.ndarray) -> str:
    """The name of the task ``--task auto`` picks for the training targets ``y``.

    Tasks are asked in their ``detect_order``; the first that recognises ``y`` wins.

    Raises:
        UserError: If no task recognises them (only for targets that are not numbers).
    """
    for name in sorted(TASKS, key=lambda n: TASKS.get(n).detect_order):
        if TASKS.get(name).detects(y):
            return name
    raise UserError(
        f"cannot tell the task from targets of dtype {y.dtype} and shape {tuple(y.shape)}; "
        f"pass --task ({', '.join(TASKS.names())})."
    )


def check_finite(a: np.ndarray, label: str) -> None:
    """Raise a UserError naming ``label`` if the float array ``a`` holds NaN or infinities."""
    if a.dtype.kind != "f":
        return
    finite = np.isfinite(a)
    bad = a.size - int(np.count_nonzero(finite))
    if bad:
        n_nan = int(np.count_nonzero(np.isnan(a)))
        raise UserError(
            f"{label} contains {bad} NaN or infinite value(s) ({n_nan} NaN, {bad - n_nan} "
            "infinite, counted after conversion to float32); remove those samples or replace the "
            "values (e.g. numpy.nan_to_num) before training."
        )


def _values_found(y: np.ndarray) -> str:
    """The distinct values of ``y`` for a message: the first few, their count, NaN if any."""
    flat = y.reshape(-1)
    nan = flat.dtype.kind == "f" and bool(np.isnan(flat).any())
    values = np.unique(flat[~np.isnan(flat)] if nan else flat)
    parts = [str(v) for v in values[:8].tolist()]
    if values.size > 8:
        parts.append(f"... ({values.size} distinct, up to {values[-1]})")
    return ", ".join(parts + (["NaN"] if nan else []))


def multilabel_strata(y: np.ndarray) -> np.ndarray:
    """Group ids for a stratified split of multi-label targets (N, K) of 0/1.

    Stratifying on the whole label combination keeps co-occurrences in proportion, but only
    works when every combination occurs at least twice; otherwise each row is grouped by its
    rarest positive label (rows without any positive label form one more group), which still
    spreads rare labels over the splits.  Pass the ids to `scinas.data.stratified_split`.

    Args:
        y: The targets, one row per sample.

    Returns:
        (N,) int64 group ids.
    """
    on = np.asarray(y) > 0.5
    _, combo, counts = np.unique(on, axis=0, return_inverse=True, return_counts=True)
    if counts.min() >= 2:
        return combo.reshape(-1).astype(np.int64)
    freq = on.sum(axis=0)
    rarest = np.argmin(np.where(on, freq[None, :], np.iinfo(np.int64).max), axis=1)
    return np.where(on.any(axis=1), rarest, on.shape[1]).astype(np.int64)


# ---------------------------------------------------------------------------------- metrics


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
    """The task named ``task`` (see :meth:`Task.build`); regression needs the training targets'
    mean and std (which a `scinas.data.Dataset` and a run's data.json both carry)."""
    if task not in TASKS:
        raise ValueError(f"unsupported task {task!r}")
    return TASKS.get(task).build(
        num_outputs, target_mean, target_std, loss=loss, output_groups=output_groups
    )
