"""Multi-fidelity black-box search: optuna's pruners stop weak candidates at rungs, the rungs are
logged and drawn, the winner's weights start the final training, bad settings are refused."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import scinas
import scinas.fit
from conftest import REPORT, TINY, for_strategy
from scinas.cli import app
from scinas.strategies import fidelity


def cfg(*extra):
    return scinas.build_config("tiny", overrides=for_strategy([*TINY, *extra]))


def events(out, kind):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [e for e in rows if e["event"] == kind]


PRUNED = [
    "search.strategy=random",
    "search.space=nb201",
    "search.eval_epochs=3",
    "search.eval_fraction=0.1",
]


def test_asha_prunes_trials_logs_rungs_and_continues_the_winner(tmp_path, monkeypatch):
    saved, started = {}, {}
    newest = fidelity._newest_checkpoint
    load = scinas.fit.load_winner

    def spy_newest(run, number):
        state = newest(run, number)
        saved[number] = {k: v.clone() for k, v in state["model"].items()}
        return state

    def spy_load(net, state):
        load(net, state)
        started.update({k: v.clone() for k, v in net.state_dict().items()})

    monkeypatch.setattr(fidelity, "_newest_checkpoint", spy_newest)
    monkeypatch.setattr(scinas.fit, "load_winner", spy_load)
    out = tmp_path / "asha"
    scinas.run(cfg(*PRUNED, REPORT, "search.budget=6", "search.pruner=asha"), out)
    rungs = events(out, "search_rung")
    pruned = {e["trial"] for e in rungs if e["pruned"]}
    complete = events(out, "search_trial")
    assert pruned and len(pruned) + len(complete) == 6  # pruned trials count towards the budget
    assert all(e["epoch"] < 3 for e in rungs if e["pruned"])
    assert {e["epoch"] for e in rungs if e["rung"]} == {1, 3}  # min_epochs 1, eta 3
    assert all(len([e for e in rungs if e["trial"] == t["trial"]]) == 3 for t in complete)
    # the winner is the best complete trial; the final training starts from its last weights
    best = max(complete, key=lambda t: t["score"])
    assert list(saved) == [best["trial"]]
    assert started and all(torch.equal(started[k], v) for k, v in saved[best["trial"]].items())
    winner = torch.load(out / "winner.pt", weights_only=True)
    assert all(torch.equal(winner[k], v) for k, v in saved[best["trial"]].items())
    assert (
        not list((out / "checkpoints").glob("trial*")) if (out / "checkpoints").exists() else True
    )
    assert (out / "figures" / "rungs.png").is_file()
    assert "multi-fidelity rungs" in (out / "report.html").read_text()


def test_retraining_from_scratch_stays_an_option(tmp_path, monkeypatch):
    loaded = []
    monkeypatch.setattr(scinas.fit, "load_winner", lambda net, state: loaded.append(state))
    out = tmp_path / "scratch"
    sets = [*PRUNED, "search.budget=3", "search.pruner=hyperband", "search.continue_winner=false"]
    scinas.run(cfg(*sets), out)
    assert not (out / "winner.pt").exists() and loaded == []
    assert (
        len(events(out, "search_trial")) + sum(e["pruned"] for e in events(out, "search_rung")) == 3
    )


def test_a_resumed_pruned_search_rewrites_its_rungs_from_the_study(tmp_path):
    """The study holds every trial's reports; a resumed search's log gets them back."""
    out = tmp_path / "r"
    sets = [*PRUNED, "search.pruner=asha", "search.continue_winner=false"]
    scinas.search(cfg(*sets, "search.budget=3"), out)
    before = [(e["trial"], e["epoch"], e["pruned"]) for e in events(out, "search_rung")]
    for name in ("search_result.json", "results.json"):  # as if killed after the last trial
        (out / name).unlink()
    scinas.search(cfg(*sets, "search.budget=3"), out, resume=True)
    after = [(e["trial"], e["epoch"], e["pruned"]) for e in events(out, "search_rung")]
    assert sorted(after) == sorted(before)


def refused(*sets: str) -> str:
    out_args = []
    for item in for_strategy([*TINY, *sets]):
        out_args += ["--set", item]
    return out_args


@pytest.mark.parametrize(
    "sets, phrase",
    [
        (
            ["search.pruner=asha", "search.eval_epochs=2"],
            "needs at least two rungs, at epochs 1 and 3",
        ),
        (
            ["search.pruner=hyperband", "search.eval_epochs=4", "search.min_epochs=2"],
            "raise search.eval_epochs to 6",
        ),
        (["search.pruner=sha2"], "choose one of none, asha, hyperband"),
        (
            ["search.pruner=asha", "search.eval_epochs=3", "search.reduction_factor=1"],
            "search.reduction_factor",
        ),
        (
            ["search.pruner=asha", "search.eval_epochs=3", "search.objectives=accuracy,params"],
            "multi-objective",
        ),
    ],
)
def test_bad_pruner_settings_are_refused_before_anything_is_written(tmp_path, sets, phrase):
    out = tmp_path / "out"
    args = ["search", "--out", str(out), "-q", *refused("search.strategy=random", *sets)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert res.stderr.count("error:") == 1 and "Traceback" not in res.stderr
    assert phrase in res.stderr, res.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- min_candidates


def _check(min_candidates, pruner="asha", relative_cost=None, **extra):
    from types import SimpleNamespace

    s = SimpleNamespace(
        min_candidates=min_candidates,
        time_budget=60.0,
        pruner=pruner,
        min_epochs=1,
        reduction_factor=3,
        eval_epochs=3,
        **extra,
    )
    lines, logged = [], []
    stop = fidelity.affordability_check(
        s, 1, SimpleNamespace(log=lines.append), logged.append, relative_cost
    )
    return stop, lines, logged


def _study_with_first_trial(seconds: float, epochs: int):
    import optuna

    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            value=0.5,
            intermediate_values={e: 0.1 * e for e in range(epochs)},
            user_attrs={"seconds": seconds},
        )
    )
    return study


@pytest.mark.parametrize(
    "pruner,min_epochs,eta,epochs,expected",
    [
        ("none", 1, 3, 3, 3.0),
        ("asha", 1, 3, 3, 1 + 2 / 3),  # all train 1 epoch, a third 2 more
        ("asha", 1, 3, 9, 1 + 2 / 3 + 6 / 9),
        ("hyperband", 2, 2, 8, 2 + 2 / 2 + 4 / 4),
        ("asha", 1, 3, 5, 1 + 2 / 3 + 2 / 9),  # the last stretch, past the last rung (3)
    ],
)
def test_expected_epochs_follow_the_ladder_of_rungs(pruner, min_epochs, eta, epochs, expected):
    from types import SimpleNamespace

    s = SimpleNamespace(
        pruner=pruner, min_epochs=min_epochs, reduction_factor=eta, eval_epochs=epochs
    )
    assert fidelity.expected_epochs(s) == pytest.approx(expected)


def test_min_candidates_stops_a_search_that_cannot_afford_them_and_says_so():
    import time

    study = _study_with_first_trial(seconds=6.0, epochs=3)  # 2 s an epoch, 5/3 epochs each
    stop, lines, logged = _check(min_candidates=8)
    deadline = time.perf_counter() + 10.0  # affords 2 (or 3) more at 3.33 s each
    assert stop(study, deadline)
    (event,) = logged
    assert event["event"] == "search_stopped" and event["min_candidates"] == 8
    assert event["seconds_per_candidate"] == pytest.approx(2.0 * 5 / 3)
    assert event["seconds_per_epoch"] == pytest.approx(2.0) and event["cost_ratio"] == 1.0
    assert event["affordable"] in (2, 3) and event["seconds_short"] > 15
    assert "fewer than search.min_candidates=8" in lines[0] and "search stopped" in lines[0]
    assert not stop(study, deadline)  # it decides once


def test_min_candidates_counts_what_the_candidates_cost_against_the_start():
    import time

    study = _study_with_first_trial(seconds=6.0, epochs=3)
    # alone, 30 s afford 9 candidates at 3.33 s; candidates 3x the start's cost afford 3
    stop, lines, logged = _check(min_candidates=5)
    assert not stop(study, time.perf_counter() + 30.0) and not logged
    assert "search goes on" in lines[0] and "afford about" in lines[0]
    stop, lines, logged = _check(min_candidates=5, relative_cost=lambda first: (3.0, "3x"))
    assert stop(study, time.perf_counter() + 30.0)
    assert logged[0]["cost_ratio"] == 3.0 and logged[0]["affordable"] in (2, 3)
    assert logged[0]["seconds_per_candidate"] == pytest.approx(2.0 * 3 * 5 / 3)
    assert "× 3.00 (3x)" in lines[0]


def test_min_candidates_lets_an_affordable_search_go_on_and_decides_once():
    import time

    study = _study_with_first_trial(seconds=6.0, epochs=3)
    stop, lines, logged = _check(min_candidates=3)
    assert not stop(study, time.perf_counter() + 20.0) and not logged and len(lines) == 1
    # decided once, right after the start trials: later, with little time left, it goes on
    assert not stop(study, time.perf_counter() + 0.5) and not logged and len(lines) == 1
    # without a pruner each candidate trains eval_epochs: 6 s, so only 1 fits in 10 s
    stop, _, logged = _check(min_candidates=3, pruner="none")
    assert stop(study, time.perf_counter() + 10.0) and logged[0]["affordable"] == 1


def test_candidate_cost_ratio_is_the_spaces_mean_flops_over_the_start_networks():
    from types import SimpleNamespace

    import numpy as np

    from scinas import hardware, recommend
    from scinas.spaces import load_genotype
    from scinas.strategies.blackbox import decision_space

    c = recommend.macro_evolution(scinas.build_config("tiny", overrides=["compare.budget=600"]))
    space = decision_space(c.search)
    data = SimpleNamespace(input_shape=(1, 28, 28), num_outputs=10)
    ctx = SimpleNamespace(data=data, cfg=c)
    flops = hardware.meta_cost(ctx, "flops")
    start = load_genotype("macro:resnet_tiny")
    first = [SimpleNamespace(user_attrs={"arch": start.to_dict()})]
    ratio, how = fidelity.candidate_cost_ratio(space, flops, samples=8, seed=3)(first)
    rng = np.random.RandomState(3)
    drawn = [flops(space.sample(rng)) for _ in range(8)]
    assert ratio == pytest.approx(np.mean(drawn) / flops(start))
    assert ratio > 1 and "FLOPs of 8 random candidates" in how  # resnet_tiny: the small end

    def uncountable(arch):
        raise RuntimeError("no meta kernel")

    ratio, how = fidelity.candidate_cost_ratio(space, uncountable)(first)
    assert ratio == 1.0 and "not countable" in how


def test_min_candidates_waits_for_the_start_trials_and_is_off_at_zero():
    import time

    import optuna

    stop, _, logged = _check(min_candidates=100)
    assert not stop(optuna.create_study(), time.perf_counter() + 10.0) and not logged
    assert _check(min_candidates=0)[0] is None


def test_a_black_box_search_that_cannot_pay_stops_after_its_first_trial(tmp_path):
    out = tmp_path / "stopped"
    sets = [*PRUNED, "search.budget=5", "search.time_budget=40", "search.min_candidates=100000"]
    scinas.search(cfg(*sets), out)
    (stopped,) = events(out, "search_stopped")
    assert stopped["after_trials"] == 1 and stopped["affordable"] < 100000
    assert len(events(out, "search_trial")) == 1 and (out / "genotype.json").is_file()
