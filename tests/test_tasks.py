from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from scinas.errors import UserError
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


def test_multilabel_metrics_equal_sklearn():
    from sklearn.metrics import roc_auc_score

    from scinas.tasks import MultiLabel, roc_auc

    rng = np.random.default_rng(0)
    y = (rng.random((300, 4)) < [0.1, 0.5, 0.7, 0.3]).astype(np.float32)
    logits = rng.normal(size=(300, 4)) + 1.5 * (y - 0.5)
    logits[:, 1] = np.round(logits[:, 1])  # ties
    m = MultiLabel(num_outputs=4).metrics(torch.tensor(logits), torch.tensor(y))
    for k in range(4):
        assert m["auc_per_label"][k] == pytest.approx(roc_auc_score(y[:, k], logits[:, k]))
    assert m["auc"] == pytest.approx(
        np.mean([roc_auc_score(y[:, k], logits[:, k]) for k in range(4)])
    )
    assert m["accuracy"] == pytest.approx(((logits > 0) == (y > 0.5)).mean())
    assert roc_auc(np.array([0.1, 0.2]), np.array([True, True])) is None


def test_grouped_probability_head_sums_to_one_and_huber():
    from scinas.tasks import make_task

    task = make_task("regression", 5, [0.0] * 5, [1.0] * 5, output_groups=[[0, 1, 2], [3, 4]])
    out = torch.randn(8, 5, requires_grad=True)
    pred = task.decode_outputs(out)
    torch.testing.assert_close(pred[:, :3].sum(1), torch.ones(8))
    torch.testing.assert_close(pred[:, 3:].sum(1), torch.ones(8))
    target = torch.softmax(torch.randn(8, 5), 1)
    task.loss(out, task.encode_targets(target)).backward()
    assert out.grad.abs().sum() > 0
    huber = make_task("regression", 2, [0.0, 0.0], [1.0, 1.0], loss="huber")
    big = torch.tensor([[10.0, 0.0]])
    assert huber.loss(big, torch.zeros(1, 2)).item() == pytest.approx((10 - 0.5) / 2)
    with pytest.raises(UserError, match="output_groups"):
        make_task("regression", 3, [0.0] * 3, [1.0] * 3, output_groups=[[0, 5]])
