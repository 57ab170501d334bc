"""`scinas bench nb201`: the tabular benchmark, on a synthetic table and on the real one."""

from __future__ import annotations

import csv
import gzip
import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared
from scinas.bench import NB201Table, run_nb201
from scinas.cli import app
from scinas.errors import UserError
from scinas.spaces.nb201 import NB201_OPS, NB201Arch

runner = CliRunner()


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """All 15,625 architectures; score = #conv3x3 + noise, test = score-correlated, distinct."""
    rng = np.random.default_rng(0)
    archs = [str(NB201Arch(ops)) for ops in itertools.product(NB201_OPS, repeat=6)]
    n3 = np.array([a.count("nor_conv_3x3") for a in archs], dtype=float)
    valid = 60 + 4 * n3 + rng.normal(0, 0.5, len(archs))
    test = 80 + 2 * n3 + rng.normal(0, 0.5, len(archs))
    path = tmp_path_factory.mktemp("table") / "nb201.npz"
    np.savez(
        path,
        arch_str=np.array(archs),
        cifar10_valid_12ep=valid,
        cifar10_test_200ep=test,
    )
    return path


def test_table_reads_npz_and_csv_alike(table, tmp_path):
    t = NB201Table(table)
    with np.load(table) as z:
        rows = list(
            zip(z["arch_str"], z["cifar10_valid_12ep"], z["cifar10_test_200ep"], strict=True)
        )
    gz = tmp_path / "t.csv.gz"
    with gzip.open(gz, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch_str", "cifar10_valid_12ep", "cifar10_test_200ep"])
        for i, (a, v, te) in enumerate(rows):
            w.writerow([i, a, f"{v:.6f}", f"{te:.6f}"])
    t2 = NB201Table(gz)
    assert len(t) == len(t2) == 15625
    a = rows[123][0]
    assert t.score(a) == pytest.approx(t2.score(a), abs=1e-6)
    assert t.test_accuracy(a) == pytest.approx(t2.test_accuracy(a), abs=1e-6)


def test_oracle_holds_only_the_validation_column(table):
    t = NB201Table(table)
    oracle = t.oracle()
    cells = [c.cell_contents for c in oracle.__closure__]
    arrays = [c for c in cells if isinstance(c, np.ndarray)]
    assert len(arrays) == 1 and arrays[0] is t._score
    assert not any(c is t._test or c is t for c in cells)


def test_bench_random_writes_results_curve_and_is_deterministic(table, tmp_path):
    r1 = run_nb201("random", budget=15, seeds=3, table=table, out=tmp_path / "a")
    r2 = run_nb201("random", budget=15, seeds=3, table=table, out=tmp_path / "b")
    assert r1["test_accuracy_mean"] == r2["test_accuracy_mean"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    for key in ("strategy", "budget", "seeds", "test_accuracy_mean", "test_accuracy_std"):
        assert key in saved
    assert saved["budget"] == 15 and saved["seeds"] == 3
    t = NB201Table(table)
    # The returned architecture of each seed is the best-scored of its 15 queries.
    with open(tmp_path / "a" / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 45
    for f in saved["per_seed"]:
        mine = [r for r in trials if int(r["seed"]) == f["seed"]]
        best = max(mine, key=lambda r: float(r["cifar10_valid_12ep"]))
        assert f["arch"] == best["arch"]
        assert f["test_200ep"] == pytest.approx(t.test_accuracy(f["arch"]))
    tests = [f["test_200ep"] for f in saved["per_seed"]]
    assert saved["test_accuracy_mean"] == pytest.approx(np.mean(tests))
    with open(tmp_path / "a" / "curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert len(curve) == 15
    assert float(curve[-1]["test_accuracy_mean"]) == pytest.approx(np.mean(tests), abs=1e-3)
    assert (tmp_path / "a" / "curve.png").stat().st_size > 5000


def test_evolution_beats_random_on_the_synthetic_table(table, tmp_path):
    rnd = run_nb201("random", budget=60, seeds=8, table=table, out=tmp_path / "r")
    evo = run_nb201("evolution", budget=60, seeds=8, table=table, out=tmp_path / "e")
    assert evo["test_accuracy_mean"] > rnd["test_accuracy_mean"]


def test_bench_resumes_from_storage(table, tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    run_nb201("evolution", budget=25, seeds=1, table=table, out=tmp_path / "a", storage=url)
    full = run_nb201("evolution", budget=25, seeds=1, table=table, out=tmp_path / "b")
    again = run_nb201("evolution", budget=25, seeds=1, table=table, out=tmp_path / "c", storage=url)
    assert again["per_seed"] == full["per_seed"]


@pytest.mark.skipif(not shared("nasbench201").exists(), reason="needs ../shared/data")
def test_real_table_optimum_and_random_search_level(tmp_path):
    path = shared("nasbench201", "nb201_accuracies.npz")
    t = NB201Table(path)
    assert len(t) == 15625 and t.best_test() == pytest.approx(94.37, abs=0.01)
    r = run_nb201("random", budget=100, seeds=10, table=path, out=tmp_path / "r")
    assert 93.0 < r["test_accuracy_mean"] < 94.37


def _bench(args, tmp_path):
    return runner.invoke(app, ["bench", "nb201", *args, "--out", str(tmp_path / "out")])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--strategy", "evolutoin"], "Did you mean 'evolution'"),
        (["--budget", "0"], "--budget must be at least 1"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--first-seed", "-1"], "--first-seed must be 0 or more"),
        (["--storage", "sqlite:////no/such/dir/x.db"], "does not exist"),
        (["--strategy", "gdas"], "give --data"),
    ],
)
def test_bench_bad_input(args, message, table, tmp_path):
    res = _bench(["--table", str(table), *args], tmp_path)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_bench_missing_table_and_missing_columns(tmp_path):
    res = _bench(["--table", str(tmp_path / "nope.npz")], tmp_path)
    assert res.exit_code == 2 and "does not exist" in res.output
    bad = tmp_path / "bad.npz"
    np.savez(bad, arch_str=np.array(["x"]), cifar10_valid_12ep=np.array([1.0]))
    res = _bench(["--table", str(bad)], tmp_path)
    assert res.exit_code == 2 and "lacks the column(s) cifar10_test_200ep" in res.output
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\xff\xfe\x00garbage")
    res = _bench(["--table", str(junk)], tmp_path)
    assert res.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_bench_cli_happy_path(table, tmp_path):
    res = _bench(
        ["--table", str(table), "--strategy", "tpe", "--budget", "12", "--seeds", "2", "-q"],
        tmp_path,
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["strategy"] == "tpe" and summary["seeds"] == 2
    assert (tmp_path / "out" / "results.json").is_file()


def test_one_shot_bench_searches_images_and_looks_each_epochs_cell_up(table, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(160) % 4
    x = rng.integers(0, 256, (160, 8, 8, 3), dtype=np.uint8)
    x[..., 0] = np.where(y[:, None, None] % 2 == 0, 200, x[..., 0])  # learnable, not trivial
    np.savez(tmp_path / "img.npz", x_train=x, y_train=y)
    sets = ["search.epochs=2", "search.C=4", "search.layers=3", "search.max_samples=128"]
    args = ["--strategy", "darts", "--data", str(tmp_path / "img.npz"), "--seeds", "2", "-q"]
    res = _bench(["--table", str(table), *args, *(a for s in sets for a in ("--set", s))], tmp_path)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    t = NB201Table(table)
    for f in saved["per_seed"]:
        curve = f["per_epoch_test_200ep"]
        assert len(curve) == 2  # one derived cell per search epoch
        assert curve[-1] == f["test_200ep"] == pytest.approx(t.test_accuracy(f["arch"]))
        genotype = json.loads((tmp_path / "out" / f"seed{f['seed']}" / "genotype.json").read_text())
        assert genotype["arch"] == f["arch"]
    with open(tmp_path / "out" / "curve.csv") as fh:
        mean = [float(r["test_accuracy_mean"]) for r in csv.DictReader(fh)]
    assert mean == pytest.approx(
        [np.mean([f["per_epoch_test_200ep"][e] for f in saved["per_seed"]]) for e in range(2)],
        abs=1e-3,
    )
    assert saved["test_accuracy_mean"] == pytest.approx(mean[-1], abs=1e-3)
    # --first-seed 1 --seeds 1 (as a second process would run it) is seed 1 of the run above:
    # the same search, epoch by epoch, in a process that ran no seed 0 before it
    one = ["--first-seed", "1", "--seeds", "1"]
    args = [*args[:-3], *one, "-q", *(a for s in sets for a in ("--set", s))]
    res = runner.invoke(
        app, ["bench", "nb201", "--table", str(table), *args, "--out", str(tmp_path / "one")]
    )
    assert res.exit_code == 0, res.output
    alone = json.loads((tmp_path / "one" / "results.json").read_text())
    assert alone["first_seed"] == 1 and [f["seed"] for f in alone["per_seed"]] == [1]
    assert alone["per_seed"][0] == saved["per_seed"][1]
    assert (tmp_path / "one" / "seed1" / "genotype.json").is_file()


def test_black_box_bench_seeds_split_over_calls_are_the_same_runs(table, tmp_path):
    whole = run_nb201("evolution", budget=20, seeds=3, table=table, out=tmp_path / "w")
    part = run_nb201("evolution", budget=20, seeds=2, table=table, out=tmp_path / "p", first_seed=1)
    assert part["first_seed"] == 1 and [f["seed"] for f in part["per_seed"]] == [1, 2]
    assert part["per_seed"] == whole["per_seed"][1:]


def test_unknown_arch_in_table_lookup(table):
    with pytest.raises(UserError, match="not in the table"):
        NB201Table(table).test_accuracy("|none~0|")
