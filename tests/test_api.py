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


@pytest.mark.parametrize("strategy, tracked", [("darts", {20}), ("gdas", {0, 10})])
def test_supernet_batchnorm_statistics_behind_its_score(tmp_path, strategy, tracked):
    """DARTS averages its supernet's BatchNorm statistics over the epoch's last 10 steps (two
    train-mode forwards each: the architecture and the weight step) instead of recalibrating;
    GDAS, where each batch reaches one op per edge, recalibrates on 10 batches before scoring
    (ops that no recalibration batch sampled keep reset statistics: 0 batches)."""
    from scinas.rundir import load_state

    sets = [*TINY, "search.max_samples=1000", f"search.strategy={strategy}"]  # 16 steps
    sets.append("search.ops=[none,skip_connect,sep_conv_3x3,max_pool_3x3]")  # 4 ops: faster
    cfg = scinas.build_config(preset="tiny", overrides=sets, data__dataset="digits")
    scinas.search(cfg, tmp_path / "s", reporter=scinas.progress.Reporter(quiet=True))
    state = load_state(tmp_path / "s" / "supernet.pt")
    counts = {int(v) for k, v in state.items() if k.endswith("num_batches_tracked")}
    assert counts == tracked


def test_warmup_epochs_leave_the_alphas_alone_and_do_not_warn(tmp_path):
    """search.warmup_epochs trains only the weights: the alphas logged after a warm-up epoch are
    the initial ones, and no collapse warning is derived from them."""

    class Lines(scinas.progress.Reporter):
        def __init__(self):
            super().__init__(quiet=True)
            self.lines = []

        def log(self, message):
            self.lines.append(message)

    sets = [*TINY, "search.epochs=2", "search.warmup_epochs=1"]
    cfg = scinas.build_config(preset="tiny", overrides=sets, data__dataset="digits")
    reporter = Lines()
    scinas.search(cfg, tmp_path / "s", reporter=reporter)
    rows = [json.loads(x) for x in (tmp_path / "s" / "arch_weights.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    first, second = rows[0]["normal"], rows[1]["normal"]
    # softmax of the 1e-3-scale initial alphas: every weight within 1% of uniform after warm-up
    assert all(abs(w * len(row) - 1) < 0.01 for row in first for w in row)
    assert second != first  # the second epoch updated them
    assert not any(line.startswith("warning: epoch 1:") for line in reporter.lines)
