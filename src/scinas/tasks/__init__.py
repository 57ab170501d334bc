"""Tasks: what the targets are (parsing and auto-detection), the loss, the output head size and
the metrics for classification, regression and multi-label.

Every task is one entry in :data:`TASKS`; `scinas.data` asks the registry to detect and parse the
targets of a dataset, so a new task is one module here registering one class, with no branch on
task names elsewhere.

Metrics are always computed over a whole evaluation set from the concatenated predictions, never
averaged over mini-batches (a per-batch R² is wrong: it was a real bug in earlier DARTS forks).
"""

from __future__ import annotations

# registration order is the order ``--task`` lists them
from . import classification, regression, multilabel  # noqa: F401, I001  # isort: skip
from .base import (
    TASKS,
    Task,
    check_finite,
    detect_task,
    make_task,
    multilabel_strata,
    regression_metrics,
    roc_auc,
)
from .classification import Classification
from .multilabel import MultiLabel
from .regression import Regression

__all__ = [
    "TASKS",
    "Classification",
    "MultiLabel",
    "Regression",
    "Task",
    "check_finite",
    "detect_task",
    "make_task",
    "multilabel_strata",
    "regression_metrics",
    "roc_auc",
]
