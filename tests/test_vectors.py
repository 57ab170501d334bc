"""Vector data (N×F feature tables as CSV or npz): reading, the 1×1 network, the vector op set,
bad tables, and a run end to end on real data (sklearn's digits as 64-feature vectors)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import scinas_cli, tiny_sets
from scinas.data import load_dataset
from scinas.errors import UserError
from scinas.spaces.baselines import build_baseline
from scinas.spaces.darts import VECTOR_OPS


def _digits_vectors():
    from importlib import resources

    with resources.as_file(resources.files("scinas.data") / "digits_8x8.npz") as p:
        d = np.load(p)
        x, y = d["x_train"].reshape(len(d["x_train"]), -1), d["y_train"]
    return x[:400].astype(np.float32), y[:400]


def _write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    return path


def test_feature_csv_reads_features_targets_and_splits(tmp_path):
    rows = [[0.5, 1, "a", "train"], [1.5, -2, "b", "train"], [2.0, 3, "a", "val"]] * 4
    for i, r in enumerate(rows):
        r[0] += i  # distinct rows
    p = _write_csv(tmp_path / "t.csv", ["f1", "f2", "Label", "split"], rows)
    d = load_dataset(p, test_fraction=0.25)
    assert d.input_shape == (2, 1, 1) and d.task == "classification"
    assert d.class_names == ("a", "b") and len(d.val) == 4
    x_all = torch.cat([d.train.x, d.test.x]).reshape(-1, 2)
    want = torch.tensor([[r[0], r[1]] for r in rows if r[3] == "train"], dtype=torch.float32)
    assert sorted(map(tuple, x_all.tolist())) == sorted(map(tuple, want.tolist()))
    assert any("2 channels of 1×1" in n for n in d.notes)


def test_feature_csv_regression_targets_by_name(tmp_path):
    rows = [[i, i * 2.0, i * 0.5 + 0.25, i - 1.5] for i in range(30)]
    p = _write_csv(tmp_path / "r.csv", ["a", "b", "y1", "y2"], rows)
    d = load_dataset(p, target_columns=["y1", "y2"], test_fraction=0.2)
    assert d.task == "regression" and d.num_outputs == 2 and d.input_shape == (2, 1, 1)


@pytest.mark.parametrize(
    "header, rows, kwargs, phrase",
    [
        (["a", "b"], [[1, 2], [3, 4]], {}, "which column is the target"),
        (["a", "label", "target"], [[1, 0, 1], [2, 1, 0]], {}, "Several are named like one"),
        (["a", "b", "label"], [[1, "x", 0], [2, "y", 1]], {}, "feature column 'b'"),
        (["a", "b", "label"], [[1, 2, 0], [2, 3, 1]], {"target_columns": ["lable"]},
         "Did you mean 'label'"),
        (["a", "label", "split"], [[1, 0, "train"], [2, 1, "dev"]], {}, "train, val or test"),
        (["a", "label"], [[1, 0], ["", 1]], {}, "column 'a' of .* is empty"),
    ],
)  # fmt: skip
def test_bad_feature_tables(tmp_path, header, rows, kwargs, phrase):
    p = _write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(UserError, match=phrase):
        load_dataset(p, **kwargs)


def test_npz_with_two_dimensional_x_is_vector_data(tmp_path):
    x, y = _digits_vectors()
    np.savez(tmp_path / "v.npz", x_train=x, y_train=y)
    d = load_dataset(tmp_path / "v.npz")
    assert d.input_shape == (64, 1, 1) and d.num_outputs == 10
    # per-feature normalisation statistics from train
    assert len(d.mean) == 64 and d.std[10] == pytest.approx(
        float(d.train.x[:, 10].std(correction=0)), 1e-4
    )


def test_networks_take_one_by_one_inputs():
    net = build_baseline("resnet18", 7, 3, (1, 1))
    assert net.eval()(torch.randn(2, 7, 1, 1))[0].shape == (2, 3)
    with pytest.raises(UserError, match="at least 4×4"):
        build_baseline("resnet18", 7, 3, (2, 2))


def test_run_on_feature_csv_end_to_end(tmp_path):
    x, y = _digits_vectors()
    header = [f"px{i}" for i in range(64)] + ["label"]
    p = _write_csv(
        tmp_path / "digits.csv", header, [[*map(int, a), b] for a, b in zip(x, y, strict=True)]
    )
    out = tmp_path / "run"
    res = scinas_cli("run", "--data", p, "--out", out, "-q", *tiny_sets())
    assert res.returncode == 0, res.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["search"]["ops"] == list(VECTOR_OPS)
    results = json.loads((out / "results.json").read_text())
    assert json.loads((out / "data.json").read_text())["input_shape"] == [64, 1, 1]
    assert 0.0 <= results["test"]["accuracy"] <= 1.0 and results["params"] > 0
    ops = {op for op, _ in results["genotype"]["normal"]}
    assert ops <= set(VECTOR_OPS) - {"none"}
