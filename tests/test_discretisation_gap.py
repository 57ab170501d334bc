"""benchmarks/discretisation_gap.py takes the supernet -> derived network step apart; its last
row must be what `train.init=supernet` itself scored before fine-tuning, else the table it
prints explains some other network."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import scinas
from conftest import TINY
from scinas.progress import Reporter


@pytest.fixture
def gap_module():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import discretisation_gap

        yield discretisation_gap
    finally:
        sys.path.pop(0)


def test_the_derived_row_is_the_inherited_networks_start(tmp_path, gap_module):
    # two search epochs: the last one ran with DARTS-' auxiliary skip at half its weight
    cfg = scinas.build_config(
        "tiny", overrides=[*TINY, "search.epochs=2", "train.init=supernet", "seed=1"]
    )
    results = scinas.run(cfg, tmp_path / "run", reporter=Reporter(quiet=True))
    rows = gap_module.rows_of(tmp_path / "run")
    start = results["inherited"]["val_at_start"]
    # the loss too: on tiny data the accuracy can sit at one class whatever the statistics
    assert rows["derived_metrics"]["loss"] == pytest.approx(start["loss"], rel=1e-5)
    assert rows["derived (top-2 edges per node)"] == start["accuracy"]
    assert rows["reported_supernet_val"] == results["supernet"]["val"]["accuracy"]
    assert rows["mixture, search's last aux skip"] is not None  # the search used one
    for key in gap_module.COLUMNS:
        assert 0.0 <= rows[key] <= 1.0
    assert 0.125 <= rows["mean_strongest_weight_normal"] <= 1.0  # 8 ops: at least uniform
