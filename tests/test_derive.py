"""Derivation rules (--derive): parsing, the cells they read off known weights, genotypes with
other than two edges per node, and both ends of `scinas run` (a top-3 cell, the supernet kept)."""

from __future__ import annotations

import json

import pytest
import torch

import scinas
from conftest import TINY, scinas_cli
from scinas.errors import UserError
from scinas.export import load_trained
from scinas.flops import count_parameters
from scinas.ops import DARTS_OPS
from scinas.spaces.darts.genotype import DeriveRule, Genotype, derive_cell, edge_index, num_edges
from scinas.spaces.darts.network import Network

OPS = list(DARTS_OPS)


def weights() -> torch.Tensor:
    """Op weights of a 2-node cell with a known ranking.

    node 0 (inputs 0, 1): input 1 strongest (sep_conv_5x5 0.5, also max_pool 0.35), input 0 has
    'none' 0.9 and max_pool 0.3.  node 1 (inputs 0, 1, 2): input 2 (dil_conv_3x3 0.8) > input 0
    (skip 0.6) > input 1 (avg_pool 0.2)."""
    w = torch.full((num_edges(2), len(OPS)), 0.01)
    w[edge_index(0, 0), OPS.index("none")] = 0.9
    w[edge_index(0, 0), OPS.index("max_pool_3x3")] = 0.3
    w[edge_index(0, 1), OPS.index("sep_conv_5x5")] = 0.5
    w[edge_index(0, 1), OPS.index("max_pool_3x3")] = 0.35
    w[edge_index(1, 2), OPS.index("dil_conv_3x3")] = 0.8
    w[edge_index(1, 0), OPS.index("skip_connect")] = 0.6
    w[edge_index(1, 1), OPS.index("avg_pool_3x3")] = 0.2
    return w


@pytest.mark.parametrize(
    "rule, cell, counts",
    [
        ("top2", [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2),
                  ("skip_connect", 0)], (2, 2)),
        ("top1", [("sep_conv_5x5", 1), ("dil_conv_3x3", 2)], (1, 1)),
        ("top3", [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2),
                  ("skip_connect", 0), ("avg_pool_3x3", 1)], (2, 3)),
        # node 0 has no 3rd input: it keeps its 2nd
        ("ranks2-3", [("max_pool_3x3", 0), ("skip_connect", 0), ("avg_pool_3x3", 1)], (1, 2)),
        # node 0 has neither a 3rd nor a 4th: its weakest stays
        ("ranks3-4", [("max_pool_3x3", 0), ("avg_pool_3x3", 1)], (1, 1)),
        # every op >= 0.3: input 1 keeps two ops; 'none' excluded
        ("threshold:0.3", [("sep_conv_5x5", 1), ("max_pool_3x3", 1), ("max_pool_3x3", 0),
                           ("dil_conv_3x3", 2), ("skip_connect", 0)], (3, 2)),
        # nothing reaches 0.95: the strongest op of each node
        ("threshold:0.95", [("sep_conv_5x5", 1), ("dil_conv_3x3", 2)], (1, 1)),
        # 'none' competes: input 0 now ranks first with 'none'
        ("top2+none", [("none", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 2),
                       ("skip_connect", 0)], (2, 2)),
    ],
)  # fmt: skip
def test_rules_read_the_expected_cell(rule, cell, counts):
    got_cell, got_counts = derive_cell(weights(), OPS, 2, DeriveRule.parse(rule))
    assert list(got_cell) == cell and got_counts == counts
    assert str(DeriveRule.parse(rule)) == rule


@pytest.mark.parametrize("bad", ["top0", "top", "ranks3-2", "ranks2", "threshold:1.5", "argmax",
                                 "supernet+none", "top2+skip"])  # fmt: skip
def test_unknown_rules_are_rejected(bad):
    with pytest.raises(UserError, match="unknown derivation .*ranksA-B"):
        DeriveRule.parse(bad)


def test_variable_edge_genotype_round_trips_and_builds():
    w = weights()
    rule = DeriveRule.parse("threshold:0.3")
    normal, nc = derive_cell(w, OPS, 2, rule)
    g = Genotype(normal, (2, 3), normal, (2, 3), normal_counts=nc, reduce_counts=nc)
    d = g.to_dict()
    assert d["normal_edges_per_node"] == [3, 2]
    assert Genotype.from_dict(json.loads(json.dumps(d))) == g
    assert g.node_edges("normal") == [[0, 1, 2], [3, 4]] and g.steps == 2
    # two-per-node genotypes keep the plain DARTS form
    top2, c2 = derive_cell(w, OPS, 2)
    plain = Genotype(top2, (2, 3), top2, (2, 3), normal_counts=c2, reduce_counts=c2)
    assert "normal_edges_per_node" not in plain.to_dict() and plain.normal_counts == ()
    # the extra edge is built and summed into its node; same output shape
    net = Network(g, 3, 10, (16, 12), C=8, layers=3, auxiliary=False)
    ref = Network(plain, 3, 10, (16, 12), C=8, layers=3, auxiliary=False)
    assert len(net.cells[0].ops) == 5 and len(ref.cells[0].ops) == 4
    assert net.cells[0].node_edges == [[0, 1, 2], [3, 4]]
    assert net(torch.randn(2, 3, 16, 12))[0].shape == (2, 10)
    # a node summing a 'none' edge works (zeros)
    nn_cell, nn_counts = derive_cell(w, OPS, 2, DeriveRule.parse("top2+none"))
    g_none = Genotype(nn_cell, (2, 3), nn_cell, (2, 3))
    assert Network(g_none, 1, 3, (8, 8), C=4, layers=2, auxiliary=False)(torch.randn(1, 1, 8, 8))[
        0
    ].shape == (1, 3)


@pytest.mark.parametrize(
    "sets, phrase",
    [
        (["search.strategy=gdas", "search.derive=threshold:0.2"], "needs strategy darts"),
        (["search.strategy=rsws", "search.derive=top3"], "needs strategy darts or drnas or gdas"),
        (["search.space=nb201", "search.derive=top1"], "space darts"),
        (["search.derive=top-2"], "unknown derivation 'top-2'"),
    ],
)
def test_rules_that_do_not_apply_are_rejected(sets, phrase):
    with pytest.raises(UserError, match=phrase):
        scinas.build_config("tiny", overrides=sets)


def test_cli_unknown_derive_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    res = scinas_cli("run", "--derive", "best3", "--out", out)
    assert res.returncode == 2 and "unknown derivation 'best3'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_run_with_top3_cell(tmp_path):
    cfg = scinas.build_config("tiny", overrides=[*TINY, "search.nodes=3", "search.derive=top3"])
    res = scinas.run(cfg, tmp_path / "r")
    g = json.loads((tmp_path / "r" / "genotype.json").read_text())
    assert g["normal_edges_per_node"] == [2, 3, 3] == g["reduce_edges_per_node"]
    assert res["genotype"] == g and 0 <= res["test"]["accuracy"] <= 1
    net, _, _ = load_trained(tmp_path / "r")
    assert net.cells[0].node_edges == [[0, 1], [2, 3, 4], [5, 6, 7]]


def test_run_keeping_the_supernet(tmp_path):
    cfg = scinas.build_config("tiny", overrides=[*TINY, "search.derive=supernet"])
    out = tmp_path / "s"
    res = scinas.run(cfg, out)
    assert res["final_model"] == "supernet" and res["train_seconds"] == 0.0
    assert not any("train_epoch" in line for line in (out / "metrics.jsonl").open())
    # the kept model is the supernet: same weights as supernet.pt, and `evaluate` rebuilds it
    a = torch.load(out / "model.pt", weights_only=True)
    b = torch.load(out / "supernet.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = scinas.evaluate(out)
    assert again["accuracy"] == pytest.approx(res["test"]["accuracy"])
    assert res["params"] == count_parameters(load_trained(out)[0])
