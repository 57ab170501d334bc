"""A loaded dataset: its train, val and test splits and what the networks need to know about it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scinas.data.layouts import LAYOUTS, MIN_SIDE  # noqa: F401
from scinas.tasks import TASKS

_SPLITS = ("train", "val", "test")


_STD_FLOOR = 1e-8


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    ``eq=False``: comparing tensors field by field is ambiguous, so splits compare by identity.

    Attributes:
        x: Images (N, C, H, W) or series (N, C, L) in raw units, uint8 or float32 (not
            normalised).
        y: Classification: (N,) int64 class ids.  Regression: (N, K) float32 targets.
            Multi-label: (N, K) float32 of 0/1, one column per label.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A validated dataset with train/val/test splits and normalisation statistics.

    Attributes:
        name: e.g. ``"digits"``, ``"mnist"``, or the file/folder name (without ``.npz``).
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``.
        train: Training split.
        val: Validation split (model selection / DARTS architecture step).
        test: Held-out test split.
        num_outputs: Number of classes, number K of regression targets or of labels.
        input_shape: ``(C, H, W)``, or ``(C, L)`` for series: its length less one is the
            dimension of the networks' layers.
        mean: Per-channel mean of ``train.x`` in raw units.
        std: Per-channel std of ``train.x`` (a constant channel gets 1.0).
        target_mean: Regression only: per-target mean of ``train.y``.
        target_std: Regression only: per-target std of ``train.y`` (a constant target gets 1.0).
        class_names: Names of the classes (multi-label: of the labels), when known.
        notes: Facts about how the data was read: layout, splits made, downloads.
        val_whole: The validation split before ``data.max_val`` subsampled it (None where it
            did not): what the lineage search's decisions may score on.
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    num_outputs: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target_mean: tuple[float, ...] | None
    target_std: tuple[float, ...] | None
    class_names: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()
    val_whole: Split | None = None  # the validation split before data.max_val's cap, if it capped

    @property
    def is_series(self) -> bool:
        """Whether the samples are series (C, L) rather than images or feature vectors."""
        return len(self.input_shape) == 2

    def summary(self) -> str:
        """One line: name, task, classes/targets, input shape and dtype, split sizes."""
        what = TASKS.get(self.task).describe_outputs(self.num_outputs)
        dtype = str(self.train.x.dtype).replace("torch.", "")
        shape = "x".join(map(str, self.input_shape))
        kind = " series" if self.is_series else ""
        return (
            f"{self.name}: {self.task}, {what}, input{kind} {shape} {dtype}; "
            f"train {len(self.train)} / val {len(self.val)} / test {len(self.test)}"
        )
