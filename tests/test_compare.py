"""`scinas compare` end to end on digits (tiny), its statistics against SciPy, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as S

import scinas
from conftest import TINY, scinas_cli
from scinas.compare import FINISH_RESERVE, compare
from scinas.compare_methods import COMPARE_METHODS
from scinas.stats import ci95, t_cdf, t_ppf, welch
from scinas.strategies import STRATEGIES


def test_t_distribution_and_welch_equal_scipy():
    for df in (1, 2, 3, 7, 30):
        for t in (-4.0, -1.0, 0.3, 2.5):
            assert t_cdf(t, df) == pytest.approx(S.t.cdf(t, df), abs=1e-9)
        assert t_ppf(0.975, df) == pytest.approx(S.t.ppf(0.975, df), abs=1e-6)
    a, b = [0.91, 0.93, 0.92], [0.88, 0.90, 0.86, 0.87]
    t, p = welch(a, b)
    ref = S.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    lo, hi = ci95(a)
    rlo, rhi = S.t.interval(0.95, 2, loc=np.mean(a), scale=S.sem(a))
    assert (lo, hi) == pytest.approx((rlo, rhi))
    assert welch([1.0], [2.0, 3.0]) == (0.0, 1.0)
    assert welch([0.9, 0.9], [0.9, 0.9]) == (0.0, 1.0)


def test_methods_that_tie_across_their_seeds_are_left_untested_and_written():
    """Two methods whose seeds each tie (a deterministic baseline, a small test split) have no
    spread to test a difference against: no t, no p, not significant, and compare.json and the
    table are written (an infinite t once ended a finished compare with an error)."""
    from scinas.compare_summary import _tests, table
    from scinas.files import json_bytes

    assert welch([0.9582, 0.9582], [0.9650, 0.9650]) == (None, None)
    methods = {"scinas": _done(0.9582, 0.9582), "minirocket": _done(0.9650, 0.9650),
               "resnet1d": _done(0.9660, 0.9524)}  # fmt: skip
    tests = _tests(methods, "scinas")
    assert tests["minirocket"] == {
        "difference": pytest.approx(0.0068),
        "t": None,
        "p": None,
        "significant": False,
    }
    assert tests["resnet1d"]["p"] is not None
    result = {"metric": "accuracy", "methods": methods, "reference": "scinas",
              "vs_reference": tests}  # fmt: skip
    assert b'"p": null' in json_bytes(result, "compare.json")
    line = next(x for x in table(result).splitlines() if x.startswith("minirocket"))
    assert "+0.0068 (untested: neither varies)" in line


def test_compare_end_to_end(tmp_path):
    cfg = scinas.build_config(
        "tiny",
        overrides=[*TINY, "search.eval_fraction=0.3", "train.epochs=2", "compare.budget=null"],
        also_strategies=("random",),
    )
    out = tmp_path / "cmp"
    res = compare(cfg, out, seeds=2, methods=["darts", "darts_supernet", "random", "resnet_tiny"])
    saved = json.loads((out / "compare.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert saved["task"] == "classification" and saved["metric"] == "accuracy"
    for name in ("darts", "darts_supernet", "random", "resnet_tiny"):
        m = saved["methods"][name]
        assert len(m["values"]) == 2 and all(0 <= v <= 1 for v in m["values"])
        assert m["mean"] == pytest.approx(np.mean(m["values"]))
        assert m["std"] == pytest.approx(np.std(m["values"], ddof=1))
        assert m["ci95"][0] <= m["mean"] <= m["ci95"][1]
        assert m["params"] > 0 and m["flops"] > 0 and m["used_seconds"] > 0
        assert m["seeds_done"] == [0, 1] and m["failed"] == {}
    assert saved["complete"] is True and len(saved["runs"]) == 8
    # the supernet runs every op of every edge: more FLOPs than the cell derived from it
    assert saved["methods"]["darts_supernet"]["flops"] > saved["methods"]["darts"]["flops"]
    # each value is the test metric of a real run directory
    for seed in range(2):
        r = json.loads((out / "darts" / f"seed{seed}" / "results.json").read_text())
        assert saved["methods"]["darts"]["values"][seed] == r["test"]["accuracy"]
        rr = json.loads((out / "random" / f"seed{seed}" / "results.json").read_text())
        assert rr["search_seconds"] <= 3 * r["search_seconds"] + 5  # same wall-clock budget
    assert set(saved["vs_darts"]) == {"darts_supernet", "random", "resnet_tiny"}
    assert saved["vs_scinas"] == {}  # scinas was not compared
    assert saved["reference"] == "darts" and saved["vs_reference"] == saved["vs_darts"]


def _done(*values):
    """A compare.json method entry with these seeds' values."""
    mean = float(np.mean(values))
    return {"values": list(values), "mean": mean, "std": float(np.std(values, ddof=1)),
            "ci95": [mean - 0.1, mean + 0.1], "params": 10, "used_seconds": 1.0}  # fmt: skip


@pytest.mark.parametrize(
    "methods, expected",
    [
        ({"resnet_tiny": _done(0.7, 0.8), "scinas": _done(0.8, 0.8)}, "scinas"),
        ({"resnet_tiny": _done(0.7, 0.8), "darts": _done(0.8, 0.8)}, "darts"),
        ({"model": _done(0.7, 0.8), "model_search": _done(0.8, 0.9)}, "model_search"),
        ({"resnet10": _done(0.6, 0.7), "resnet_tiny": _done(0.7, 0.8)}, "resnet10"),
        ({"scinas": {"values": []}, "hpo": _done(0.7, 0.8)}, "hpo"),  # failed on every seed
        ({"resnet10": {"values": []}}, None),
    ],
)
def test_the_others_are_tested_against_the_search_or_the_first_method(methods, expected):
    from scinas.compare_summary import reference

    assert reference(methods) == expected


def test_a_compare_without_scinas_or_darts_still_tests_against_its_search():
    from scinas.compare_summary import _tests, reference_tests, table

    methods = {"model": _done(0.70, 0.72), "model_search": _done(0.80, 0.82)}
    result = {"metric": "accuracy", "methods": methods, "reference": "model_search",
              "vs_reference": _tests(methods, "model_search")}  # fmt: skip
    name, tests = reference_tests(result)
    assert name == "model_search" and tests["model"]["difference"] == pytest.approx(-0.1)
    text = table(result)
    assert "vs model_search" in text and "-0.1000 (p=" in text
    # a compare.json written before the reference was recorded: scinas, else darts
    old = {"vs_scinas": {}, "vs_darts": {"random": {"p": 0.5}}}
    assert reference_tests(old) == ("darts", {"random": {"p": 0.5}})


SEARCH_METHODS = [m for m in COMPARE_METHODS.names() if COMPARE_METHODS.get(m).kind == "search"]


@pytest.mark.parametrize(
    "name", [m for m in SEARCH_METHODS if COMPARE_METHODS.get(m).strategy == "lineage"]
)
def test_settings_given_for_the_lineage_reach_the_methods_that_run_it(name):
    sets = [*TINY, "compare.model=my_net.py:build", "search.patience=5", "search.scores=metric"]
    cfg = scinas.build_config("tiny", overrides=sets, also_strategies=("lineage",))
    # and as a resumed compare reads them back from its config.json
    stored = scinas.build_config(base=cfg.model_dump(mode="json"), also_strategies=("lineage",))
    for c in (cfg, stored):
        ran = COMPARE_METHODS.get(name).configure(c).search
        assert ran.strategy == "lineage" and ran.own.patience == 5 and ran.own.scores == "metric"
        assert not hasattr(COMPARE_METHODS.get("darts").configure(c).search, "patience")


def test_every_search_method_names_a_registered_strategy():
    for name in SEARCH_METHODS:
        assert COMPARE_METHODS.get(name).strategy in STRATEGIES, name


@pytest.mark.parametrize("name", SEARCH_METHODS)
def test_every_search_method_plans_its_search_and_training_within_the_budget(name):
    cfg = scinas.build_config(
        "tiny",
        overrides=[*TINY, "compare.budget=100", "compare.model=my_net.py:build"],
        also_strategies=tuple(STRATEGIES.names()),
    )
    ran = COMPARE_METHODS.get(name).configure(cfg)
    search, train = ran.search.time_budget, ran.train.time_budget
    assert search is not None and 0 < search < 100, search
    assert train is not None and search + train == pytest.approx(100), train


def test_compare_with_a_budget_gives_each_method_its_share(tmp_path):
    # 12 s per method and seed (2 methods' budgets are the test's own time): 6 s buy a search
    # over three cheap ops its 10 steps on a busy core (a step of all eight ops timed at 0.8 s
    # with 3 processes on the 2 cores; at 8 s one run in about ten failed in a full suite); the
    # other search methods' shares are checked on their configs, above
    budget, half = 12, 6
    sets = [
        "search.max_samples=400",
        "search.ops=[skip_connect,sep_conv_3x3,max_pool_3x3]",
        f"compare.budget={budget}",
        "compare.search_share=0.5",
    ]
    cfg = scinas.build_config("tiny", overrides=[*TINY, *sets])
    out = tmp_path / "cmp"
    res = compare(cfg, out, seeds=1, methods=["darts", "resnet_tiny"])
    plans = res["budget"]["plans"]
    assert res["budget"]["seconds_per_method"] == budget
    assert plans["darts"]["search"]["budget"] == half
    assert plans["resnet_tiny"]["train"]["budget"] == budget
    for name, phase in (("darts", "search"), ("darts", "train"), ("resnet_tiny", "train")):
        plan = json.loads((out / name / "seed0" / "budget.json").read_text())[phase]
        assert plan["epochs"] * plan["steps_per_epoch"] >= 10  # MIN_STEPS
        assert plan["expected_seconds"] <= plan["budget"] * 1.01
        events = [json.loads(x) for x in (out / name / "seed0" / "metrics.jsonl").open()]
        if phase == "search":
            assert sum(e["event"] == "search_epoch" for e in events) == plan["epochs"]
        else:  # the epochs are re-planned to the run's deadline as they are measured
            planned, records = plan["epochs"], 0
            for e in events:  # each record names the plan in force when its epoch ended
                if e["event"] == "budget_replan":
                    assert e["epochs_before"] == planned
                    planned = e["epochs"]
                elif e["event"] == "train_epoch":
                    records += 1
                    assert e["epochs"] == planned
                    assert e["epoch"] <= planned
            # (a re-plan after the last epoch may fall short of it when the deadline has come)
            assert records >= 1
    for name in ("darts", "resnet_tiny"):
        # the retraining is planned for the time the run has left, after everything before it
        plan = json.loads((out / name / "seed0" / "budget.json").read_text())["train"]
        assert plan["budget"] < (half if name != "resnet_tiny" else budget)
        used = res["methods"][name]["used_seconds"]
        assert res["methods"][name]["used_share"] == [pytest.approx(used / budget)]
    # a method's first run keeps the fixed reserve for its report; the testing's time is kept
    # by its trainer, from its validation passes scaled to the test split, and measured
    for r in res["runs"]:
        assert r["finish_reserve_seconds"] == FINISH_RESERVE
    for name in ("darts", "resnet_tiny"):
        rr = json.loads((out / name / "seed0" / "results.json").read_text())
        assert 0 < rr["test_seconds"] < rr["wall_seconds"] - rr["train_seconds"] + 1e-6


def _quick_cfg():
    return scinas.build_config("tiny", overrides=[*TINY, "compare.budget=null"])


def test_a_method_that_fails_on_a_seed_is_reported_and_the_rest_go_on(tmp_path, monkeypatch):
    """A method that cannot use its budget on one seed (here: made to refuse on seed 0) is
    recorded as failed for that seed, with its reason; the other runs finish."""
    import scinas.pipeline as pipeline
    from scinas.compare import table

    real_train = pipeline.train

    def train(cfg, *args, **kwargs):
        if cfg.seed == 0:
            raise scinas.UserError("the time left buys 3 steps, under the minimum of 10")
        return real_train(cfg, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train", train)
    out = tmp_path / "cmp"
    res = compare(_quick_cfg(), out, seeds=2, methods=["darts", "resnet_tiny"])
    m = res["methods"]["resnet_tiny"]
    assert m["seeds_done"] == [1] and len(m["values"]) == 1
    assert "buys 3 steps" in m["failed"]["0"]
    assert res["methods"]["darts"]["seeds_done"] == [0, 1]
    assert res["complete"] is True
    assert "resnet_tiny seed 0 failed: the time left buys 3 steps" in table(res)


def test_compare_json_after_every_run_and_resume_keeps_finished_runs(tmp_path, monkeypatch):
    """Interrupted after its first run, a compare has written compare.json (incomplete);
    `--resume` keeps that run (not redone) and finishes the rest."""
    import scinas.compare as C
    from scinas.signals import Interrupted

    real = C._run_one
    calls = []

    def once_then_stop(name, seed, *args):
        if calls:
            raise Interrupted("stopped")
        calls.append((name, seed))
        return real(name, seed, *args)

    monkeypatch.setattr(C, "_run_one", once_then_stop)
    out = tmp_path / "cmp"
    with pytest.raises(Interrupted, match="scinas compare --resume"):
        compare(_quick_cfg(), out, seeds=2, methods=["darts", "resnet_tiny"])
    first = json.loads((out / "compare.json").read_text())
    assert first["complete"] is False and [(r["method"], r["seed"]) for r in first["runs"]] == [
        ("darts", 0)
    ]
    kept = (out / "darts" / "seed0" / "results.json").stat().st_mtime_ns
    monkeypatch.setattr(C, "_run_one", real)
    res = compare(_quick_cfg(), out, seeds=2, methods=["darts", "resnet_tiny"], resume=True)
    assert res["complete"] is True and len(res["runs"]) == 4
    assert (out / "darts" / "seed0" / "results.json").stat().st_mtime_ns == kept
    assert res["runs"][0] == first["runs"][0]
    with pytest.raises(scinas.UserError, match="finished compare"):
        compare(_quick_cfg(), out, seeds=2, methods=["darts", "resnet_tiny"], resume=True)
    with pytest.raises(scinas.UserError, match="same --methods and --seeds"):
        compare(_quick_cfg(), out, seeds=3, methods=["darts", "resnet_tiny"], resume=True)


@pytest.mark.parametrize(
    "args,phrase",
    [
        (["--budget", "0.5"], "--budget 0.5 is too small for darts"),
        (["--methods", "darts,resnt18"], "Did you mean 'resnet18'"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--set", "search.time_budget=0"], "search.time_budget"),
        (["--resume", "nowhere"], "not a scinas run directory"),
        (  # no method named runs the lineage: the setting would be ignored
            ["--methods", "resnet_tiny", "--set", "search.scores=metric"],
            "search.scores is a setting of strategy lineage",
        ),
        (["--methods", "resnet_tiny,scinas", "--set", "search.scores=loss"], "search.scores"),
    ],
)
def test_compare_bad_input(tmp_path, args, phrase):
    out = tmp_path / "out"
    res = scinas_cli("compare", "--out", out, *args)
    assert res.returncode == 2 and phrase in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def _digits_multilabel(path):
    """Real images (sklearn's digits) with three independent labels: even, at least 5, and
    drawn with a closed loop (0, 6, 8, 9)."""
    from importlib import resources

    with resources.as_file(resources.files("scinas.data") / "digits_8x8.npz") as p:
        d = np.load(p)
        x, y = d["x_train"], d["y_train"]
    labels = np.stack([y % 2 == 0, y >= 5, np.isin(y, [0, 6, 8, 9])], axis=1).astype(np.int64)
    np.savez(path, x_train=x, y_train=labels)
    return path


def test_compare_regression_and_multilabel_metrics_equal_sklearn(tmp_path, rotated_mnist_npz):
    """compare.json's values are sklearn's metrics on each run's saved test predictions."""
    from sklearn.metrics import r2_score, roc_auc_score

    cases = [
        (rotated_mnist_npz, "regression", "r2"),
        (_digits_multilabel(tmp_path / "ml.npz"), "multilabel", "auc"),
    ]
    for data, task, metric in cases:
        cfg = scinas.build_config(
            "tiny", overrides=[*TINY, "compare.budget=null"], data__dataset=str(data)
        )
        out = tmp_path / task
        res = compare(cfg, out, seeds=1, methods=["darts", "resnet_tiny"])
        assert res["task"] == task and res["metric"] == metric
        for name in ("darts", "resnet_tiny"):
            p = np.load(out / name / "seed0" / "predictions_test.npz")
            if task == "regression":
                ref = r2_score(p["y_true"], p["y_pred"])  # mean of the per-target R²
            else:
                ref = roc_auc_score(p["y_true"], p["outputs"], average="macro")
            assert res["methods"][name]["values"] == [pytest.approx(ref, abs=1e-6)]


def test_a_search_that_stopped_early_is_said_in_compare_json_and_the_table(tmp_path):
    from scinas.compare import _search_stopped, table

    run = tmp_path / "scinas" / "seed0"
    run.mkdir(parents=True)
    assert _search_stopped(run) is None  # no metrics yet
    stopped = {
        "event": "search_stopped",
        "after_trials": 1,
        "seconds_left": 30.4,
        "seconds_per_candidate": 4.0,
        "affordable": 7,
        "min_candidates": 19,
        "seconds_short": 45.6,
    }
    lines = [{"event": "search_trial", "trial": 0}, stopped, {"event": "test"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    why = _search_stopped(run)
    assert "after 1 architecture(s)" in why and "about 7 more candidates at 4.0s each" in why
    assert "fewer than search.min_candidates=19" in why
    result = {
        "budget": {"seconds_per_method": 120, "search_share": 0.4},
        "seeds": 1,
        "seconds": 130.0,
        "metric": "accuracy",
        "methods": {
            "scinas": {
                "values": [0.8],
                "mean": 0.8,
                "std": 0.0,
                "ci95": [0.8, 0.8],
                "params": 1000,
                "used_seconds": 118.0,
                "search_stopped": {"0": why},
            }
        },
        "tests": {},
    }
    assert f"scinas seed 0: {why}" in table(result)
