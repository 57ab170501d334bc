from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from scinas.errors import UserError
from scinas.spaces.nb201 import (
    NB201_EDGES,
    NB201_OPS,
    NB201Arch,
    NB201Cell,
    NB201Network,
    NB201SearchCell,
    NB201Supernet,
    ResidualReduction,
    make_op,
)

# the best CIFAR-10 architecture of NAS-Bench-201
BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
    "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
SHAPES = [(3, 32, 32), (1, 8, 8), (5, 12, 20), (3, 7, 9)]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- the architecture and its string form -------------------------------------------------------


@pytest.mark.parametrize(
    "s",
    [
        BEST,
        ALL_NONE,
        "|skip_connect~0|+|none~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|skip_connect~2|",
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
    ],
)
def test_parse_str_round_trip(s):
    arch = NB201Arch.parse(s)
    assert str(arch) == s
    assert NB201Arch.parse(str(arch)) == arch
    assert NB201Arch.from_indices(arch.indices()) == arch
    assert NB201Arch.from_dict(json.loads(arch.to_json())) == arch


def test_parse_puts_ops_in_edge_order():
    arch = NB201Arch.parse(
        "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"
    )
    assert arch.ops == (
        "nor_conv_1x1",  # (1, 0)
        "skip_connect",  # (2, 0)
        "avg_pool_3x3",  # (2, 1)
        "none",  # (3, 0)
        "nor_conv_3x3",  # (3, 1)
        "skip_connect",  # (3, 2)
    )
    assert NB201_EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@pytest.mark.parametrize(
    "bad, words",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", ["2 node group", "needs 3"]),
        (BEST + "+|none~0|", ["4 node group"]),
        ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", ["start and end with '|'"]),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", ["node 2 must have 2", "lists 1"]),
        ("|none~0|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", ["node 1 must have 1"]),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", ["reads input '2'", "node 1"]),
        ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", ["reads input '1'", "in that order"]),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~x|", ["reads input 'x'"]),
        ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", ["'none'", "'op~input'"]),
        ("|none~0|+|none~0||+|none~0|none~1|none~2|", ["'op~input'"]),
        (
            "|nor_conv3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            ["unknown NAS-Bench-201 op 'nor_conv3x3'", "Did you mean 'nor_conv_3x3'?"],
        ),
        ("", ["1 node group"]),
    ],
)
def test_malformed_strings_raise_user_error(bad, words):
    with pytest.raises(UserError) as info:
        NB201Arch.parse(bad, source="my.json")
    msg = str(info.value)
    assert msg.startswith("my.json")
    for word in words:
        assert word in msg
    if "unknown" not in msg:
        assert "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|" in msg  # shows the expected form


def test_parse_rejects_non_strings():
    with pytest.raises(UserError, match="must be a string"):
        NB201Arch.parse(["none"] * 6)


def test_constructor_validates():
    with pytest.raises(UserError, match="6 edges"):
        NB201Arch(("none",) * 5)
    with pytest.raises(UserError, match="Did you mean 'skip_connect'"):
        NB201Arch(("skip_conect",) + ("none",) * 5)
    with pytest.raises(UserError, match="parse"):
        NB201Arch(BEST)
    assert NB201Arch(["none"] * 6).ops == ("none",) * 6  # lists become tuples (hashable)


def test_dict_and_json_forms(tmp_path):
    arch = NB201Arch.parse(BEST)
    assert arch.to_dict() == {"space": "nb201", "arch": BEST}
    text = arch.to_json()
    assert text.endswith("}\n") and json.loads(text) == arch.to_dict()
    assert text == json.dumps(arch.to_dict(), indent=2) + "\n"
    path = tmp_path / "arch.json"
    arch.to_json(path)
    assert path.read_text() == text
    assert NB201Arch.from_dict({"arch": BEST}) == arch  # space may be left out


@pytest.mark.parametrize(
    "bad, words",
    [
        ([BEST], ["expected a dict", "list"]),
        ({"space": "darts", "arch": BEST}, ["'darts'", "not 'nb201'"]),
        ({"space": "nb201"}, ["no 'arch'"]),
        ({"space": "nb201", "arch": 3}, ["must be a string"]),
        ({"space": "nb201", "arch": "|none~0|"}, ["node group"]),
        ({"normal": [], "reduce": []}, ["no 'arch'"]),
    ],
)
def test_from_dict_rejects_bad_input(bad, words):
    with pytest.raises(UserError) as info:
        NB201Arch.from_dict(bad, source="run/arch.json")
    assert str(info.value).startswith("run/arch.json")
    for word in words:
        assert word in str(info.value)


def test_op_shares_and_indices():
    arch = NB201Arch.parse(BEST)
    shares = arch.op_shares()
    assert list(shares) == list(NB201_OPS)
    assert shares["nor_conv_3x3"] == pytest.approx(5 / 6)
    assert shares["skip_connect"] == pytest.approx(1 / 6)
    assert shares["none"] == shares["nor_conv_1x1"] == shares["avg_pool_3x3"] == 0
    assert sum(shares.values()) == pytest.approx(1.0)
    assert arch.indices() == (3, 3, 3, 1, 3, 3)
    assert NB201Arch.from_indices(torch.tensor([0, 1, 2, 3, 4, 0])).ops == NB201_OPS + ("none",)
    for bad in ([0] * 5, [0, 0, 0, 0, 0, 5], [-1, 0, 0, 0, 0, 0]):
        with pytest.raises(UserError, match="6 op indices"):
            NB201Arch.from_indices(bad)


# --- ops and blocks -----------------------------------------------------------------------------


def test_make_op():
    assert make_op("none", 4, True, True) is None
    assert isinstance(make_op("skip_connect", 4, True, True), torch.nn.Identity)
    x = torch.randn(2, 4, 5, 7)
    for name in NB201_OPS[1:]:
        assert make_op(name, 4, False, True)(x).shape == x.shape
    conv = make_op("nor_conv_3x3", 4, affine=False, track_running_stats=False)
    relu, conv2d, bn = conv
    assert isinstance(relu, torch.nn.ReLU) and conv2d.kernel_size == (3, 3)
    assert conv2d.bias is None and conv2d.padding == (1, 1)
    assert bn.weight is None and bn.running_mean is None
    pool = make_op("avg_pool_3x3", 4, True, True)
    ones = torch.ones(1, 1, 4, 4)
    assert torch.allclose(pool(ones), ones)  # count_include_pad=False: no darkening at borders
    with pytest.raises(UserError, match="Did you mean"):
        make_op("nor_conv_5x5", 4, True, True)


@pytest.mark.parametrize("hw, out", [((7, 9), (4, 5)), ((8, 8), (4, 4)), ((2, 3), (1, 2))])
def test_residual_reduction_halves_with_ceil(hw, out):
    block = ResidualReduction(3, 6)
    x = torch.randn(2, 3, *hw)
    assert block.shortcut(x).shape == block.branch(x).shape == (2, 6, *out)
    assert block(x).shape == (2, 6, *out)
    same = ResidualReduction(3, 6, stride=1)
    assert same(x).shape == (2, 6, *hw)


def test_cell_skips_none_and_zero_nodes():
    arch = NB201Arch.parse("|none~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|none~2|")
    cell = NB201Cell(4, arch)
    assert len(cell.ops) == 2  # only the two skip connections are modules
    x = torch.randn(2, 4, 5, 5)
    # node 1 has only a `none` input, so it is zero, and node 3 reads only node 1
    assert torch.equal(cell(x), torch.zeros_like(x))
    arch = NB201Arch.parse(
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    )
    assert torch.allclose(NB201Cell(4, arch)(x), 2 * x)


# --- the discrete network -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_network_output_shapes(shape):
    net = NB201Network(NB201Arch.parse(BEST), shape[0], 7, shape[1:], C=4, cells_per_stage=1)
    out, aux = net(torch.randn(2, *shape))
    assert out.shape == (2, 7) and aux is None
    assert net.drop_path_prob == 0.0


@pytest.mark.parametrize(
    "hw, strides",
    [
        ((32, 32), [2, 2]),
        ((8, 8), [2, 2]),
        ((2, 2), [2, 1]),
        ((1, 1), [1, 1]),
        ((1, 9), [1, 1]),
        ((3, 2), [2, 1]),
    ],
)
def test_reductions_only_while_the_map_is_2x2(hw, strides):
    net = NB201Network(NB201Arch.parse(BEST), 1, 2, hw, C=2, cells_per_stage=1)
    blocks = [m for m in net.cells if isinstance(m, ResidualReduction)]
    assert [b.stride for b in blocks] == strides
    assert net(torch.randn(2, 1, *hw))[0].shape == (2, 2)


def test_all_none_architecture_runs():
    net = NB201Network(NB201Arch.parse(ALL_NONE), 3, 5, (7, 9), C=4, cells_per_stage=2)
    out, _ = net(torch.randn(2, 3, 7, 9))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()  # the residual blocks and head still train


def test_parameter_count_matches_the_benchmark():
    """NAS-Bench-201 (C=16, N=5, CIFAR-10) reports 0.073 MB to 1.531 MB of parameters over the
    space; these exact counts pin the macro skeleton (stem, blocks, BN+ReLU head)."""

    def count(s: str | tuple[str, ...]) -> int:
        arch = NB201Arch.parse(s) if isinstance(s, str) else NB201Arch(s)
        return n_params(NB201Network(arch, 3, 10, (32, 32)))

    assert count(ALL_NONE) == 73_306  # 0.073 MB: the parameter-free cells
    assert count(("nor_conv_3x3",) * 6) == 1_531_546  # 1.531 MB: the largest cell
    # The CIFAR-10 optimum has five 3×3 convs: 5/6 of the cell parameters of the largest one.
    best = count(BEST)
    assert best == 1_288_506
    assert best == pytest.approx(73_306 + 5 / 6 * (1_531_546 - 73_306), rel=0.01)
    # With one of those convs 1×1 instead: 1.073 MB.
    one_1x1 = BEST.replace("nor_conv_3x3~1|nor_conv_3x3~2", "nor_conv_1x1~1|nor_conv_3x3~2")
    assert one_1x1 != BEST
    assert count(one_1x1) == pytest.approx(1.073e6, rel=0.03)


def test_network_validates_its_arguments():
    with pytest.raises(UserError, match="NB201Arch"):
        NB201Network(BEST, 3, 10, (32, 32))
    with pytest.raises(UserError, match="input_hw"):
        NB201Network(NB201Arch.parse(BEST), 3, 10, (0, 32))
    with pytest.raises(UserError, match="cells_per_stage"):
        NB201Network(NB201Arch.parse(BEST), 3, 10, (32, 32), cells_per_stage=0)


# --- the supernet -------------------------------------------------------------------------------


def small_supernet(shape=(1, 8, 8), **kw) -> NB201Supernet:
    kw = {"C": 4, "cells_per_stage": 1, **kw}
    return NB201Supernet(shape[0], 3, shape[1:], **kw)


def backward(net: NB201Supernet, shape=(1, 8, 8)) -> None:
    x = torch.randn(4, *shape)
    F.cross_entropy(net(x), torch.tensor([0, 1, 2, 0])).backward()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sampling", ["softmax", "gumbel"])
def test_supernet_output_shapes(shape, sampling):
    net = small_supernet(shape)
    net.sampling = sampling
    out = net(torch.randn(2, *shape))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    assert isinstance(net.genotype(), NB201Arch)


def test_supernet_parameters():
    net = small_supernet()
    assert net.alpha.shape == (6, len(NB201_OPS))
    assert net.arch_parameters() == [net.alpha]
    weights = net.weight_parameters()
    assert len(weights) + 1 == len(list(net.parameters()))
    assert all(p is not net.alpha for p in weights)
    assert net.edge_weights().shape == (6, 5)
    assert torch.allclose(net.edge_weights().sum(-1), torch.ones(6))
    assert (net.sampling, net.tau, net.path) == ("softmax", 10.0, None)


def test_softmax_mode_gives_alpha_a_gradient_including_none():
    net = small_supernet()
    backward(net)
    assert net.alpha.grad is not None
    assert (net.alpha.grad.abs().sum(-1) > 0).all()  # every edge
    assert net.alpha.grad[:, NB201_OPS.index("none")].abs().sum() > 0  # none: via the softmax


def count_op_calls(net: NB201Supernet) -> dict[tuple[int, int, int], int]:
    """Forward calls per (cell, edge, op column), counted with hooks."""
    calls: dict[tuple[int, int, int], int] = {}
    cells = [m for m in net.cells if isinstance(m, NB201SearchCell)]
    for c, cell in enumerate(cells):
        for e, edge in enumerate(cell.edges):
            for k, op in zip(edge.columns, edge.ops, strict=True):

                def hook(*_, key=(c, e, k)):
                    calls[key] = calls.get(key, 0) + 1

                op.register_forward_hook(hook)
    return calls


def test_gumbel_mode_runs_only_the_sampled_op(monkeypatch):
    import scinas.spaces.common as common  # the relaxations every supernet shares

    net = small_supernet(cells_per_stage=2)
    net.sampling = "gumbel"
    net.tau = 5.0
    sampled = []
    real = common.gumbel_hard

    def spy(alpha, tau):
        assert tau == 5.0
        weights, index = real(alpha, tau)
        sampled.append(index.tolist())
        return weights, index

    monkeypatch.setattr(common, "gumbel_hard", spy)
    calls = count_op_calls(net)
    backward(net)
    assert len(sampled) == 1  # one draw per forward, shared by all cells
    expected = {
        (c, e, k): 1 for c in range(6) for e, k in enumerate(sampled[0]) if NB201_OPS[k] != "none"
    }
    assert calls == expected
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0


def test_gumbel_mode_with_none_sampled_everywhere_passes_zeros(monkeypatch):
    import scinas.spaces.common as common  # the relaxations every supernet shares

    net = small_supernet()
    net.sampling = "gumbel"

    def all_none(alpha, tau):
        index = torch.zeros(6, dtype=torch.long)
        return F.one_hot(index, alpha.shape[1]).to(alpha) + 0 * alpha, index

    monkeypatch.setattr(common, "gumbel_hard", all_none)
    seen = []
    for cell in net.cells:
        if isinstance(cell, NB201SearchCell):
            cell.register_forward_hook(lambda m, args, out: seen.append(out))
    calls = count_op_calls(net)
    out = net(torch.randn(2, 1, 8, 8))
    assert torch.isfinite(out).all()
    assert calls == {} and len(seen) == 3
    assert all(torch.equal(s, torch.zeros_like(s)) for s in seen)


def test_set_paths_runs_only_the_path_and_freezes_alpha():
    net = small_supernet(cells_per_stage=2)
    path = [3, 1, 0, 2, 4, 3]
    net.set_paths(torch.tensor(path))
    assert net.path == path
    calls = count_op_calls(net)
    net.sampling = "gumbel"  # a fixed path overrides the sampling mode
    backward(net)
    assert calls == {(c, e, k): 1 for c in range(6) for e, k in enumerate(path) if k != 0}
    assert net.alpha.grad is None
    for cell in (m for m in net.cells if isinstance(m, NB201SearchCell)):
        for e, edge in enumerate(cell.edges):
            for k, op in zip(edge.columns, edge.ops, strict=True):
                grads = [p.grad for p in op.parameters()]
                if k == path[e]:
                    assert all(g is not None for g in grads)
                else:
                    assert all(g is None for g in grads)
    net.set_paths(None)
    assert net.path is None
    net.sampling = "softmax"
    backward(net)
    assert net.alpha.grad is not None


def test_set_paths_equals_the_discrete_network():
    """A supernet on a fixed path computes what the discrete network of that architecture does
    (same weights; BNs in eval mode with their fresh running stats, and without affine)."""
    arch = NB201Arch.parse(
        "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    sup = small_supernet((2, 9, 7))
    sup.set_paths(list(arch.indices()))
    net = NB201Network(arch, 2, 3, (9, 7), C=4, cells_per_stage=1)
    own = net.state_dict()
    for name, value in sup.state_dict().items():
        if name in own:
            own[name].copy_(value)
    for s_cell, n_cell in zip(
        [m for m in sup.cells if isinstance(m, NB201SearchCell)],
        [m for m in net.cells if isinstance(m, NB201Cell)],
        strict=True,
    ):
        k = 0
        for e, name in enumerate(arch.ops):
            if name == "none":
                continue
            chosen = s_cell.edges[e].ops[s_cell.edges[e].slot[NB201_OPS.index(name)]]
            n_cell.ops[k].load_state_dict(chosen.state_dict(), strict=False)
            k += 1
    sup.eval()
    net.eval()
    x = torch.randn(2, 2, 9, 7)
    assert torch.allclose(sup(x), net(x)[0], atol=1e-5)


def test_genotype_is_the_argmax_including_none():
    net = small_supernet()
    want = NB201Arch.parse(
        "|none~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    )
    with torch.no_grad():
        net.alpha.zero_()
        for e, k in enumerate(want.indices()):
            net.alpha[e, k] = 1.0
    assert net.genotype() == want
    with torch.no_grad():
        net.alpha.normal_()
    assert net.genotype().indices() == tuple(net.alpha.argmax(-1).tolist())


def test_genotype_maps_a_subset_of_ops():
    ops = ("skip_connect", "nor_conv_3x3", "none")
    net = small_supernet(op_names=ops)
    assert net.alpha.shape == (6, 3)
    with torch.no_grad():
        net.alpha.copy_(torch.eye(3)[[0, 1, 2, 1, 0, 2]])
    assert net.genotype().ops == (
        "skip_connect",
        "nor_conv_3x3",
        "none",
        "nor_conv_3x3",
        "skip_connect",
        "none",
    )
    cell = next(m for m in net.cells if isinstance(m, NB201SearchCell))
    assert cell.edges[0].columns == [0, 1]  # `none` has no module
    net.set_paths([1, 1, 1, 1, 1, 1])  # indices are into op_names, not NB201_OPS
    calls = count_op_calls(net)
    net(torch.randn(2, 1, 8, 8))
    assert set(calls) == {(c, e, 1) for c in range(3) for e in range(6)}
    with pytest.raises(UserError, match="0..2"):
        net.set_paths([3, 0, 0, 0, 0, 0])


@pytest.mark.parametrize(
    "ops, words",
    [
        (("none", "skip_conect"), "Did you mean 'skip_connect'"),
        (("skip_connect", "skip_connect"), "twice"),
        (("none",), "besides 'none'"),
    ],
)
def test_supernet_validates_op_names(ops, words):
    with pytest.raises(UserError, match=words):
        small_supernet(op_names=ops)


def test_unknown_sampling_mode():
    net = small_supernet()
    net.sampling = "gdas"
    with pytest.raises(UserError, match="softmax, gumbel"):
        net(torch.randn(2, 1, 8, 8))


def test_supernet_shares_a_nodes_relu_and_pool_without_changing_the_function(monkeypatch):
    """The edges leaving a node share its ReLU and average pool (`NB201MixedEdge.mixed`): the
    same outputs and gradients as each edge computing its own."""
    import copy

    import scinas.spaces.nb201.supernet as sn
    from scinas import build_config
    from scinas.spaces import SPACES

    cfg = build_config("tiny", overrides=["search.space=nb201", "search.C=4", "search.layers=3"])
    model = SPACES.get("nb201").build_supernet(cfg.search, (3, 16, 16), 3)
    with torch.no_grad():
        for a in model.arch_parameters():
            a.copy_(torch.randn_like(a))
    alone = copy.deepcopy(model)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 3, (4,))
    out = model(x)
    grads = torch.autograd.grad(F.cross_entropy(out, y), list(model.parameters()))
    mixed = sn.NB201MixedEdge.mixed
    monkeypatch.setattr(
        sn.NB201MixedEdge,
        "mixed",
        lambda self, x, w, acc, active=None, shared=None: mixed(self, x, w, acc, active, None),
    )
    ref = alone(x)
    torch.testing.assert_close(out, ref)
    ref_grads = torch.autograd.grad(F.cross_entropy(ref, y), list(alone.parameters()))
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)
