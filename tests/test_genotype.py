from __future__ import annotations

import json

import pytest
import torch

from scinas.errors import UserError
from scinas.flops import count_parameters
from scinas.ops import DARTS_OPS
from scinas.spaces import load_genotype
from scinas.spaces.common import max_reductions
from scinas.spaces.darts.genotype import (
    Genotype,
    derive_cell,
    edge_index,
    num_edges,
    published_genotypes,
)
from scinas.spaces.darts.network import Network, plan_reductions


def test_published_genotypes_load_and_round_trip(tmp_path):
    assert {"DARTS_V1", "DARTS_V2"} <= set(published_genotypes())
    g = load_genotype("DARTS_V2")
    assert g.normal[0] == ("sep_conv_3x3", 0) and g.reduce_concat == (2, 3, 4, 5)
    path = tmp_path / "g.json"
    g.to_json(path)
    assert json.loads(path.read_text())["normal"][7] == ["dil_conv_3x3", 2]
    assert load_genotype(path) == g


def test_darts_v2_has_the_published_parameter_count():
    # DARTS (Liu et al. 2019), CIFAR-10: 3.3M parameters at C=36, 20 cells, auxiliary head off.
    net = Network(load_genotype("DARTS_V2"), 3, 10, (32, 32), C=36, layers=20, auxiliary=True)
    params = count_parameters(net)
    assert abs(params - 3.3e6) < 0.05e6, params
    assert count_parameters(net, exclude_auxiliary=False) > params


def test_edge_index_enumerates_rows_in_order():
    rows = [edge_index(n, j) for n in range(4) for j in range(n + 2)]
    assert rows == list(range(14)) and num_edges(4) == 14


def test_derive_picks_two_strongest_edges_and_excludes_none():
    ops = list(DARTS_OPS)
    w = torch.full((num_edges(2), len(ops)), 0.1)
    # node 0: edge from state 1 strongest (sep_conv_5x5), edge 0 has 'none' largest but
    # max_pool second
    w[edge_index(0, 0), ops.index("none")] = 0.9
    w[edge_index(0, 0), ops.index("max_pool_3x3")] = 0.3
    w[edge_index(0, 1), ops.index("sep_conv_5x5")] = 0.5
    # node 1: state 2 and state 0 beat state 1
    w[edge_index(1, 2), ops.index("dil_conv_3x3")] = 0.8
    w[edge_index(1, 0), ops.index("skip_connect")] = 0.6
    cell, counts = derive_cell(w, ops, 2)
    assert counts == (2, 2)
    assert cell == (
        ("sep_conv_5x5", 1),
        ("max_pool_3x3", 0),
        ("dil_conv_3x3", 2),
        ("skip_connect", 0),
    )


@pytest.mark.parametrize(
    "bad, phrase",
    [
        ({"normal": [["sep_conv_3x3", 0]]}, "not a DARTS genotype"),
        (
            {
                "normal": [["sep_conv_3x3", 0], ["none", 1], ["skip_connect", 2]],
                "normal_concat": [2, 3],
                "normal_edges_per_node": [1, 1],
                "reduce": [["max_pool_3x3", 0], ["skip_connect", 1]],
                "reduce_concat": [2],
            },
            "must be positive and add up to the 3 edges",
        ),
        (
            {
                "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 5]],
                "normal_concat": [2],
                "reduce": [["max_pool_3x3", 0], ["skip_connect", 1]],
                "reduce_concat": [2],
            },
            "reads state 5",
        ),
        (
            {
                "normal": [["sep_conv_3x3", 0], ["sepconv_3x3", 1]],
                "normal_concat": [2],
                "reduce": [["max_pool_3x3", 0], ["skip_connect", 1]],
                "reduce_concat": [2],
            },
            "Did you mean",
        ),
    ],
)
def test_bad_genotypes_are_rejected(bad, phrase):
    with pytest.raises(UserError, match=phrase):
        Genotype.from_dict(bad)


def test_unknown_genotype_name_suggests():
    with pytest.raises(UserError, match="Did you mean 'DARTS_V2'"):
        load_genotype("DARTS_v2")


def test_reductions_adapt_to_small_and_non_square_inputs():
    assert max_reductions(8, 8) == 2 and max_reductions(4, 30) == 1 and max_reductions(32, 32) == 4
    assert plan_reductions(8, (32, 32)) == (2, 5)  # DARTS: layers//3, 2*layers//3
    assert plan_reductions(8, (4, 4)) == (4,)
    with pytest.raises(UserError, match="at least 5×5"):
        plan_reductions(8, (4, 4), reductions=2)
    with pytest.raises(UserError, match="at least 4×4"):
        plan_reductions(8, (3, 30))


@pytest.mark.parametrize("shape", [(1, 8, 8), (5, 30, 80), (3, 7, 9)])
def test_network_forward_any_input_shape(shape):
    net = Network(
        load_genotype("DARTS_V1"), shape[0], 4, shape[1:], C=4, layers=5, auxiliary=True
    ).train()
    out, aux = net(torch.randn(3, *shape))
    assert out.shape == (3, 4) and aux.shape == (3, 4)
    net.eval()
    out, aux = net(torch.randn(3, *shape))
    assert out.shape == (3, 4) and aux is None
