"""Multi-label: any number of labels per sample, one sigmoid each, per-label and averaged
metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import TASKS, Task, _values_found, multilabel_strata, roc_auc


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

    def average_views(self, outputs):
        # the logit of the mean of the views' probabilities
        p = torch.stack([torch.sigmoid(o.float()) for o in outputs]).mean(dim=0)
        return torch.logit(p, eps=1e-7)

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
