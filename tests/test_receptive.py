"""The receptive-field search (`scinas.spaces.receptive`, `scinas.strategies.receptive`): the
aggregated convolution against plain convolutions, the choices applied to built networks and kept
in the genotype, and runs on series and on your own network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import scinas
from conftest import TINY, for_strategy, scinas_cli
from scinas.spaces import SPACES, load_genotype
from scinas.spaces.baselines import BaselineArch, build_baseline
from scinas.spaces.receptive import AggregatedConv, aggregate, apply, input_lengths, sites, span
from scinas.spaces.user_model import _TRUSTED

KERNELS, DILATIONS = (3, 5, 7), (1, 2, 4)


def _conv(dim: int, **kw) -> nn.Module:
    return (nn.Conv1d, nn.Conv2d)[dim - 1](4, 6, 3, padding=1, **kw)


def _one_hot(m: AggregatedConv, i: int, j: int) -> None:
    with torch.no_grad():
        m.alpha.fill_(-float("inf"))
        m.alpha[i, j] = 0.0


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("stride, groups", [(1, 1), (2, 1), (1, 2)])
def test_a_one_hot_mixture_is_the_chosen_convolution(dim, stride, groups):
    torch.manual_seed(0)
    m = AggregatedConv(_conv(dim, stride=stride, groups=groups), KERNELS, DILATIONS)
    x = torch.randn(2, 4, *([21] * dim))
    conv = (F.conv1d, F.conv2d)[dim - 1]
    for i, k in enumerate(KERNELS):
        for j, d in enumerate(DILATIONS):
            _one_hot(m, i, j)
            c = (7 - k) // 2
            w = m.weight[(..., *[slice(c, c + k)] * dim)]
            ref = conv(x, w, m.bias, stride, d * (k - 1) // 2, d, groups)
            torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)


def test_a_mixture_is_the_probability_weighted_sum_of_its_choices():
    torch.manual_seed(0)
    m = AggregatedConv(_conv(1), KERNELS, DILATIONS)
    with torch.no_grad():
        m.alpha.copy_(torch.randn_like(m.alpha))
    x = torch.randn(3, 4, 30)
    p = m.probabilities().detach()
    alpha = m.alpha.detach().clone()
    expected = 0
    for i in range(len(KERNELS)):
        for j in range(len(DILATIONS)):
            _one_hot(m, i, j)
            expected = expected + p[i, j] * (m(x) - m.bias.view(1, -1, 1))
    with torch.no_grad():
        m.alpha.copy_(alpha)
    torch.testing.assert_close(m(x), expected + m.bias.view(1, -1, 1), rtol=1e-5, atol=1e-5)


def test_the_gradients_of_the_logits_and_weights_match_finite_differences():
    torch.manual_seed(0)
    m = AggregatedConv(_conv(1), (3, 5), (1, 2)).double()
    x = torch.randn(2, 4, 12, dtype=torch.float64)
    alpha = torch.randn_like(m.alpha).requires_grad_()
    weight = m.weight.detach().clone().requires_grad_()

    def f(a, w):
        return torch.func.functional_call(m, {"alpha": a, "weight": w}, (x,))

    assert torch.autograd.gradcheck(f, (alpha, weight))


@pytest.mark.parametrize(
    "name, shape, n",
    [("resnet1d", (1, 50), 9), ("resnet_tiny", (3, 16, 16), 7)],
)
def test_the_sites_of_hand_designed_networks(name, shape, n):
    net = build_baseline(name, shape[0], 3, shape[1:])
    found = sites(net)
    # resnet1d: 3 blocks of kernels 8, 5, 3 (the 8 behind its padding layer), no 1x1 shortcut;
    # resnet_tiny: the stem and two 3x3 convolutions in each of 3 blocks
    assert len(found) == n
    if name == "resnet1d":
        assert [s.kernel for s in found] == [8, 5, 3] * 3
        assert all((s.pad is not None) == (s.kernel == 8) for s in found)


@pytest.mark.parametrize("name, shape", [("resnet1d", (2, 40)), ("resnet_tiny", (3, 12, 12))])
def test_choices_keep_the_output_shape_and_round_trip_through_the_genotype(name, shape, tmp_path):
    net = build_baseline(name, shape[0], 3, shape[1:])
    chosen = tuple(sorted((s.path, 7, 2) for s in sites(net)[:2]))
    arch = BaselineArch(name, chosen)
    path = tmp_path / "g.json"
    arch.to_json(path)
    again = load_genotype(path)
    assert again == arch and json.loads(path.read_text())["convs"]
    space = SPACES.get("baseline")
    built = space.build_network(again, None, shape, 3)
    for p, k, d in chosen:
        conv = built.get_submodule(p)
        assert conv.kernel_size[0] == k and conv.dilation[0] == d
    out, _ = built(torch.randn(2, *shape))
    assert out.shape == (2, 3)
    with pytest.raises(ValueError, match="no searchable convolution 'nope'"):
        apply(build_baseline(name, shape[0], 3, shape[1:]), [("nope", 3, 1)])


def test_aggregating_a_network_keeps_its_output_shape():
    net = build_baseline("resnet1d", 1, 2, (30,))
    found = aggregate(net, KERNELS, DILATIONS)
    assert len(found) == 9 and not sites(net)  # every one replaced
    out, _ = net(torch.randn(2, 1, 30))
    assert out.shape == (2, 2)


def test_choices_wider_than_the_input_a_layer_sees_are_left_out():
    net = build_baseline("resnet_tiny", 3, 10, (8, 8))
    lengths = input_lengths(net, (3, 8, 8))
    assert max(lengths.values()) == 8 and min(lengths.values()) == 2  # after two stride-2 stages
    found = aggregate(net, KERNELS, DILATIONS, (3, 8, 8))
    for site in found:
        m = net.get_submodule(site.path)
        p = m.probabilities()
        for i, k in enumerate(KERNELS):
            for j, d in enumerate(DILATIONS):
                fits = span(k, d) <= lengths[site.path] or (i, j) == (0, 0)
                assert bool(m.allowed[i, j]) == fits and (p[i, j] > 0) == fits
        assert m.choice()[:2] == (3, 1) or span(*m.choice()[:2]) <= m.length
    out, _ = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_a_narrowed_mixture_is_the_weighted_sum_of_its_allowed_choices():
    torch.manual_seed(0)
    m = AggregatedConv(_conv(1), KERNELS, DILATIONS, length=9)  # spans over 9 left out
    with torch.no_grad():
        m.alpha.copy_(torch.randn_like(m.alpha))
    x = torch.randn(3, 4, 9)
    p = m.probabilities().detach()
    assert torch.allclose(p.sum(), torch.tensor(1.0))
    alpha = m.alpha.detach().clone()
    expected = 0
    for i, k in enumerate(KERNELS):
        for j, d in enumerate(DILATIONS):
            if span(k, d) > 9:
                assert p[i, j] == 0
                continue
            _one_hot(m, i, j)
            expected = expected + p[i, j] * (m(x) - m.bias.view(1, -1, 1))
    with torch.no_grad():
        m.alpha.copy_(alpha)
    torch.testing.assert_close(m(x), expected + m.bias.view(1, -1, 1), rtol=1e-5, atol=1e-5)


def _series(tmp_path, n=120, length=48):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    t = np.arange(length)
    # class 1 holds a slow wave, class 0 a fast one: a wide receptive field tells them apart
    x = np.sin(2 * np.pi * t / np.where(y[:, None] == 1, 24, 6)) + 0.5 * rng.normal(
        size=(n, length)
    )
    path = tmp_path / "waves.npz"
    x = x[:, None].astype(np.float32)
    np.savez(path, x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    return path


def _cfg(data, *extra):
    sets = [
        *TINY,
        "search.strategy=receptive",
        "search.space=baseline",
        "search.receptive_kernels=[3,7]",
        "search.receptive_dilations=[1,4]",
        "search.epochs=2",
        *extra,
    ]
    return scinas.build_config("tiny", overrides=for_strategy(sets), data__dataset=str(data))


def test_a_receptive_search_on_series_chooses_every_convolution_and_trains_it(tmp_path):
    out = tmp_path / "run"
    res = scinas.run(_cfg(_series(tmp_path)), out)
    events = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    epochs = [e for e in events if e["event"] == "receptive_epoch"]
    (result,) = [e for e in events if e["event"] == "receptive_result"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    geno = json.loads((out / "genotype.json").read_text())
    assert geno["name"] == "resnet1d" and geno == result["arch"] == res["genotype"]
    assert len(geno["convs"]) == 9
    assert all(k in (3, 7) and d in (1, 4) for k, d in geno["convs"].values())
    for probs in result["probabilities"].values():
        assert np.allclose(np.sum(probs), 1.0)
    assert (out / "model.pt").is_file()
    assert scinas.evaluate(out)["accuracy"] == pytest.approx(res["test"]["accuracy"])


def test_an_interrupted_receptive_search_resumes_identically(tmp_path, monkeypatch):
    import scinas.strategies.receptive as receptive
    from scinas.signals import Interrupted

    data = _series(tmp_path)
    reference = scinas.search(_cfg(data, "search.epochs=3"), tmp_path / "ref")
    real = receptive.ReceptiveSearch._epoch

    def epoch(self, net, w_opt, a_opt, k, deadline):
        if k == 2:
            raise Interrupted("stopped by the test")
        return real(self, net, w_opt, a_opt, k, deadline)

    monkeypatch.setattr(receptive.ReceptiveSearch, "_epoch", epoch)
    with pytest.raises(Interrupted):
        scinas.search(_cfg(data, "search.epochs=3"), tmp_path / "run")
    monkeypatch.setattr(receptive.ReceptiveSearch, "_epoch", real)
    resumed = scinas.search(_cfg(data, "search.epochs=3"), tmp_path / "run", resume=True)
    assert resumed.to_dict() == reference.to_dict()

    def probabilities(run):
        events = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        return [e["probabilities"] for e in events if e["event"] == "receptive_result"]

    assert probabilities(tmp_path / "run") == probabilities(tmp_path / "ref")


MY_NET = """
from torch import nn


def build(input_shape, num_outputs):
    c, length = input_shape
    return nn.Sequential(
        nn.Conv1d(c, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, num_outputs),
    )
"""


def test_my_model_s_receptive_fields_are_searched_from_the_command_line(tmp_path):
    data = _series(tmp_path)
    (tmp_path / "net.py").write_text(MY_NET)
    spec = f"{tmp_path / 'net.py'}:build"
    out = tmp_path / "run"
    sets = ["search.epochs=1", "search.receptive_kernels=[3,9]", "train.epochs=1"]
    args = [a for s in sets for a in ("--set", s)]
    res = scinas_cli(
        "run", "--model", spec, "--strategy", "receptive", "--data", data, "--out", out, *args
    )
    assert res.returncode == 0, res.stderr
    geno = json.loads((out / "genotype.json").read_text())
    assert geno["name"] == "model" and set(geno["convs"]) == {"net.0", "net.2"}
    _TRUSTED.clear()
    res = scinas_cli("evaluate", out, "--model", spec)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    "setting, phrase",
    [
        ("search.receptive_kernels=[4]", "kernel sizes must be odd"),
        ("search.receptive_dilations=[0]", "dilations must be 1 to"),
        ("search.start_from=[DARTS_V2]", "an architecture of the darts space"),
        ("search.space=macro", "search.space=baseline"),
    ],
)
def test_bad_receptive_settings_exit_2_and_write_nothing(tmp_path, setting, phrase):
    data = _series(tmp_path)
    out = tmp_path / "run"
    sets = ["search.strategy=receptive", "search.space=baseline", setting]
    res = scinas_cli("run", "--data", data, "--out", out, *[a for s in sets for a in ("--set", s)])
    assert res.returncode == 2 and phrase in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_series_shorter_than_the_smallest_kernel_are_refused(tmp_path):
    data = _series(tmp_path, length=8)
    out = tmp_path / "run"
    sets = ["search.strategy=receptive", "search.receptive_kernels=[9]"]
    res = scinas_cli("run", "--data", data, "--out", out, *[a for s in sets for a in ("--set", s)])
    assert res.returncode == 2 and "8 steps long" in res.stderr, res.stderr
    assert "smallest kernel searched (9)" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_compare_runs_the_receptive_search_against_its_backbone(tmp_path):
    data = _series(tmp_path)
    out = tmp_path / "cmp"
    sets = [*TINY, "search.epochs=1", "compare.budget=null"]
    res = scinas_cli(
        "compare", "--data", data, "--out", out, "--seeds", "1", "--methods",
        "receptive,resnet1d", *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    c = json.loads((out / "compare.json").read_text())
    assert set(c["methods"]) == {"receptive", "resnet1d"}
    assert all(len(m["values"]) == 1 for m in c["methods"].values())
    geno = json.loads((out / "receptive" / "seed0" / "genotype.json").read_text())
    assert geno["name"] == "resnet1d" and len(geno["convs"]) == 9


def test_the_receptive_search_defaults_to_the_baseline_space():
    from scinas.config import SearchConfig

    assert SearchConfig.model_validate({"strategy": "receptive"}).space == "baseline"
    assert SearchConfig.model_validate({"strategy": "darts"}).space == "darts"
