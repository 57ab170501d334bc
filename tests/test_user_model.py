"""The user's own network (`scinas.spaces.user_model`): ``--model FILE.py:FUNCTION`` trains it,
compares it, and runs the file only when the user names it; each bad file is one message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import scinas_cli
from scinas.errors import UserError
from scinas.spaces import user_model

# a user-style network for series and images alike: the convolution's dimension follows the
# input (C, L) or (C, H, W)
MY_NET = """
import torch
from torch import nn


def build(input_shape, num_outputs):
    c, *sizes = input_shape
    d = len(sizes)
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[d]
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[d]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[d]
    return nn.Sequential(
        conv(c, 8, 5, padding=2), norm(8), nn.ReLU(),
        conv(8, 16, 3, padding=1), nn.ReLU(), pool(1), nn.Flatten(), nn.Linear(16, num_outputs),
    )
"""

# one parametrization for both dimensions: (N, C, L) series and (N, H, W) images
SHAPES = [pytest.param((60, 1, 40), id="series"), pytest.param((60, 8, 8), id="images")]
SETS = ["--set", "train.epochs=1", "--set", "train.batch_size=16"]


@pytest.fixture(autouse=True)
def _nothing_named():
    """Each test starts as a fresh process would: no file named, loaded or checked."""
    for registry in (user_model._TRUSTED, user_model._MODULES, user_model._CHECKED):
        registry.clear()
    yield
    for registry in (user_model._TRUSTED, user_model._MODULES, user_model._CHECKED):
        registry.clear()


def _data(tmp_path, shape, shift=1.0) -> str:
    """Two classes ``shift`` apart in mean (N×1×L reads as series, N×H×W as images)."""
    rng = np.random.default_rng(0)
    y = np.arange(shape[0]) % 2
    x = rng.normal(size=shape).astype(np.float32) + shift * y.reshape(-1, *[1] * (len(shape) - 1))
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    return str(path)


def _net(tmp_path, text=MY_NET, name="my_net.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("shape", SHAPES)
def test_my_model_trains_and_only_runs_again_when_named(tmp_path, shape):
    data = _data(tmp_path, shape)
    spec = _net(tmp_path) + ":build"
    out = tmp_path / "run"
    res = scinas_cli("train", "--model", spec, "--data", data, "--out", out, *SETS)
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    geno = json.loads((out / "genotype.json").read_text())
    assert geno["name"] == "model" and geno["function"] == "build" and len(geno["sha256"]) == 64
    assert results["params"] > 0
    # a fresh process (nothing named) evaluating the run: the file is not run
    user_model._TRUSTED.clear()
    user_model._MODULES.clear()
    res = scinas_cli("evaluate", out)
    assert res.returncode == 2 and res.stderr.count("error:") == 1, res.stderr
    assert f"--model {spec}" in res.stderr and "Traceback" not in res.stderr
    res = scinas_cli("evaluate", out, "--model", spec)
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] == pytest.approx(results["test"]["accuracy"])
    # another file under the function's name: refused, naming both checksums
    user_model._TRUSTED.clear()
    other = _net(tmp_path, MY_NET + "\n# edited\n", "edited.py")
    res = scinas_cli("evaluate", out, "--model", other + ":build")
    assert res.returncode == 2 and "not the file this network was built from" in res.stderr
    assert geno["sha256"][:12] in res.stderr


def test_genotype_names_my_model_as_model_does(tmp_path):
    data = _data(tmp_path, (60, 8, 8))
    spec = _net(tmp_path) + ":build"
    a, b = tmp_path / "a", tmp_path / "b"
    assert scinas_cli("train", "--model", spec, "--data", data, "--out", a, *SETS).returncode == 0
    user_model._TRUSTED.clear()
    res = scinas_cli("train", "--genotype", spec, "--data", data, "--out", b, *SETS)
    assert res.returncode == 0, res.stderr
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    assert ra["test"] == rb["test"]
    res = scinas_cli("train", "--model", spec, "--genotype", "resnet_tiny", "--out", tmp_path / "c")
    assert res.returncode == 2 and "not both" in res.stderr


BAD = [
    ("", "missing.py:build", "does not exist"),
    (MY_NET, "NET:nope", "has no function 'nope' (it defines: build)"),
    (MY_NET, "NET", "give FILE.py:FUNCTION"),
    ("raise RuntimeError('boom')", "NET:build", "raised RuntimeError: boom"),
    ("import sys\nsys.exit(3)", "NET:build", "raised SystemExit: 3"),
    ("def build(s, n):\n    raise ValueError('no')", "NET:build", "raised ValueError: no"),
    ("def build(s, n):\n    return 3", "NET:build", "returned int, not a torch.nn.Module"),
    (
        "import torch\ndef build(s, n):\n    return torch.nn.Linear(5, n)",
        "NET:build",
        "does not take inputs of shape (2, 1, 8, 8)",
    ),
    (
        "import torch\ndef build(s, n):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, n + 1))",
        "NET:build",
        "returns (2, 3); scinas needs (N, 2)",
    ),
]


@pytest.mark.parametrize("text,spec,phrase", BAD)
def test_a_bad_model_file_is_one_message_and_nothing_written(tmp_path, text, spec, phrase):
    data = _data(tmp_path, (60, 8, 8))
    net = _net(tmp_path, text) if text else ""
    out = tmp_path / "run"
    res = scinas_cli("train", "--model", spec.replace("NET", net), "--data", data, "--out", out)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("error:") == 1 and "Traceback" not in res.stderr, res.stderr
    assert phrase in res.stderr, res.stderr
    assert not out.exists()


def test_compare_reports_my_model_as_a_baseline(tmp_path):
    data = _data(tmp_path, (60, 8, 8))
    spec = _net(tmp_path) + ":build"
    out = tmp_path / "cmp"
    common = ["--seeds", "1", "--data", data, *SETS, "--set", "compare.budget=null"]
    res = scinas_cli(
        "compare", "--model", spec, "--methods", "model,resnet_tiny", "--out", out, *common
    )
    assert res.returncode == 0, res.stderr
    c = json.loads((out / "compare.json").read_text())
    assert set(c["methods"]) == {"model", "resnet_tiny"} and c["complete"]
    assert c["methods"]["model"]["params"] != c["methods"]["resnet_tiny"]["params"]
    # the method model without a file to build it from
    res = scinas_cli("compare", "--methods", "model", "--out", tmp_path / "none", *common)
    assert res.returncode == 2 and "--model FILE.py:FUNCTION" in res.stderr, res.stderr
    assert not (tmp_path / "none").exists()


def _morphs_keep_the_function(arch, shape, kind, atol: float):
    """The network of ``arch``, an input batch and its morphs of ``kind``, each checked to
    compute what the network computes, with BatchNorm on running and on batch statistics."""
    import torch

    net = user_model.build(arch, shape, 3)
    x = torch.randn(5, *shape)
    steps = [m for m in user_model.morphs(arch) if isinstance(m, kind)]
    for train in (False, True):
        net.train(train)
        for m in steps:
            new = m.apply(net, seed=1)
            assert new.training is train
            assert torch.allclose(new(x)[0], net(x)[0], atol=atol), m.name
    return net, x, steps


@pytest.mark.parametrize("shape", [(1, 40), (2, 8, 8)], ids=["series", "images"])
def test_a_grown_kernel_computes_what_the_network_computed(tmp_path, shape):
    arch = user_model.trust(_net(tmp_path) + ":build")
    net, _, steps = _morphs_keep_the_function(arch, shape, user_model.KernelGrowth, atol=1e-6)
    assert [m.name for m in steps] == ["kernel 0 5 -> 7", "kernel 3 3 -> 5"]
    for m in steps:
        conv = m.apply(net).net.get_submodule(m.path)
        assert conv.kernel_size[0] == dict(m.target.kernels)[m.path]
    # the largest kernel is not grown further (images: 7), and the record reads back
    seven = user_model.UserModelArch(arch.file, arch.function, arch.sha256, (("0", 7),))
    user_model.build(seven, shape, 3)
    names = [m.name for m in user_model.morphs(seven)]
    assert ("kernel 0 7 -> 9" in names) is (len(shape) == 2)  # series grow to 15
    again = user_model.UserModelArch.from_dict(json.loads(seven.to_json()))
    assert again == seven


@pytest.mark.parametrize("shape", [(1, 40), (2, 8, 8)], ids=["series", "images"])
def test_a_widened_convolution_computes_what_the_network_computed(tmp_path, shape):
    import torch

    arch = user_model.trust(_net(tmp_path) + ":build")
    net, x, widen = _morphs_keep_the_function(arch, shape, user_model.Widening, atol=1e-5)
    assert [m.name for m in widen] == ["widen 0 8 -> 16", "widen 3 16 -> 32"]
    # the readers found in the graph: 0 -> BatchNorm 1 -> conv 3; 3 -> pool, flatten -> linear 7
    groups = [(m.group.writers, m.group.norms, m.group.readers) for m in widen]
    assert groups == [(("0",), ("1",), ("3",)), (("3",), (), ("7",))]
    for m in widen:
        (path,) = m.group.writers
        wide = m.apply(net).net.get_submodule(path)
        assert wide.out_channels == dict(m.target.widths)[path]
    # a widened network widens again (its BatchNorm and reader follow), and its record reads back
    first = widen[0]
    again = [m for m in user_model.morphs(first.target) if m.name.startswith("widen 0")]
    assert [m.name for m in again] == ["widen 0 16 -> 32"]
    assert torch.allclose(again[0].apply(first.apply(net))(x)[0], net(x)[0], atol=1e-5)
    assert user_model.UserModelArch.from_dict(json.loads(first.target.to_json())) == first.target
    with pytest.raises(UserError, match="widths"):
        user_model.UserModelArch.from_dict({**first.target.to_dict(), "widths": {"0": 0}})
    # a record that widens what the file does not build (a ReLU) names it
    relu = user_model.UserModelArch.from_dict({**arch.to_dict(), "widths": {"2": 16}})
    with pytest.raises(UserError, match="no convolution '2' that can be widened"):
        user_model.build(relu, shape, 3)


RESIDUAL_NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.a = nn.Conv1d(c, 8, 3, padding=1)
        self.b = nn.Conv1d(8, 8, 3, padding=1)
        self.c = nn.Conv1d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, n)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = y + self.b(y)  # a's channels go to b and to the sum, b's to the sum
        y = torch.relu(self.c(y))
        return self.head(y.mean(-1))  # c's reach the head alone, through the mean


class Gated(Net):
    def forward(self, x):
        y = torch.relu(self.a(x))
        return self.head(torch.cat([y, self.b(y)], 1).mean(-1)[:, :8])  # a concatenation


class Branching(Net):
    def forward(self, x):
        return super().forward(x if x.sum() > 0 else -x)  # fx cannot trace a branch on values


def build(input_shape, num_outputs):
    return Net(input_shape[0], num_outputs)


def branching(input_shape, num_outputs):
    return Branching(input_shape[0], num_outputs)


def gated(input_shape, num_outputs):
    return Gated(input_shape[0], num_outputs)
"""


def test_convolutions_whose_outputs_add_up_widen_together(tmp_path):
    """The two sides of a residual sum (a, and b, which reads the sum's stream and writes into
    it) widen as one group, b's outputs copied and its inputs split; c, read by the head through
    a mean over the positions, alone. The widened networks compute what the network did, and
    a record that gives a and b different widths is refused. Channels that reach a
    concatenation keep their width; a network fx cannot trace grows kernels only."""
    import torch

    spec = _net(tmp_path, RESIDUAL_NET)
    arch = user_model.trust(spec + ":build")
    net = user_model.build(arch, (1, 20), 2)
    widen = [m for m in user_model.morphs(arch) if isinstance(m, user_model.Widening)]
    assert [m.name for m in widen] == ["widen a,b 8 -> 16", "widen c 8 -> 16"]
    assert widen[0].group.readers == ("b", "c")
    x = torch.randn(4, 1, 20)
    for train in (False, True):
        net.train(train)
        for m in widen:
            assert torch.allclose(m.apply(net, seed=3)(x)[0], net(x)[0], atol=1e-5), m.name
    assert dict(widen[0].target.widths) == {"a": 16, "b": 16}
    odd = user_model.UserModelArch.from_dict({**arch.to_dict(), "widths": {"a": 16}})
    with pytest.raises(UserError, match="a, b add up their outputs.*16, 8"):
        user_model.build(odd, (1, 20), 2)
    gated = user_model.trust(spec + ":gated")
    user_model.build(gated, (1, 20), 2)
    assert [m.name for m in user_model.morphs(gated) if m.name.startswith("widen")] == []
    branching = user_model.trust(spec + ":branching")
    user_model.build(branching, (1, 20), 2)
    names = [m.name for m in user_model.morphs(branching)]
    assert names == ["kernel a 3 -> 5", "kernel b 3 -> 5", "kernel c 3 -> 5"]


def test_searching_my_model_grows_its_kernels_and_trains_the_result(tmp_path, monkeypatch):
    # every challenger is judged, even once the validation split is all right (the ceiling stop
    # has its own test in test_lineage.py)
    monkeypatch.setattr("scinas.strategies.lineage.out_of_reach", lambda *a: None)
    data = _data(tmp_path, (400, 1, 40), shift=0.4)  # separable, not in a few steps
    spec = _net(tmp_path) + ":build"
    out = tmp_path / "run"
    search = ["search.budget=2", "search.segment_steps=8", "search.patience=null"]
    sets = [a for s in [*search, "search.recipe=false"] for a in ("--set", s)]
    res = scinas_cli("run", "--model", spec, "--data", data, "--out", out, *SETS, *sets)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    moves = [e["move"] for e in events if e["event"] == "lineage_decision"]
    assert len(moves) == 2 and all(m.startswith(("kernel ", "widen ")) for m in moves), moves
    geno = json.loads((out / "genotype.json").read_text())
    assert geno["name"] == "model" and geno["sha256"]
    user_model._TRUSTED.clear()
    res = scinas_cli("evaluate", out, "--model", spec)
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert json.loads(res.stdout.splitlines()[-1])["accuracy"] == pytest.approx(
        results["test"]["accuracy"]
    )
    res = scinas_cli("run", "--model", spec, "--strategy", "random", "--out", tmp_path / "r")
    assert res.returncode == 2 and "--strategy random does not apply" in res.stderr


def test_model_search_needs_my_model(tmp_path):
    data = _data(tmp_path, (60, 8, 8))
    out = tmp_path / "cmp"
    res = scinas_cli("compare", "--methods", "model_search", "--data", data, "--out", out)
    assert res.returncode == 2 and "--model FILE.py:FUNCTION" in res.stderr, res.stderr
    assert not out.exists()
