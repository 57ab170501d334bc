"""Hardware-aware black-box search: measurements, constraints that keep violating networks
untrained, limits no network meets, and the multi-objective Pareto front."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import scinas
from conftest import REPORT, TINY, for_strategy, scinas_cli
from scinas import hardware
from scinas.config import SearchConfig
from scinas.errors import UserError
from scinas.flops import count_flops, count_parameters
from scinas.progress import Reporter
from scinas.spaces import SPACES
from scinas.spaces.macro import MacroArch, MacroNetwork, MacroStage
from scinas.strategies import STRATEGIES

NET = MacroArch(8, (MacroStage(1, 8, False), MacroStage(1, 16, True, "bottleneck", 2, 5)))
# a small macro space: widths 8 or 48, so a parameter limit splits it
SMALL_SPACE = [
    "search.space=macro",
    "search.widths=[8,48]",
    "search.depths=[0,1]",
    "search.stages=2",
    "search.blocks=[basic,bottleneck]",
    "search.kernels=[3]",
    "search.dilations=[1]",
    "search.se=[false]",
]


def _events(out, kind):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


def _cfg(strategy, *extra):
    sets = [*TINY, f"search.strategy={strategy}", "search.budget=3", *SMALL_SPACE, *extra]
    return scinas.build_config("tiny", overrides=for_strategy(sets))


def test_measure_counts_match_the_references_and_stop_at_the_first_broken_limit():
    net = MacroNetwork(NET, 3, 5, (12, 12))
    m = hardware.measure(net, (3, 12, 12), train_batch=4)
    assert m["params"] == count_parameters(net)
    assert m["flops"] == count_flops(net, (3, 12, 12))
    assert m["latency_ms"] > 0 and m["latency_ms_per_sample_train_batch"] > 0
    assert m["threads"] == torch.get_num_threads()
    with pytest.raises(hardware.Infeasible) as e:  # parameters first: FLOPs never counted
        hardware.measure(net, (3, 12, 12), train_batch=4, limit={"params": 10, "flops": 1})
    assert e.value.key == "params" and "flops" not in e.value.measured
    with pytest.raises(hardware.Infeasible) as e:
        hardware.measure(net, (3, 12, 12), train_batch=4, limit={"flops": 10})
    assert e.value.key == "flops" and "latency_ms" not in e.value.measured


def test_pareto_points():
    pts = [(0.9, 5.0), (0.8, 1.0), (0.85, 6.0), (0.9, 4.0), (0.7, 1.0)]
    assert hardware.pareto_points(pts, True) == [1, 3]
    assert hardware.pareto_points([(1.0, 1.0), (2.0, 1.0)], False) == [0]
    assert hardware.pareto_points([(1.0, 2.0), (2.0, 1.0)], False) == [0, 1]


@pytest.mark.parametrize("space", ["nb201", "baseline", "macro"])
def test_smallest_is_no_larger_than_any_sampled_architecture(space):
    sp = SPACES.get(space)
    s = SearchConfig.model_validate({"strategy": "random", "space": space})
    t = scinas.build_config("tiny").train

    def params(arch):
        with torch.device("meta"):
            return count_parameters(sp.build_network(arch, t, (1, 8, 8), 3))

    least = params(sp.smallest(s, params))
    rng = np.random.RandomState(0)
    assert all(least <= params(sp.decisions(s).sample(rng)) for _ in range(25))
    if space == "baseline":
        assert sp.smallest(s, params).name == "resnet_tiny"


@pytest.mark.slow
def test_constraints_keep_violating_networks_untrained(tmp_path):
    limit = 20_000  # the width-48 networks are over it, the width-8 ones under
    cfg = _cfg("random", f"search.max_params={limit}")
    res = scinas.run(cfg, tmp_path / "r", reporter=Reporter(quiet=True))
    trained = _events(tmp_path / "r", "search_trial")
    skipped = _events(tmp_path / "r", "search_infeasible")
    assert len(trained) == 3 and skipped  # the budget counts trained networks only
    assert all(t["hardware"]["params"] <= limit for t in trained)
    assert all(t["hardware"]["latency_ms"] > 0 and t["hardware"]["flops"] > 0 for t in trained)
    assert all(e["hardware"]["params"] > limit for e in skipped)
    assert all(e["violates"] == "search.max_params" for e in skipped)
    assert res["params"] <= limit


def test_resuming_logs_the_infeasible_candidates_again():
    import optuna

    arch = NET.to_dict()
    study = optuna.create_study(direction="maximize")
    e = hardware.Infeasible("params", 500.0, 100.0, {"params": 500})
    e.constraints = [400.0]
    hardware.tell_infeasible(study, study.ask(), MacroArch.from_dict(arch), e)
    study.tell(study.ask(), 0.5)
    logged = []

    class Run:
        log_event = staticmethod(logged.append)

    class Ctx:
        run = Run()

    hardware.relog(study, Ctx())
    assert logged == [hardware.infeasible_event(arch, {"params": 500}, "params")]
    assert logged[0]["violates"] == "search.max_params"


@pytest.mark.parametrize(
    "sets, phrase",
    [
        (
            ["search.space=baseline", "search.max_params=1000"],
            "search.max_params=1000 cannot be met: the smallest network of the baseline space "
            "under this search section has 77,",
        ),
        (
            ["search.space=macro", "search.objectives=accuracy,latency", "search.budget=2"],
            "strategy reinforce has not: use random, evolution, tpe",
        ),
    ],
)
def test_impossible_limit_or_multi_objective_without_sampler_exit_2(tmp_path, sets, phrase):
    out = tmp_path / "out"
    strategy = "reinforce" if "objectives" in sets[1] else "random"
    args = ["run", "--out", str(out), "--strategy", strategy]
    res = scinas_cli(*args, *[a for s in sets for a in ("--set", s)])
    assert res.returncode == 2 and phrase in res.stderr.strip().splitlines()[-1], res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_impossible_latency_and_flops_are_refused_before_anything_is_written(tmp_path):
    for limit in ("search.max_latency_ms=1e-6", "search.max_flops=10"):
        with pytest.raises(UserError, match=f"{limit.split('=')[0]}=.* cannot be met"):
            scinas.run(_cfg("random", limit), tmp_path / "r", reporter=Reporter(quiet=True))
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "value, phrase",
    [
        ("latency,accuracy", "starts with the task's metric"),
        ("accuracy,energy", "unknown objective 'energy'"),
        ("accuracy,latency,latency", "names an objective twice"),
    ],
)
def test_bad_objectives(value, phrase):
    with pytest.raises(UserError, match=phrase):
        scinas.build_config("tiny", overrides=["search.strategy=tpe", f"search.objectives={value}"])


def test_every_multi_objective_strategy_is_listed():
    able = [n for n in STRATEGIES if getattr(STRATEGIES.get(n), "multi_sampler", None)]
    assert {"random", "evolution", "tpe"} <= set(able) and "reinforce" not in able


@pytest.mark.slow
def test_multi_objective_run_logs_and_draws_the_pareto_front(tmp_path):
    cfg = _cfg(
        "evolution",
        "search.objectives=accuracy,latency",
        "search.population=2",
        "search.sample_size=1",
        REPORT,
    )
    res = scinas.run(cfg, tmp_path / "r", reporter=Reporter(quiet=True))
    (front,) = _events(tmp_path / "r", "pareto_front")
    trials = {t["trial"]: t for t in _events(tmp_path / "r", "search_trial")}
    assert front["objectives"] == ["accuracy", "latency"] and front["trials"]
    numbers = [p["trial"] for p in front["trials"]]
    assert front["chosen"] in numbers  # the chosen network is on the front
    assert trials[front["chosen"]]["arch"] == res["genotype"]
    for p in front["trials"]:  # no trial beats a front member in both objectives
        acc, ms = p["values"]
        assert not any(
            t["score"] > acc and t["hardware"]["latency_ms"] < ms for t in trials.values()
        )
    chosen_score = trials[front["chosen"]]["score"]
    assert chosen_score == max(t["score"] for t in trials.values())
    index = json.loads((tmp_path / "r" / "figures" / "index.json").read_text())
    assert "accuracy–latency Pareto front" in index
    assert (tmp_path / "r" / "figures" / "pareto.png").is_file()
