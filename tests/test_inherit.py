"""Weight inheritance (``train.init=supernet``): the derived network starts from the supernet's
weights for every op it keeps, in every space that has a supernet."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import scinas
from conftest import REPORT, TINY
from scinas.cli import app
from scinas.config import build_config
from scinas.errors import UserError
from scinas.progress import Reporter
from scinas.spaces import SPACES
from scinas.weights import state_leaves

SUPERNET_SPACES = [n for n in SPACES if SPACES.get(n).has_supernet and SPACES.get(n).has_alphas]
# ops without the supernet-only BatchNorm of pooling, so a fixed path computes what the network
# computes (DARTS normalises pooled outputs in the search only)
NO_POOL = {"darts": "[skip_connect,sep_conv_3x3,dil_conv_3x3]", "nb201": None}


# images and series: the same inheritance in both dimensions
SHAPES = [pytest.param((1, 8, 8), id="image"), pytest.param((2, 37), id="series")]


def _pair(space_name: str, shape=(1, 8, 8)):
    """A supernet with random (not initial) weights and alphas, its derived architecture and that
    architecture's network at the inherited sizes, weights inherited."""
    sets = [f"search.space={space_name}", "search.C=4", "search.layers=3", "train.C=6"]
    if NO_POOL.get(space_name):
        sets.append(f"search.ops={NO_POOL[space_name]}")
    cfg = build_config("tiny", overrides=sets)
    space = SPACES.get(space_name)
    torch.manual_seed(0)
    supernet = space.build_supernet(cfg.search, shape, 3)
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(torch.randn_like(p))
        for m in supernet.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    arch = supernet.genotype()
    t = space.inherit_sizes(cfg.search, cfg.train)
    assert (t.C, t.layers) == (cfg.search.C, cfg.search.layers) != (cfg.train.C, cfg.train.layers)
    torch.manual_seed(1)
    net = space.build_network(arch, t, shape, 3)
    pairs = space.inherit_weights(supernet, net, arch)
    return supernet, arch, net, pairs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("space_name", SUPERNET_SPACES)
def test_inherited_tensors_equal_the_supernets_exactly(space_name, shape):
    supernet, arch, net, pairs = _pair(space_name, shape)
    ours, theirs = net.state_dict(), supernet.state_dict()
    assert pairs
    for dst, src in pairs:
        assert torch.equal(ours[dst], theirs[src]), (dst, src)
    # everything not inherited is a fresh auxiliary head or an affine BatchNorm at (1, 0)
    inherited = {dst for dst, _ in pairs}
    for name, tensor in net.state_dict().items():
        if name in inherited or name.startswith("auxiliary_head"):
            continue
        assert name.endswith(("weight", "bias")), name
        want = torch.ones_like(tensor) if name.endswith("weight") else torch.zeros_like(tensor)
        assert torch.equal(tensor, want), name
    # every conv/linear/BN of the network took part
    held = sum(1 for m in state_leaves(net) for _ in m.parameters(recurse=False))
    assert held >= len({dst.rsplit(".", 1)[0] for dst in inherited})


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("space_name", SUPERNET_SPACES)
def test_the_inherited_network_computes_the_supernets_path(space_name, shape):
    """In eval mode the network equals the supernet restricted to its architecture's path."""
    supernet, arch, net, _ = _pair(space_name, shape)
    supernet.set_arch(arch)
    supernet.eval()
    net.eval()
    x = torch.randn(5, *shape)
    with torch.no_grad():
        expected = supernet(x)
        got = net(x)[0]
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_refusals_where_nothing_can_be_inherited(tmp_path):
    with pytest.raises(UserError, match="trains no supernet"):
        build_config(overrides=["train.init=supernet", "search.strategy=random"])
    with pytest.raises(UserError, match="search.derive=supernet keeps"):
        build_config(overrides=["train.init=supernet", "search.derive=supernet"])
    out = tmp_path / "t"
    res = CliRunner().invoke(
        app,
        ["train", "--genotype", "DARTS_V2", "--out", str(out), "--set", "train.init=supernet"],
    )
    assert res.exit_code == 2 and "needs the supernet a search trained" in res.stderr
    assert res.stderr.count("error:") == 1 and not out.exists()


def test_a_tiny_run_with_init_supernet_fine_tunes_the_inherited_network(tmp_path):
    out = tmp_path / "run"
    cfg = build_config("tiny", overrides=[*TINY, REPORT, "train.init=supernet", "train.C=6"])
    res = scinas.run(cfg, out, reporter=Reporter(quiet=True))
    assert res["init"] == "supernet"
    start = res["inherited"]["val_at_start"]
    assert 0 <= start["accuracy"] <= 1 and res["inherited"]["tensors"] > 0
    assert res["supernet"]["val"]["accuracy"] >= 0 and res["val"]["accuracy"] >= 0
    model = torch.load(out / "model.pt", weights_only=True)
    # built at the supernet's sizes (search.C=4), not train.C=6
    assert model["stem.0.weight"].shape[0] == 3 * 4
    assert (out / "supernet.pt").is_file()
    html = (out / "report.html").read_text()
    assert "Discretisation gap" in html and "inherited" in html
    assert json.loads((out / "results.json").read_text())["inherited"]["val_at_start"] == start
