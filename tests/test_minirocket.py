"""compare's minirocket method (`scinas.minirocket`): MiniRocket features and a ridge model on
series, against the published GunPoint figure; regression targets; what it cannot take is
refused before anything runs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import scinas
from conftest import TINY, scinas_cli, shared
from scinas.compare import compare

pytest.importorskip("sktime", reason="the series extra (scinas[series]) is not installed")


def _waves(tmp_path, n=80, length=60, regression=False):
    """Noisy sines: class 1 slow, class 0 fast; or (regression) the period as the target."""
    rng = np.random.default_rng(0)
    t = np.arange(length)
    period = rng.uniform(5, 30, n) if regression else np.where(np.arange(n) % 2, 24.0, 6.0)
    x = np.sin(2 * np.pi * t / period[:, None] + rng.uniform(0, 6, (n, 1)))
    x = (x + 0.3 * rng.normal(size=(n, length)))[:, None].astype(np.float32)
    y = period.astype(np.float32) if regression else (np.arange(n) % 2)
    path = tmp_path / "waves.npz"
    np.savez(path, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    return path


def _compare(data, out, *extra, methods=("minirocket",)):
    cfg = scinas.build_config("tiny", overrides=[*TINY, *extra], data__dataset=str(data))
    return compare(cfg, out, seeds=1, methods=list(methods))


def test_minirocket_separates_slow_from_fast_waves_and_records_what_it_used(tmp_path):
    res = _compare(_waves(tmp_path), tmp_path / "cmp")
    m = res["methods"]["minirocket"]
    assert m["mean"] >= 0.95  # a fast and a slow sine under noise: trivially separable
    saved = json.loads((tmp_path / "cmp" / "minirocket" / "seed0" / "results.json").read_text())
    assert saved["features"] > 9000 and saved["train_samples"] == 54  # 90% of 60: the rest val
    assert "loss" not in saved["test"] and saved["test"]["accuracy"] == m["values"][0]
    assert m["params"] == saved["features"] + 1  # two classes: one score per series
    assert m["used_seconds"] > 0 and m["flops"] is None


def test_minirocket_leaves_torch_s_thread_count_as_it_was(tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _compare(_waves(tmp_path), tmp_path / "cmp")
        assert torch.get_num_threads() == 1  # sktime's numba sets it to every core
    finally:
        torch.set_num_threads(before)


def test_minirocket_regresses_a_series_period(tmp_path):
    res = _compare(_waves(tmp_path, n=120, regression=True), tmp_path / "cmp")
    assert res["metric"] == "r2" and res["methods"]["minirocket"]["mean"] > 0.8


def test_minirocket_on_gunpoint_reaches_the_published_accuracy(tmp_path):
    # Dempster et al. 2021 (MiniRocket), UCR GunPoint: 1.00 test accuracy (mean of 30 runs)
    data = shared("series", "gun_point.npz")
    res = _compare(data, tmp_path / "cmp")
    assert res["methods"]["minirocket"]["mean"] >= 0.98


@pytest.mark.parametrize(
    "kind, phrase",
    [
        ("images", "takes series"),
        ("short", "9 steps long"),
        ("multilabel", "not multi-label targets"),
    ],
)
def test_what_minirocket_cannot_take_exits_2_and_writes_nothing(tmp_path, kind, phrase):
    rng = np.random.default_rng(0)
    if kind == "images":
        x, y = rng.normal(size=(40, 1, 12, 12)), np.arange(40) % 2
    elif kind == "short":
        x, y = rng.normal(size=(40, 1, 6)), np.arange(40) % 2
    else:
        x, y = rng.normal(size=(40, 1, 30)), rng.integers(0, 2, (40, 3))
    data = tmp_path / "d.npz"
    np.savez(data, x_train=x.astype(np.float32), y_train=y)
    out = tmp_path / "cmp"
    res = scinas_cli("compare", "--data", data, "--out", out, "--methods", "minirocket")
    assert res.returncode == 2 and phrase in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_without_sktime_minirocket_names_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sktime.transformations.panel.rocket", None)
    out = tmp_path / "cmp"
    args = ["compare", "--data", _waves(tmp_path), "--out", out, "--methods", "minirocket"]
    res = scinas_cli(*args)
    assert res.returncode == 2 and "pip install 'scinas[series]'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
