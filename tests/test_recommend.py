"""The recommended search (`scinas.recommend`) and what it is built from: starting a black-box
search from given architectures (``search.start_from``), through the space's ``encode``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import scinas
from conftest import TINY, for_strategy
from scinas.config import build_config
from scinas.spaces import SPACES, load_genotype


def _macro(*extra):
    return build_config(
        "tiny",
        overrides=for_strategy([*TINY, "search.strategy=evolution", "search.space=macro", *extra]),
    )


def test_macro_encode_inverts_decode():
    s = _macro().search
    space = SPACES.get("macro").decisions(s)
    rng = np.random.RandomState(0)
    for _ in range(200):
        arch = space.sample(rng)
        params = space.encode(arch)
        assert params is not None and space.decode(params) == arch
        assert all(params[name] in choices for name, choices in space.decisions)


def test_encode_says_none_outside_the_options():
    space = SPACES.get("macro").decisions(_macro().search)
    assert space.encode(load_genotype("macro:resnet_tiny")) is not None
    assert space.encode(load_genotype("macro:resnet18")) is None  # widths up to 512


@pytest.mark.parametrize(
    "start,phrase",
    [
        ("macro:resnet18", "not within this search's options"),
        ("resnet_tiny", "architecture of the baseline space"),
    ],
)
def test_start_from_refusals(tmp_path, start, phrase):
    cfg = _macro(f"search.start_from=[{start}]")
    out = tmp_path / "run"
    with pytest.raises(scinas.UserError, match=phrase):
        scinas.search(cfg, out)
    assert not out.exists()


def test_search_starts_from_the_given_architectures(tmp_path):
    cfg = _macro(
        "search.start_from=[macro:resnet_tiny]", "search.budget=2", "search.eval_fraction=0.3"
    )
    out = tmp_path / "run"
    scinas.search(cfg, out)
    trials = [json.loads(x) for x in (out / "metrics.jsonl").open()]
    trials = [e for e in trials if e["event"] == "search_trial"]
    assert len(trials) == 2
    assert trials[0]["arch"] == load_genotype("macro:resnet_tiny").to_dict()


def test_recommended_config_is_valid_and_budgeted():
    from scinas.recommend import EVOLUTION_SHARE, SEARCH_SHARE, macro_evolution, recommended

    cfg = recommended(build_config("tiny"))
    s = cfg.search
    assert (s.strategy, s.space, s.morph, s.recipe, s.start_from) == (
        "lineage",
        "macro",
        True,
        True,
        ["macro:resnet_tiny"],
    )
    assert s.time_budget == pytest.approx(cfg.compare.budget * SEARCH_SHARE)
    assert cfg.train.time_budget == pytest.approx(cfg.compare.budget * (1 - SEARCH_SHARE))
    assert recommended(build_config("tiny"), architecture=False).search.morph is False
    unbudgeted = recommended(build_config("tiny", overrides=["compare.budget=null"]))
    assert unbudgeted.search.time_budget is None and unbudgeted.search.budget < 100
    evo = macro_evolution(build_config("tiny"))
    assert (evo.search.strategy, evo.search.pruner, evo.search.continue_winner) == (
        "evolution",
        "asha",
        True,
    )
    assert evo.search.time_budget == pytest.approx(cfg.compare.budget * EVOLUTION_SHARE)


def test_compare_runs_the_recommended_search(tmp_path):
    from scinas.compare import compare

    cfg = build_config("tiny", overrides=[*TINY, "compare.budget=null", "train.epochs=2"])
    res = compare(cfg, tmp_path / "cmp", seeds=1, methods=["scinas", "resnet_tiny"])
    run = tmp_path / "cmp" / "scinas" / "seed0"
    conf = json.loads((run / "config.json").read_text())
    assert conf["search"]["strategy"] == "lineage" and conf["search"]["space"] == "macro"
    assert res["methods"]["scinas"]["seeds_done"] == [0]
    assert set(res["vs_scinas"]) == {"resnet_tiny"}


def test_on_series_the_recommended_search_starts_from_resnet1d(tmp_path):
    from scinas.compare_methods import COMPARE_METHODS
    from scinas.recommend import SERIES_START, recommended

    cfg = recommended(build_config("tiny"), series=True)
    s = cfg.search
    assert (s.strategy, s.space, s.start_from, s.recipe) == (
        "lineage",
        "baseline",
        SERIES_START,
        True,
    )
    assert s.time_budget is not None  # the same share of the budget as on images
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 1, 32)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x_train=x, y_train=np.arange(60) % 2)
    series = build_config("tiny", overrides=[f"data.dataset={tmp_path / 's.npz'}"])
    for name in ("scinas", "hpo"):
        ran = COMPARE_METHODS.get(name).configure(series).search
        assert (ran.space, ran.start_from) == ("baseline", SERIES_START), name
    assert COMPARE_METHODS.get("scinas").configure(build_config("tiny")).search.space == "macro"
