"""Tasks: what the targets are (parsing and auto-detection), the loss, the output head size and
the metrics for classification, regression and multi-label.

Every task is one entry in :data:`TASKS`; `scinas.data` asks the registry to detect and parse the
targets of a dataset, so a new task is one class here, with no branch on task names elsewhere.

Metrics are always computed over a whole evaluation set from the concatenated predictions, never
averaged over mini-batches (a per-batch R² is wrong: it was a real bug in earlier DARTS forks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError
from .registry import Registry

#: Task classes by name, in the order ``--task`` lists them.
TASKS: Registry[type[Task]] = Registry("task")


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

    def sample_scores(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample scores, higher is better, whose differences pair two networks on the same
        samples (`scinas.strategies.lineage`): minus each sample's loss, by default."""
        enc = self.encode_targets(targets)
        return -torch.stack(
            [self.loss(o[None], t[None]) for o, t in zip(outputs, enc, strict=True)]
        )

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


@TASKS.decorator("classification")
@dataclass(frozen=True)
class Classification(Task):
    """One class id 0..K-1 per sample: cross-entropy; accuracy."""

    name: str = "classification"
    num_outputs: int = 2
    primary_metric: str = "accuracy"
    smooths_labels: ClassVar[bool] = True

    detect_order: ClassVar[int] = 20
    output_noun: ClassVar[str] = "classes"
    split_how: ClassVar[str] = "stratified by class"

    @classmethod
    def detects(cls, y):
        return y.dtype.kind in "biu"

    @classmethod
    def detection_note(cls, y):
        return "task: classification (y_train holds integers)"

    @classmethod
    def parse_targets(cls, y, label):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise UserError(
                f"{label} has shape {tuple(y.shape)}; class labels must be 1-D (N,) or (N, 1). "
                "For several 0/1 labels per sample use --task multilabel, for several continuous "
                "targets --task regression."
            )
        if y.dtype.kind == "f":
            check_finite(y, label)
            huge = np.flatnonzero(np.abs(y) > MAX_CLASSES)
            if huge.size:  # before the int64 cast, which would wrap values past 2**63
                i = int(huge[0])
                raise _too_many_classes(label, f"{y[i]!r}", i, huge.size)
            frac = np.flatnonzero(y != np.round(y))
            if frac.size:
                i = int(frac[0])
                raise UserError(
                    f"class labels must be integers: {label} has {frac.size} non-integer "
                    f"value(s), e.g. {y[i]!r} at index {i}. Use --task regression for continuous "
                    "targets."
                )
        y = y.astype(np.int64)
        neg = np.flatnonzero(y < 0)
        if neg.size:
            i = int(neg[0])
            raise UserError(
                f"class labels must be non-negative integers 0..K-1: {label} has {neg.size} "
                f"negative label(s), e.g. {int(y[i])} at index {i}. Remap the labels to 0..K-1."
            )
        huge = np.flatnonzero(y >= MAX_CLASSES)
        if huge.size:
            i = int(huge[0])
            raise _too_many_classes(label, str(int(y[i])), i, huge.size)
        return y

    @classmethod
    def outputs(cls, ys, class_names, notes):
        top = max(int(y.max()) for y in ys.values())
        num_outputs = top + 1
        n = sum(len(y) for y in ys.values())
        if num_outputs > max(SPARSE_CLASSES, n):
            # more classes than samples (and than any plausible subset of a labelled set): the
            # labels are ids of another kind, and K outputs of a head would be mostly empty
            raise UserError(
                f"the largest class label is {top}, which means {num_outputs:,} classes for "
                f"{n} samples; labels must be class ids 0..K-1. Remap them, e.g. "
                "y = numpy.unique(y, return_inverse=True)[1], or use --task regression if they "
                "are quantities."
            )
        if class_names is not None:
            if len(class_names) >= num_outputs:
                num_outputs = len(class_names)
            else:
                notes.append(
                    f"ignored class_names: {len(class_names)} names for labels up to {top}"
                )
                class_names = None
        if num_outputs < 2:
            raise UserError(
                f"classification needs at least 2 classes, but every label is {top}; check "
                "y_train, or use --task regression for a single continuous target."
            )
        absent = np.setdiff1d(np.arange(num_outputs), np.unique(ys["train"]))
        if absent.size:
            shown = ", ".join(str(int(c)) for c in absent[:10]) + (
                ", ..." if absent.size > 10 else ""
            )
            notes.append(
                f"{absent.size} of {num_outputs} classes have no training samples ({shown}); "
                "labels are expected to be 0..K-1"
            )
        return num_outputs, class_names

    @classmethod
    def example_targets(cls, n=24):
        return np.arange(n, dtype=np.int64) % 3

    def loss(self, output, target, smoothing: float = 0.0):
        return F.cross_entropy(output, target, label_smoothing=smoothing)

    def sample_scores(self, outputs, targets):
        return (outputs.argmax(dim=1) == targets).float()

    def constant_scores(self, train_targets, targets):
        majority = int(torch.bincount(train_targets.long()).argmax())
        return (targets == majority).float()

    def decode_outputs(self, output):
        return output.argmax(dim=1)

    def metrics(self, outputs, targets):
        outputs, targets = outputs.float(), targets.long()
        pred = outputs.argmax(dim=1)
        return {
            "loss": F.cross_entropy(outputs, targets).item(),
            "accuracy": (pred == targets).double().mean().item(),
        }


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


@TASKS.decorator("multilabel")
@dataclass(frozen=True)
class MultiLabel(Task):
    """Independent binary labels: BCE on logits; per-label and mean ROC AUC and accuracy."""

    name: str = "multilabel"
    num_outputs: int = 2
    primary_metric: str = "auc"

    detect_order: ClassVar[int] = 10
    output_noun: ClassVar[str] = "labels"
    split_how: ClassVar[str] = "stratified by labels"

    @classmethod
    def detects(cls, y):
        """An N×K (K >= 2) integer or bool array of 0s and 1s, both present.

        A matrix of only 1s (or only 0s) teaches nothing and is more likely a mistake, so it is
        left to the classification checks, whose error names --task multilabel to force it.
        """
        if y.ndim != 2 or y.shape[1] < 2 or y.dtype.kind not in "biu":
            return False
        values = np.unique(y)
        return values.size == 2 and values[0] == 0 and values[1] == 1

    @classmethod
    def detection_note(cls, y):
        return f"task: multilabel (y_train is an N×{y.shape[1]} matrix of 0/1 integers)"

    @classmethod
    def parse_targets(cls, y, label):
        """Validate multi-label targets and return them as float32 (N, K) of 0/1."""
        if y.ndim != 2 or y.shape[1] < 2:
            raise UserError(
                f"multi-label targets must be an (N, K) matrix of 0/1 with one column per label, "
                f"K >= 2; {label} has shape {tuple(y.shape)} with values {_values_found(y)}. For "
                "one class per sample use --task classification."
            )
        ok = np.isin(y, (0, 1))
        if not ok.all():
            bad = y[~ok]
            raise UserError(
                f"multi-label targets must all be 0 or 1, but {label} has {bad.size} other "
                f"value(s): {_values_found(bad)}. Binarise them (e.g. y > threshold), or use "
                "--task regression for continuous targets."
            )
        return y.astype(np.float32)

    @classmethod
    def outputs(cls, ys, class_names, notes):
        num_outputs = int(ys["train"].shape[1])
        if class_names is not None and len(class_names) != num_outputs:
            notes.append(f"ignored class_names: {len(class_names)} names for {num_outputs} labels")
            class_names = None
        return num_outputs, class_names

    @classmethod
    def strata(cls, y):
        return multilabel_strata(y)

    @classmethod
    def train_notes(cls, y, class_names):
        """Labels that never (or always) occur in train: the network cannot learn them."""
        pos = y.sum(axis=0)
        out = []
        for what, idx in (
            ("never", np.flatnonzero(pos == 0)),
            ("always", np.flatnonzero(pos == len(y))),
        ):
            if idx.size:
                shown = ", ".join(
                    repr(class_names[i]) if class_names else str(int(i)) for i in idx[:10]
                )
                more = ", ..." if idx.size > 10 else ""
                out.append(
                    f"{idx.size} label(s) are {what} set in the train split ({shown}{more}): the "
                    "network cannot learn them from this data"
                )
        return out

    @classmethod
    def example_targets(cls, n=24):
        return (np.arange(3 * n).reshape(n, 3) % 4 < 2).astype(np.int64)

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
