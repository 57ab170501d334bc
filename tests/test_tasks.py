from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from scinas.tasks import Classification, Regression, regression_metrics


def test_regression_metrics_equal_sklearn_per_target_and_averaged():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    pred = true + rng.normal(size=(200, 3)) * [0.5, 3.0, 0.05]
    m = regression_metrics(pred, true)
    np.testing.assert_allclose(m["r2_per_target"], r2_score(true, pred, multioutput="raw_values"))
    assert m["r2"] == pytest.approx(r2_score(true, pred))
    np.testing.assert_allclose(
        m["rmse_per_target"], np.sqrt(mean_squared_error(true, pred, multioutput="raw_values"))
    )
    assert m["mae"] == pytest.approx(mean_absolute_error(true, pred))


def test_r2_is_not_a_mean_over_minibatches():
    """Per-batch R² (an old DARTS-fork bug) differs from whole-set R²; we compute the latter."""
    rng = np.random.default_rng(1)
    true = np.sort(rng.normal(size=400))  # batches with small within-batch variance
    pred = true + rng.normal(scale=0.3, size=400)
    whole = regression_metrics(pred, true)["r2"]
    per_batch = np.mean([r2_score(true[i : i + 50], pred[i : i + 50]) for i in range(0, 400, 50)])
    assert whole == pytest.approx(r2_score(true, pred))
    assert abs(whole - per_batch) > 0.1


def test_regression_task_standardises_targets_and_reports_original_units():
    task = Regression(num_outputs=2, target_mean=(10.0, -1.0), target_std=(2.0, 0.5))
    y = torch.tensor([[12.0, -1.5], [8.0, 0.0]])
    enc = task.encode_targets(y)
    torch.testing.assert_close(enc, torch.tensor([[1.0, -1.0], [-1.0, 2.0]]))
    torch.testing.assert_close(task.decode_outputs(enc), y)
    m = task.metrics(enc, y)  # perfect predictions, given as network outputs
    assert m["rmse"] == pytest.approx(0.0, abs=1e-6) and m["r2"] == pytest.approx(1.0)


def test_classification_metrics_over_the_whole_set():
    task = Classification(num_outputs=3)
    outputs = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0]])
    targets = torch.tensor([0, 1, 1, 0])
    m = task.metrics(outputs, targets)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["loss"] == pytest.approx(torch.nn.functional.cross_entropy(outputs, targets).item())
