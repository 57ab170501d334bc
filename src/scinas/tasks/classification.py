"""Classification: one class per sample, cross-entropy, accuracy and the confusion-matrix
metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import MAX_CLASSES, SPARSE_CLASSES, TASKS, Task, _too_many_classes, check_finite


@TASKS.decorator("classification")
@dataclass(frozen=True)
class Classification(Task):
    """One class id 0..K-1 per sample: cross-entropy; accuracy."""

    name: str = "classification"
    num_outputs: int = 2
    primary_metric: str = "accuracy"
    best_sample_score: float | None = 1.0  # a sample's score: right (1) or wrong (0)
    best_proper_score: float | None = 0.0  # minus the Brier score of a sure right answer
    proper_name: ClassVar[str] = "minus the Brier score"
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

    def sample_scores(self, outputs, targets, proper=False):
        if not proper:
            return (outputs.argmax(dim=1) == targets).float()
        # minus the Brier score (Brier 1950): proper and bounded, unlike the log loss
        p = outputs.float().softmax(dim=1)
        return -(p - F.one_hot(targets.long(), p.shape[1]).float()).pow(2).sum(dim=1)

    def average_views(self, outputs):
        # the log of the mean of the views' probabilities: logits again
        logp = torch.stack([o.float().log_softmax(dim=1) for o in outputs])
        return torch.logsumexp(logp, dim=0) - math.log(len(outputs))

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
