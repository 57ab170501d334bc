"""Every strategy end to end on the bundled digits (seconds each), in both search spaces."""

from __future__ import annotations

import json

import numpy as np
import pytest

import scinas
from conftest import REPORT, TINY, for_strategy
from scinas.spaces import load_genotype
from scinas.spaces.darts.genotype import Genotype
from scinas.spaces.nb201 import NB201Arch


def cfg(*extra):
    sets = for_strategy([*TINY, "search.epochs=2", *extra])
    return scinas.build_config("tiny", overrides=sets)


def events(out, kind):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [e for e in rows if e["event"] == kind]


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_gdas_anneals_and_returns_a_valid_architecture(tmp_path, space):
    out = tmp_path / "gdas"
    res = scinas.run(cfg("search.strategy=gdas", f"search.space={space}", "search.epochs=3"), out)
    epochs = events(out, "search_epoch")
    assert [e["tau"] for e in epochs] == pytest.approx([10.0, 5.05, 0.1])
    arch = load_genotype(out)
    assert isinstance(arch, Genotype if space == "darts" else NB201Arch)
    assert res["genotype"] == arch.to_dict()
    assert epochs[-1]["genotype"] == arch.to_dict()
    weights = [json.loads(line) for line in (out / "arch_weights.jsonl").read_text().splitlines()]
    assert len(weights) == 3 and weights[0]["space"] == space
    assert 0 <= res["test"]["accuracy"] <= 1 and (out / "supernet.pt").is_file()


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_rsws_ranks_budget_architectures_and_returns_the_best(tmp_path, space):
    out = tmp_path / "rsws"
    scinas.search(
        cfg(REPORT, "search.strategy=rsws", f"search.space={space}", "search.budget=4"), out
    )
    ranked = events(out, "rsws_rank")
    assert len(ranked) == 4
    assert len({json.dumps(r["arch"]) for r in ranked}) == 4
    best = max(ranked, key=lambda r: r["val"]["accuracy"])
    assert load_genotype(out).to_dict() == best["arch"]
    assert not (out / "arch_weights.jsonl").exists()  # rsws has no architecture weights
    assert (out / "report.html").is_file()  # search-only runs get their report too


def test_darts_on_nb201_space_then_evaluate(tmp_path):
    out = tmp_path / "darts201"
    res = scinas.run(cfg("search.space=nb201"), out)
    arch = load_genotype(out)
    assert isinstance(arch, NB201Arch)
    weights = json.loads((out / "arch_weights.jsonl").read_text().splitlines()[-1])
    assert np.array(weights["edges"]).shape == (6, 5)
    # the derived architecture is the argmax of the last alphas, `none` included
    best = np.array(weights["alpha"]).argmax(1)
    assert arch.ops == tuple(weights["ops"][k] for k in best)
    again = scinas.evaluate(out)
    assert again["accuracy"] == pytest.approx(res["test"]["accuracy"])


@pytest.mark.parametrize("strategy", ["random", "evolution", "tpe", "reinforce"])
def test_black_box_on_real_data_uses_its_study_and_resumes(tmp_path, strategy):
    out = tmp_path / "bb"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    extra = [f"search.strategy={strategy}", "search.eval_fraction=0.2", f"search.storage={url}"]
    g2 = scinas.search(cfg(*extra, "search.budget=2"), out)
    trials = events(out, "search_trial")
    assert len(trials) == 2 and all(0 <= t["score"] <= 1 for t in trials)
    assert isinstance(g2, Genotype)
    # A second search on the same storage continues the study: only 1 new trial for budget 3.
    out2 = tmp_path / "bb2"
    scinas.search(cfg(*extra, "search.budget=3"), out2)
    assert [t["trial"] for t in events(out2, "search_trial")] == [2]
    chosen = load_genotype(out2).to_dict()
    all_trials = trials + events(out2, "search_trial")
    best = max(all_trials, key=lambda t: t["score"])
    assert chosen == best["arch"]


def test_black_box_default_storage_is_in_the_run_dir(tmp_path):
    out = tmp_path / "bb"
    scinas.search(cfg("search.strategy=random", "search.budget=2", "search.space=nb201"), out)
    assert (out / "study.db").is_file()
    assert isinstance(load_genotype(out), NB201Arch)


def test_train_an_nb201_string(tmp_path):
    best = (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    res = scinas.train(cfg(), best, tmp_path / "t")
    assert res["genotype"] == {"space": "nb201", "arch": best}
    assert res["params"] > 0


def test_train_a_resnet_baseline_then_reload(tmp_path):
    out = tmp_path / "resnet"
    res = scinas.train(cfg(), "resnet_tiny", out)
    assert res["genotype"] == {"space": "baseline", "name": "resnet_tiny"}
    assert 50_000 < res["params"] < 90_000  # 10 classes and 1 input channel: below 78k
    again = scinas.evaluate(out)
    assert again["accuracy"] == pytest.approx(res["test"]["accuracy"])
    with pytest.raises(scinas.UserError, match="Did you mean 'resnet18'"):
        load_genotype("resnt18")


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    scinas.run(cfg("tensorboard=true"), out)
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "search_epoch/val/accuracy" in tags and "train_epoch/train/loss" in tags
    assert "test/accuracy" in tags and "search_epoch/diagnostics/parameter_free" in tags
    assert [e.step for e in acc.Scalars("search_epoch/val/accuracy")] == [1, 2]
