"""Zero-cost proxies: numerics against references, every proxy on every space, the zero-cost
strategy and the warm start end to end (tiny), and the refusal of a proxy the task cannot feed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import scinas
from conftest import TINY, for_strategy
from scinas.cli import app
from scinas.errors import UserError
from scinas.flops import count_flops
from scinas.proxies import PROXIES, check_proxies, rank_average, score_network
from scinas.spaces import SPACES

# ----------------------------------------------------------------------------- numerics


class Chain(nn.Module):
    """Bias-free conv -> ReLU -> BatchNorm -> linear: positively homogeneous in each layer."""

    def __init__(self, bn: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2, affine=False) if bn else nn.Identity()
        self.fc = nn.Linear(2 * 4 * 4, 3, bias=False)

    def forward(self, x):
        return self.fc(self.bn(torch.relu(self.conv(x))).flatten(1))


@pytest.mark.parametrize("bn", [False, True])
def test_synflow_is_layers_times_the_flow_of_a_homogeneous_chain(bn):
    """With |weights| and an all-ones input, each layer's saliencies sum to R (the summed
    output) in a bias-free chain: synflow = 2 R here, R computed by hand as 1^T |W2| |W1| 1.
    BatchNorm is removed first, so it does not change the value."""
    torch.manual_seed(0)
    net = Chain(bn)
    x = torch.randn(4, 1, 4, 4)
    got = score_network(net, x, torch.zeros(4, dtype=torch.long), F.cross_entropy, ["synflow"])
    W1 = net.conv.weight.detach().double().abs()
    W2 = net.fc.weight.detach().double().abs()
    h = F.conv2d(torch.ones(1, 1, 4, 4, dtype=torch.float64), W1, padding=1)
    R = float((h.flatten(1) @ W2.T).sum())
    assert got["synflow"] == pytest.approx(2 * R, rel=1e-12)
    assert (net.conv.weight < 0).any()  # the network itself was not changed


def _tiny_mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()


def test_snip_and_grad_norm_match_finite_differences():
    net = _tiny_mlp()
    x = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    got = score_network(net, x, y, F.cross_entropy, ["snip", "grad_norm"])
    h, snip, norms = 1e-6, 0.0, 0.0
    for layer in (net[1], net[3]):
        w = layer.weight.data
        g = torch.zeros_like(w)
        for idx in np.ndindex(*w.shape):
            old = w[idx].item()
            w[idx] = old + h
            up = F.cross_entropy(net(x), y).item()
            w[idx] = old - h
            down = F.cross_entropy(net(x), y).item()
            w[idx] = old
            g[idx] = (up - down) / (2 * h)
        snip += float((w * g).abs().sum())
        norms += float(g.norm())
    assert got["snip"] == pytest.approx(snip, rel=1e-6)
    assert got["grad_norm"] == pytest.approx(norms, rel=1e-6)


def test_naswot_is_the_logdet_of_the_agreement_kernel_of_every_relu():
    """Reference: the codes read off each ReLU's output directly, K[i, j] = units where samples
    i and j agree, summed over ReLUs; a functional F.relu is seen as well as nn.ReLU."""
    torch.manual_seed(2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act = nn.Linear(3, 6), nn.Linear(6, 5), nn.ReLU()

        def forward(self, x):
            h1 = self.act(self.a(x.flatten(1)))
            return F.relu(self.b(h1)), (h1,)

    net = Net()
    x = torch.randn(4, 1, 1, 3)
    got = score_network(net, x, torch.zeros(4, dtype=torch.long), F.cross_entropy, ["naswot"])
    with torch.no_grad():
        h1 = torch.relu(net.a(x.flatten(1)))
        h2 = torch.relu(net.b(h1))
    K = np.zeros((4, 4))
    for h in (h1, h2):
        c = (h > 0).numpy()
        K += (c[:, None, :] == c[None, :, :]).sum(-1)
    sign, logdet = np.linalg.slogdet(K)
    assert sign > 0 and got["naswot"] == pytest.approx(logdet, rel=1e-9)


def test_jacov_matches_per_sample_input_gradients():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x = torch.randn(6, 1, 2, 2, dtype=torch.float64)
    got = score_network(net, x, torch.zeros(6, dtype=torch.long), F.cross_entropy, ["jacov"])
    rows = []
    for i in range(len(x)):  # one sample at a time: no batch coupling in an MLP
        xi = x[i : i + 1].clone().requires_grad_(True)
        net(xi).sum().backward()
        rows.append(xi.grad.flatten().numpy())
    lam = np.linalg.eigvalsh(np.corrcoef(np.array(rows)))
    want = -np.sum(np.log(lam + 1e-5) + 1 / (lam + 1e-5))
    assert got["jacov"] == pytest.approx(want, rel=1e-9)


def test_params_and_flops_are_the_project_counts():
    from scinas.spaces.nb201 import NB201Arch, NB201Network

    arch = NB201Arch.parse(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )
    net = NB201Network(arch, 3, 10, (8, 8), C=4, cells_per_stage=1)
    x = torch.randn(6, 3, 8, 8)
    got = score_network(
        net, x, torch.zeros(6, dtype=torch.long), F.cross_entropy, ["params", "flops"]
    )
    assert got["params"] == sum(p.numel() for p in net.parameters())
    assert got["flops"] == count_flops(net, (3, 8, 8))


def test_flops_alone_runs_no_training_pass_and_counts_what_the_batch_pass_does():
    from torch.utils.flop_counter import FlopCounterMode

    from scinas.spaces.nb201 import NB201Arch, NB201Network

    arch = NB201Arch.parse(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )
    torch.manual_seed(0)
    net = NB201Network(arch, 3, 10, (8, 8), C=4, cells_per_stage=1)
    x = torch.randn(6, 3, 8, 8)
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    got = score_network(net, x, torch.zeros(6, dtype=torch.long), F.cross_entropy, ["flops"])
    # no train-mode pass: the BatchNorm statistics are untouched
    assert all(torch.equal(net.state_dict()[k], v) for k, v in stats.items())
    with FlopCounterMode(display=False) as counter:  # the batch pass, per sample
        net.train()(x)
    assert got["flops"] == counter.get_total_flops() / len(x)
    everything = score_network(
        net, x, torch.zeros(6, dtype=torch.long), F.cross_entropy, PROXIES.names()
    )
    assert everything["flops"] == got["flops"]


def test_rank_average_combines_ranks_and_puts_nan_last():
    scores = [{"a": 1.0, "b": 30.0}, {"a": 3.0, "b": 10.0}, {"a": math.nan, "b": 20.0}]
    assert rank_average(scores, ["a"]).tolist() == [1.0, 2.0, 0.0]
    assert rank_average(scores, ["a", "b"]).tolist() == [1.5, 1.0, 0.5]
    tied = [{"a": 2.0}, {"a": 1.0}, {"a": 2.0}]
    assert rank_average(tied, ["a"]).tolist() == [1.5, 0.0, 1.5]


# ----------------------------------------------------------------------------- every proxy, space


def _space_network(space_name: str):
    sets = [*TINY, "search.strategy=random", f"search.space={space_name}"]
    cfg = scinas.build_config("tiny", overrides=for_strategy(sets))
    space = SPACES.get(space_name)
    decisions = space.decisions(cfg.search)
    arch = decisions.sample(np.random.RandomState(0))
    torch.manual_seed(0)
    return space.build_network(arch, cfg.train, (1, 8, 8), 10)


@pytest.mark.parametrize("space_name", SPACES.names())
def test_every_proxy_scores_a_network_of_every_space(space_name):
    net = _space_network(space_name)
    x = torch.randn(8, 1, 8, 8)
    y = torch.arange(8) % 10
    names = PROXIES.names()
    got = score_network(net, x, y, F.cross_entropy, names)
    assert set(got) == set(names)
    for name, value in got.items():
        assert isinstance(value, float) and not math.isnan(value), (name, value)
    assert got["params"] > 0 and got["flops"] > 0 and got["synflow"] > 0


@pytest.mark.parametrize("proxy", PROXIES.names())
def test_each_proxy_runs_alone_and_is_deterministic(proxy):
    net = _space_network("nb201")
    x = torch.randn(8, 1, 8, 8)
    y = torch.arange(8) % 10
    first = score_network(net, x, y, F.cross_entropy, [proxy])[proxy]
    again = score_network(net, x, y, F.cross_entropy, [proxy])[proxy]
    assert first == pytest.approx(again, rel=1e-5)


def test_a_proxy_the_network_cannot_feed_is_refused_naming_those_that_can():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    x = torch.randn(4, 1, 2, 2)
    check_proxies(["synflow", "snip"], net, x, "search.proxy")  # fine
    with pytest.raises(UserError) as e:
        check_proxies(["synflow", "naswot"], net, x, "search.proxy")
    msg = str(e.value)
    assert "naswot" in msg and "ReLU" in msg
    assert "Proxies that can: synflow, grad_norm, snip, jacov, params, flops" in msg


# ----------------------------------------------------------------------------- strategies


def cfg(*extra):
    return scinas.build_config("tiny", overrides=for_strategy([*TINY, *extra]))


def events(out, kind):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [e for e in rows if e["event"] == kind]


def test_zero_cost_strategy_trains_the_best_scored_architectures(tmp_path):
    out = tmp_path / "zc"
    sets = ["search.strategy=zero-cost", "search.space=nb201", "search.proxy=synflow+params"]
    scinas.search(cfg(*sets, "search.pool=8", "search.budget=2", "search.eval_fraction=0.2"), out)
    (zc,) = events(out, "zero_cost")
    assert zc["scored"] == 8 and zc["seconds"] > 0 and zc["proxy"] == "synflow+params"
    trials = events(out, "search_trial")
    assert [t["arch"] for t in trials] == [e["arch"] for e in zc["enqueued"]]
    ranks = [e["rank_score"] for e in zc["enqueued"]]
    assert ranks == sorted(ranks, reverse=True)
    chosen = max(trials, key=lambda t: t["score"])["arch"]
    assert json.loads((out / "genotype.json").read_text()) == chosen


def test_warm_start_enqueues_the_proxys_top_architectures(tmp_path):
    from scinas.context import setup
    from scinas.progress import Reporter
    from scinas.spaces.nb201 import nb201_decisions
    from scinas.strategies.warmstart import ProxyScorer, sample_pool

    out = tmp_path / "ws"
    sets = ["search.strategy=evolution", "search.space=nb201", "search.population=2"]
    sets += ["search.sample_size=1", "search.warm_start=synflow", "search.warm_start_pool=6"]
    c = cfg(*sets, "search.warm_start_top=2", "search.budget=3", "search.eval_fraction=0.2")
    scinas.search(c, out)
    (zc,) = events(out, "zero_cost")
    trials = events(out, "search_trial")
    assert len(trials) == 3 and zc["scored"] == 6
    assert [t["arch"] for t in trials[:2]] == [e["arch"] for e in zc["enqueued"]]
    # the enqueued are the pool's two best by synflow, scored independently here
    space = nb201_decisions()
    pool = [space.decode(p) for p in sample_pool(space, 6, c.seed)]
    scorer = ProxyScorer(setup(c, Reporter(quiet=True)), ["synflow"], c.search.proxy_batch)
    scores = [scorer(a)["synflow"] for a in pool]
    best = sorted(range(6), key=lambda i: -scores[i])[:2]
    assert [pool[i].to_dict() for i in best] == [e["arch"] for e in zc["enqueued"]]


def test_a_proxy_the_task_cannot_feed_is_refused_before_anything_is_written(tmp_path):
    """A space whose networks apply no ReLU: naswot is refused (exit 2), nothing written."""
    from scinas.spaces.base import DecisionSpace, SearchSpace

    class TanhArch:
        space = "tanh_test"

        def __init__(self, width):
            self.width = width

        def to_dict(self):
            return {"space": self.space, "width": self.width}

    class TanhSpace(SearchSpace):
        name = "tanh_test"

        def from_dict(self, data, source="architecture"):
            return TanhArch(data["width"])

        def decisions(self, s):
            return DecisionSpace("tanh_test", (("width", (4, 8)),), lambda p: TanhArch(p["width"]))

        def build_network(self, arch, t, input_shape, num_outputs):
            n = int(np.prod(input_shape))
            return nn.Sequential(
                nn.Flatten(),
                nn.Linear(n, arch.width),
                nn.Tanh(),
                nn.Linear(arch.width, num_outputs),
            )

    SPACES.register("tanh_test", TanhSpace())
    try:
        out = tmp_path / "out"
        args = ["search", "--out", str(out), "-q"]
        for item in for_strategy([*TINY, "search.strategy=zero-cost", "search.space=tanh_test"]):
            args += ["--set", item]
        res = CliRunner().invoke(app, [*args, "--set", "search.proxy=naswot+synflow"])
        assert res.exit_code == 2, res.output
        assert res.stderr.count("error:") == 1 and "Traceback" not in res.stderr
        assert "search.proxy: proxy naswot cannot run" in res.stderr
        assert "Proxies that can: synflow, grad_norm" in res.stderr
        assert not out.exists()
    finally:
        SPACES.unregister("tanh_test")


@pytest.mark.parametrize(
    "setting, phrase",
    [
        ("search.proxy=synflw", "synflow"),
        ("search.proxy=synflow+synflow", "names a proxy twice"),
        ("search.pool=1", "search.pool (1) must be at least search.budget"),
        ("search.warm_start=naswot", "does not apply to the zero-cost strategy"),
    ],
)
def test_bad_proxy_settings_are_refused(tmp_path, setting, phrase):
    out = tmp_path / "out"
    args = ["search", "--out", str(out), "-q"]
    for item in for_strategy([*TINY, "search.strategy=zero-cost", "search.budget=2", setting]):
        args += ["--set", item]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert phrase in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def test_the_table_benchmark_refuses_proxies_it_has_no_images_for(tmp_path):
    from conftest import shared

    table = shared("nasbench201", "nb201_accuracies.npz")
    out = tmp_path / "b"
    args = ["bench", "nb201", "--table", str(table), "--strategy", "zero-cost", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--budget", "3", "--seeds", "1"])
    assert res.exit_code == 2 and "benchmarks/proxies_nb201.py" in res.stderr
    assert not out.exists()
