"""End-to-end: the real `scinas` process on tiny real data, and every kind of bad input (the CLI
in this process: what it says and writes is what is tested)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import r2_score

from conftest import scinas_cli, tiny_sets


def scinas(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "scinas", *args], capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"scinas {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def cli(*args: str) -> subprocess.CompletedProcess:
    """``scinas ARGS`` in this process, where the process boundary is not what is tested."""
    proc = scinas_cli(*args)
    if proc.returncode != 0:
        raise AssertionError(f"scinas {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_on_digits_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    proc = scinas("run", "--out", str(out), *tiny_sets("search.epochs=2"))
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["task"] == "classification"
    for name in [
        "run.json",
        "config.json",
        "data.json",
        "metrics.jsonl",
        "arch_weights.jsonl",
        "genotype.json",
        "supernet.pt",
        "model.pt",
        "predictions_test.npz",
        "results.json",
    ]:
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "classification" and 0 <= results["test"]["accuracy"] <= 1
    assert results["params"] > 0 and results["flops"] > 0 and results["wall_seconds"] > 0
    geno = json.loads((out / "genotype.json").read_text())
    assert set(geno) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    assert len(geno["normal"]) == 8 and all(op != "none" for op, _ in geno["normal"])
    events = read_jsonl(out / "metrics.jsonl")
    # a 2-epoch search of 4 architecture steps on 120 images cannot move its alphas far from
    # uniform even at the automatic rate (capped at 0.1 a step): flagged as undecided
    # the default DARTS sets its architecture rate from the search's length (no range test)
    assert events[0]["event"] == "lr_range_test" and "arch_lr" in json.dumps(events[0])
    events = events[1:]
    assert [e["event"] for e in events] == ["search_epoch"] * 2 + [
        "undecided",
        "augment_probe",  # train.augment=auto, after the one epoch
        "train_epoch",
        "test",
    ]
    assert {"loss", "accuracy"} <= set(events[0]["train"]) and "accuracy" in events[0]["val"]
    weights = read_jsonl(out / "arch_weights.jsonl")
    assert [w["epoch"] for w in weights] == [1, 2]
    assert np.allclose(np.array(weights[-1]["normal"]).sum(axis=1), 1.0)  # softmax rows
    assert weights[-1]["genotype"] == geno
    pred = np.load(out / "predictions_test.npz")
    assert len(pred["y_true"]) == 360  # the digits test split, untouched until the end
    assert results["test"]["accuracy"] == pytest.approx((pred["y_true"] == pred["y_pred"]).mean())
    config = json.loads((out / "config.json").read_text())
    assert config["search"]["epochs"] == 2 and config["data"]["dataset"] == "digits"

    # evaluate rebuilds the trained network and reproduces the test metric
    ev = json.loads(cli("evaluate", str(out), "-q").stdout)
    assert ev["accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert ev["n"] == 360

    # train a genotype taken from that run directory
    out2 = tmp_path / "train"
    cli("train", "--genotype", str(out), "--out", str(out2), *tiny_sets(), "-q")
    assert json.loads((out2 / "genotype.json").read_text()) == geno
    assert json.loads((out2 / "results.json").read_text())["test"]["accuracy"] >= 0


def test_regression_on_rotated_mnist_r2_equals_sklearn(tmp_path, rotated_mnist_npz):
    out = tmp_path / "reg"
    cli(
        "run",
        "--data",
        str(rotated_mnist_npz),
        "--out",
        str(out),
        *tiny_sets("train.epochs=3", "train.max_samples=400"),
        "-q",
    )
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "regression" and results["metric"] == "r2"
    test = results["test"]
    assert len(test["r2_per_target"]) == 2 and len(test["rmse_per_target"]) == 2
    pred = np.load(out / "predictions_test.npz")
    assert pred["y_pred"].shape == (150, 2)
    np.testing.assert_allclose(
        test["r2_per_target"],
        r2_score(pred["y_true"], pred["y_pred"], multioutput="raw_values"),
        rtol=1e-6,
        atol=1e-9,
    )
    assert test["r2"] == pytest.approx(r2_score(pred["y_true"], pred["y_pred"]), abs=1e-9)
    # in the targets' original units (degrees), not standardised ones
    assert test["rmse_per_target"][0] > 1.0


def test_many_channels_non_square_and_second_order(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5, 12, 20)).astype(np.float32)  # N×C×H×W, 5 channels, 12×20
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64) + 2 * (x[:, 4, :6].mean(axis=(1, 2)) > 0)
    path = tmp_path / "multi.npz"
    np.savez(path, x_train=x[:70], y_train=y[:70], x_test=x[70:], y_test=y[70:])
    out = tmp_path / "run"
    cli("run", "--data", str(path), "--out", str(out), *tiny_sets("search.order=2"), "-q")
    data = json.loads((out / "data.json").read_text())
    assert data["input_shape"] == [5, 12, 20] and data["num_outputs"] == 4
    assert any("nchw" in n.lower() for n in data["notes"])


def test_help_of_every_verb():
    for verb in [
        "run",
        "search",
        "train",
        "evaluate",
        "bench nb201",
        "compare",
        "report",
        "export",
    ]:
        proc = scinas_cli(*verb.split(), "--help")
        assert "Usage" in proc.stdout and len(proc.stdout) > 300, verb
    assert "nb201" in scinas_cli("bench", "--help").stdout
    assert "--preset" in scinas_cli("run", "--help").stdout


@pytest.fixture
def bad_npz(tmp_path):
    def make(**arrays):
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        return str(path)

    return make


X = np.zeros((20, 8, 8), np.uint8)
Y = np.arange(20) % 2


@pytest.mark.parametrize(
    "case, args, phrase",
    [
        ("missing file", ["--data", "/nonexistent/data.npz"], "not found"),
        ("unknown dataset", ["--data", "mnsit"], "Did you mean 'mnist'"),
        ("unknown preset", ["--preset", "smal"], "Did you mean 'small'"),
        ("unknown op", ["--set", "search.ops=[none,sep_conv_3x4]"], "Did you mean 'sep_conv_3x3'"),
        ("unknown key", ["--set", "train.epoch=3"], "Did you mean 'train.epochs'"),
        ("too small", ["--set", "train.reductions=3"], "at least 9×9"),
        ("unknown strategy", ["--strategy", "evolutoin"], "Did you mean 'evolution'"),
        (
            "bad storage",
            ["--strategy", "tpe", "--set", "search.storage=sqlite:////no/such/dir/s.db"],
            "does not exist",
        ),
        ("budget < 1", ["--strategy", "random", "--set", "search.budget=0"], "search.budget"),
        (
            "search time budget too small",
            ["--set", "search.time_budget=0.5"],
            "search.time_budget=0.5 seconds is too small to train anything",
        ),
        (
            "train time budget too small",
            ["--set", "train.time_budget=0.05"],
            "train.time_budget=0.05 seconds is too small to train anything",
        ),
        (
            "budget too small to train",
            ["--strategy", "random", "--set", "search.eval_fraction=0.001"],
            "too few to train anything",
        ),
        (
            "unknown nb201 op",
            ["--set", "search.space=nb201", "--set", "search.ops=[none,nor_conv3x3]"],
            "Did you mean 'nor_conv_3x3'",
        ),
        ("no x_train", {"x": X, "y": Y}, "x_train"),
        ("length mismatch", {"x_train": X, "y_train": Y[:15]}, "15"),
        ("empty split", {"x_train": X, "y_train": Y, "x_test": X[:0], "y_test": Y[:0]}, "empty"),
        ("nan", {"x_train": np.full((20, 8, 8), np.nan, np.float32), "y_train": Y}, "NaN"),
        ("negative labels", {"x_train": X, "y_train": Y - 1}, "negative"),
        (
            "non-integer labels",
            {"x_train": X, "y_train": Y + 0.5, "task": "classification"},
            "integer",
        ),
    ],
)
def test_bad_input_one_clear_message_exit_2_nothing_written(tmp_path, bad_npz, case, args, phrase):
    if isinstance(args, dict):
        task = args.pop("task", None)
        args = ["--data", bad_npz(**args)] + (["--task", task] if task else [])
    out = tmp_path / "out"
    proc = scinas_cli("run", "--out", out, *args, *tiny_sets())
    assert proc.returncode == 2, (case, proc.stderr)
    assert phrase in proc.stderr, (case, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1
    assert not out.exists(), f"{case}: --out must not be created"


@pytest.mark.parametrize(
    "case, args, phrase",
    [
        ("absurd label", {"x_train": X, "y_train": np.r_[Y[:-1], 10**9]}, "class ids 0..K-1"),
        ("N×0 features", {"x_train": np.zeros((20, 0), np.float32), "y_train": Y}, "0 features"),
        (
            "object array",
            {"x_train": np.array([{}] * 20, dtype=object), "y_train": Y},
            "refuses to load",
        ),
        ("infinite setting", ["--set", "train.lr=inf"], "finite number"),
        ("too wide for memory", ["--set", "train.C=4096"], "does not fit in memory"),
    ],
)
def test_hostile_input_one_clear_message_exit_2_nothing_written(
    tmp_path, bad_npz, case, args, phrase
):
    """Issue 17's cases; the tiny settings come first so that a case's own --set wins."""
    if isinstance(args, dict):
        args = ["--data", bad_npz(**args)]
    out = tmp_path / "out"
    proc = scinas_cli("run", "--out", out, *tiny_sets(), *args)
    assert proc.returncode == 2, (case, proc.stderr)
    assert phrase in proc.stderr, (case, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "allow_pickle" not in proc.stderr and "weights_only" not in proc.stderr
    assert proc.stderr.count("error:") == 1
    assert not out.exists(), f"{case}: --out must not be created"


def test_out_holding_another_run_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    cli("search", "--out", str(out), *tiny_sets(), "-q")
    before = (out / "genotype.json").read_text()
    stamp = (out / "run.json").stat().st_mtime_ns
    proc = scinas_cli("run", "--out", out, *tiny_sets())
    assert proc.returncode == 2 and "already holds a scinas search" in proc.stderr
    assert "--overwrite" in proc.stderr
    assert (out / "run.json").stat().st_mtime_ns == stamp and (
        out / "genotype.json"
    ).read_text() == before
    # a non-empty directory that is not a run is never deleted, even with --overwrite
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    proc = scinas_cli("run", "--out", other, "--overwrite", *tiny_sets())
    assert proc.returncode == 2 and (other / "thesis.tex").read_text() == "keep me"
    # --overwrite replaces a run
    cli("run", "--out", str(out), "--overwrite", *tiny_sets(), "-q")
    assert json.loads((out / "run.json").read_text())["kind"] == "run"
