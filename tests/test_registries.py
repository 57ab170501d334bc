"""Every registered search space with every registered strategy, and extending both.

Each (space, strategy) pair either runs a tiny search and retraining end to end on the bundled
digits, or is refused up front with one clear message (exit code 2, nothing written). A new space
or strategy is tested here without editing a list. A throwaway op and a throwaway space
(tests/plugins/chain_space.py) run through the whole flow: adding either is one definition.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

import scinas
from conftest import REPORT, TINY, for_strategy, scinas_cli
from scinas.config import SearchConfig, check_settings_apply
from scinas.errors import UserError
from scinas.ops import OPS, register_op
from scinas.progress import Reporter
from scinas.spaces import SPACES, load_genotype, space_of
from scinas.strategies import STRATEGIES


def _supported(space: str, strategy: str) -> bool:
    s = SearchConfig.model_validate({"strategy": strategy}).model_copy(update={"space": space})
    try:
        STRATEGIES.get(strategy).check_search(s, SPACES.get(space))
    except ValueError:
        return False
    return True


PAIRS = [(space, strategy) for space in SPACES for strategy in STRATEGIES]
SUPPORTED = [p for p in PAIRS if _supported(*p)]
REFUSED = [p for p in PAIRS if not _supported(*p)]
# the report draws a space's networks and a strategy's history: every space and every strategy
# in one reported pair at least (a report costs about a second)
REPORTED = {next(p for p in SUPPORTED if p[1] == t) for t in STRATEGIES}
REPORTED |= {next(p for p in SUPPORTED if p[0] == s) for s in SPACES if s not in dict(REPORTED)}


BASELINE_LINEAGE = ("baseline", "lineage")


def _config(space: str, strategy: str, *extra: str, report: bool = False):
    sets = [
        *TINY,
        f"search.space={space}",
        f"search.strategy={strategy}",
        "search.budget=2",
        "search.wait_for_plateau=false",  # the lineage's plateau wait is tested in its module
        # the hand-designed space's draws include 11M-parameter networks: the lineage starts
        # smaller, and no augmentation probe or test-time views (their own tests) run on them
        *(["search.start_from=[resnet_tiny]"] if (space, strategy) == BASELINE_LINEAGE else []),
        *(["train.augment=default"] if space == "baseline" else []),
        *([REPORT] if report or (space, strategy) in REPORTED else []),
        *extra,
    ]
    return scinas.build_config("tiny", overrides=for_strategy(sets))


def test_every_space_and_strategy_is_in_a_pair():
    assert {s for s, _ in PAIRS} == set(SPACES) and {t for _, t in PAIRS} == set(STRATEGIES)
    assert {t for _, t in SUPPORTED} == set(STRATEGIES)  # every strategy runs in some space
    assert all(_supported(space, "random") for space in SPACES)  # black-box: every space


@pytest.mark.slow
@pytest.mark.parametrize("space, strategy", SUPPORTED)
def test_supported_pair_runs_end_to_end(tmp_path, space, strategy):
    out = tmp_path / "run"
    res = scinas.run(_config(space, strategy), out, reporter=Reporter(quiet=True))
    arch = load_genotype(out)
    assert space_of(arch).name == space
    assert res["genotype"] == arch.to_dict()
    assert 0.0 <= res["test"]["accuracy"] <= 1.0 and res["params"] > 0
    assert (out / "model.pt").is_file()
    assert (out / "report.html").is_file() == ((space, strategy) in REPORTED)
    saved = json.loads((out / "config.json").read_text())["search"]
    assert saved["space"] == space and saved["strategy"] == strategy
    # only the shared keys and the strategy's and the space's own settings are recorded
    own = set(STRATEGIES.get(strategy).Settings.model_fields)
    own |= set(SPACES.get(space).Settings.model_fields)
    assert set(saved) == set(SearchConfig.model_fields) | own
    assert scinas.evaluate(out)["accuracy"] == pytest.approx(res["test"]["accuracy"])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return scinas_cli(*args)  # in this process: what it says and writes is what is tested


@pytest.mark.parametrize("space, strategy", REFUSED)
def test_unsupported_pair_is_refused_before_anything_is_written(tmp_path, space, strategy):
    out = tmp_path / "out"
    res = _cli("run", "--out", str(out), "--strategy", strategy, "--set", f"search.space={space}")
    assert res.returncode == 2, res.stderr
    assert f"strategy {strategy}" in res.stderr and space in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--set", "search.space=nb2O1"], "unknown search space 'nb2O1'. Did you mean 'nb201'"),
        (["--strategy", "dart"], "unknown strategy 'dart'. Did you mean 'darts'"),
        (
            ["--set", "search.tau_max=3"],
            "search.tau_max is a setting of strategy gdas, not of darts",
        ),
        (
            ["--strategy", "random", "--set", "search.order=2"],
            "search.order is a setting of strategy darts, not of random",
        ),
        (["--set", "search.populaton=3"], "Did you mean 'search.population'"),
        (
            ["--set", "search.space=nb201", "--set", "search.nodes=3"],
            "search.nodes=3 is a setting of space darts",
        ),
    ],
)
def test_unknown_names_and_foreign_settings_exit_2_and_write_nothing(tmp_path, args, phrase):
    out = tmp_path / "out"
    res = _cli("run", "--out", str(out), *args)
    assert res.returncode == 2 and phrase in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_settings_of_another_strategy_from_a_preset_or_old_config_are_dropped():
    """A preset written for one-shot search (tiny's search.epochs) and an older config.json that
    kept every strategy's settings in one bag both load for any strategy: only explicit settings
    are refused."""
    cfg = scinas.build_config("tiny", search__strategy="random")
    assert not hasattr(cfg.search, "epochs") and cfg.search.budget == 20
    old = scinas.build_config("tiny").model_dump()
    old["search"].update(strategy="tpe", tau_max=3.0, population=4)
    loaded = scinas.Config.model_validate(old)
    assert loaded.search.startup_trials == 10 and not hasattr(loaded.search, "tau_max")


def test_compare_may_set_the_random_search_it_runs(tmp_path):
    """A random-search setting on a darts config is refused (after the other checks, before
    anything is written), unless compare, which runs random search too, says so."""
    cfg = scinas.build_config("tiny", overrides=[*TINY, "search.eval_fraction=0.3"])
    with pytest.raises(UserError, match="search.eval_fraction is a setting of strategy"):
        scinas.run(cfg, tmp_path / "r", reporter=Reporter(quiet=True))
    assert not (tmp_path / "r").exists()
    cfg = scinas.build_config(
        "tiny", overrides=["search.eval_fraction=0.3"], also_strategies=("random",)
    )
    assert cfg.search.eval_fraction == 0.3 and cfg.search.order == 1
    check_settings_apply(cfg)


def test_strategy_settings_are_checked_by_their_owner():
    with pytest.raises(UserError, match=r"tau_min \(5.0\) exceeds tau_max \(1.0\)"):
        scinas.build_config(
            "tiny", overrides=["search.strategy=gdas", "search.tau_max=1", "search.tau_min=5"]
        )
    with pytest.raises(UserError, match="sample_size"):
        scinas.build_config(
            "tiny",
            overrides=["search.strategy=evolution", "search.population=3", "search.sample_size=4"],
        )


def test_listings_show_every_strategy_and_space():
    strategies = _cli("strategies")
    assert strategies.returncode == 0
    for name in STRATEGIES:
        assert f"\n{name} (" in strategies.stdout
        for key in STRATEGIES.get(name).Settings.model_fields:
            assert f"search.{key} = " in strategies.stdout
    spaces = _cli("spaces")
    assert spaces.returncode == 0
    assert all(spaces.stdout.count(f"{name} (") >= 1 for name in SPACES)


# ----------------------------------------------------------------------------- extending


@pytest.fixture
def throwaway_op():
    """A 3x3 convolution without BatchNorm, registered for one test."""

    @register_op("plain_conv_3x3", takes_relu=True)
    def _plain(C, stride, affine, relu_in):
        layers = [nn.ReLU(inplace=False)] if relu_in else []
        return nn.Sequential(*layers, nn.Conv2d(C, C, 3, stride, 1, bias=False))

    yield "plain_conv_3x3"
    OPS.unregister("plain_conv_3x3")


@pytest.mark.slow
def test_a_new_op_is_one_registration(tmp_path, throwaway_op):
    ops = f"search.ops=[none,skip_connect,{throwaway_op}]"
    cfg = scinas.build_config("tiny", overrides=[*TINY, ops])
    res = scinas.run(cfg, tmp_path / "r", reporter=Reporter(quiet=True))
    record = json.loads((tmp_path / "r" / "arch_weights.jsonl").read_text().splitlines()[-1])
    assert record["ops"] == ["none", "skip_connect", throwaway_op]
    used = {op for op, _ in res["genotype"]["normal"] + res["genotype"]["reduce"]}
    assert used <= {"skip_connect", throwaway_op}
    g = scinas.Genotype.from_dict(
        {
            "normal": [[throwaway_op, 0], [throwaway_op, 1]] * 4,
            "normal_concat": [2, 3, 4, 5],
            "reduce": [[throwaway_op, 0], ["skip_connect", 1]] * 4,
            "reduce_concat": [2, 3, 4, 5],
        }
    )
    trained = scinas.train(cfg, g, tmp_path / "t", reporter=Reporter(quiet=True))
    assert trained["params"] > 0


@pytest.fixture
def chain_space(plugin):
    plugin("chain_space")
    return "chain"


@pytest.mark.slow
def test_a_new_space_is_one_file(tmp_path, chain_space):
    """tests/plugins/chain_space.py only: config (its own typed setting included), black-box
    search, retraining, the report, evaluation and loading an architecture file all go through
    the protocol."""
    refused = [t for t in STRATEGIES if not _supported(chain_space, t)]
    # no supernet here, and the receptive-field search takes the baseline space's networks
    assert {STRATEGIES.get(t).kind for t in refused} == {"one-shot", "receptive-field"}
    cfg = _config(
        chain_space,
        "evolution",
        "search.population=2",
        "search.sample_size=1",
        "search.depth=2",
        report=True,
    )
    assert cfg.search.space_own.depth == 2
    res = scinas.run(cfg, tmp_path / "r", reporter=Reporter(quiet=True))
    arch = load_genotype(tmp_path / "r")
    assert type(arch).__name__ == "ChainArch" and res["genotype"] == arch.to_dict()
    assert (tmp_path / "r" / "report.html").is_file()
    trials = [
        json.loads(line)
        for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
        if '"search_trial"' in line
    ]
    assert len(trials) == 2 and all(len(t["arch"]["kernels"]) == 2 for t in trials)
    again = scinas.train(
        cfg, tmp_path / "r" / "genotype.json", tmp_path / "t", reporter=Reporter(quiet=True)
    )
    assert again["genotype"] == arch.to_dict()
    with pytest.raises(UserError, match="strategy darts"):
        _config(chain_space, "darts")
    with pytest.raises(UserError, match=r"search.depth: Input should be less than or equal to 6"):
        _config(chain_space, "random", "search.depth=7")
    # the space's own setting is refused in another space, naming its owner
    with pytest.raises(UserError, match=r"search.depth=2 is a setting of space chain"):
        _config("macro", "random", "search.depth=2")


def test_a_space_setting_from_an_old_config_of_another_space_is_dropped(chain_space):
    cfg = SearchConfig.model_validate({"strategy": "random", "space": "macro", "depth": 2})
    assert "depth" not in (cfg.model_extra or {}) and cfg.space_own.stages == 4


def test_decisions_of_every_space_decode_to_its_architectures():
    rng = np.random.RandomState(0)
    for name in SPACES:
        space = SPACES.get(name)
        s = SearchConfig.model_validate({"strategy": "random", "space": name})
        arch = space.decisions(s).sample(rng)
        assert space_of(arch) is space
        again = space.from_dict(json.loads(json.dumps(arch.to_dict())))
        assert again == arch
        net = space.build_network(arch, scinas.build_config("tiny").train, (1, 8, 8), 3)
        out = net(torch.zeros(2, 1, 8, 8))
        assert (out[0] if isinstance(out, tuple) else out).shape == (2, 3)


@pytest.mark.slow
def test_a_new_strategy_is_one_file(tmp_path, plugin):
    """tests/plugins/corner_strategy.py only: its typed setting, the listing, the run."""
    from scinas.cli.listings import strategies_text

    plugin("corner_strategy")
    assert "corner" in strategies_text(None) and "search.corner" in strategies_text("corner")
    cfg = _config("macro", "corner", "search.corner=last", "search.widths=[8,16]", report=True)
    assert cfg.search.own.corner == "last"
    res = scinas.run(cfg, tmp_path / "r", reporter=Reporter(quiet=True))
    s = cfg.search
    decisions = SPACES.get("macro").decisions(s)
    last = decisions.decode({n: choices[-1] for n, choices in decisions.decisions})
    assert res["genotype"] == last.to_dict() and load_genotype(tmp_path / "r") == last
    assert (tmp_path / "r" / "report.html").is_file()
    with pytest.raises(UserError, match="search.corner: Input should be 'first' or 'last'"):
        _config("macro", "corner", "search.corner=middle")
    with pytest.raises(UserError, match="search.corner is a setting of strategy corner"):
        sets = ["search.space=macro", "search.strategy=random", "search.corner=last"]
        check_settings_apply(scinas.build_config("tiny", overrides=sets))
