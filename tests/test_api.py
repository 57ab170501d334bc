"""The Python API does what the CLI does, in a few lines."""

from __future__ import annotations

import json

import pytest

import scinas
from conftest import TINY


def test_api_search_then_train_a_searched_genotype(tmp_path):
    cfg = scinas.build_config(preset="tiny", overrides=TINY, data__dataset="digits", seed=3)
    genotype = scinas.search(cfg, tmp_path / "s", reporter=scinas.progress.Reporter(quiet=True))
    assert isinstance(genotype, scinas.Genotype)
    assert scinas.load_genotype(tmp_path / "s") == genotype
    results = scinas.train(
        cfg, tmp_path / "s", tmp_path / "t", reporter=scinas.progress.Reporter(quiet=True)
    )
    assert results["genotype"] == genotype.to_dict()
    on_disk = json.loads((tmp_path / "t" / "results.json").read_text())
    assert on_disk["test"]["accuracy"] == pytest.approx(results["test"]["accuracy"])
    again = scinas.evaluate(tmp_path / "t", reporter=scinas.progress.Reporter(quiet=True))
    assert again["accuracy"] == pytest.approx(results["test"]["accuracy"])


def test_same_seed_same_result(tmp_path):
    cfg = scinas.build_config(overrides=TINY)
    quiet = scinas.progress.Reporter(quiet=True)
    a = scinas.run(cfg, tmp_path / "a", reporter=quiet)
    b = scinas.run(cfg, tmp_path / "b", reporter=quiet)
    assert a["genotype"] == b["genotype"]
    assert a["test"] == b["test"]


def test_api_errors_are_user_errors(tmp_path):
    with pytest.raises(scinas.UserError, match="Did you mean 'DARTS_V1'"):
        scinas.load_genotype("DARTS-V1")
    with pytest.raises(scinas.UserError, match="not a scinas run"):
        scinas.evaluate(tmp_path)
