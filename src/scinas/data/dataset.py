"""A loaded dataset: its train, val and test splits and what the networks need to know about it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scinas.tasks import TASKS

LAYOUTS = ("auto", "nhwc", "nchw")


MIN_SIDE = 4  # smallest image side the search space's stem and reductions can handle


_SPLITS = ("train", "val", "test")


_STD_FLOOR = 1e-8


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    ``eq=False``: comparing tensors field by field is ambiguous, so splits compare by identity.

    Attributes:
        x: Images (N, C, H, W) in raw units, uint8 or float32 (not normalised).
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
        input_shape: ``(C, H, W)``.
        mean: Per-channel mean of ``train.x`` in raw units.
        std: Per-channel std of ``train.x`` (a constant channel gets 1.0).
        target_mean: Regression only: per-target mean of ``train.y``.
        target_std: Regression only: per-target std of ``train.y`` (a constant target gets 1.0).
        class_names: Names of the classes (multi-label: of the labels), when known.
        notes: Facts about how the data was read: layout, splits made, downloads.
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    num_outputs: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target_mean: tuple[float, ...] | None
    target_std: tuple[float, ...] | None
    class_names: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: name, task, classes/targets, input shape and dtype, split sizes."""
        c, h, w = self.input_shape
        what = TASKS.get(self.task).describe_outputs(self.num_outputs)
        dtype = str(self.train.x.dtype).replace("torch.", "")
        return (
            f"{self.name}: {self.task}, {what}, input {c}x{h}x{w} {dtype}; "
            f"train {len(self.train)} / val {len(self.val)} / test {len(self.test)}"
        )
