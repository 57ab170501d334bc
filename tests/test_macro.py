"""The macro search space: the ResNet baselines are its points, every block builds and runs on odd
shapes and every task head, architectures round-trip as JSON, and bad options are refused."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

import scinas
from conftest import scinas_cli
from scinas.config import SearchConfig
from scinas.errors import UserError
from scinas.flops import count_parameters
from scinas.spaces import SPACES, load_genotype
from scinas.spaces.baselines import BASELINES, SERIES_ONLY, build_baseline
from scinas.spaces.macro import BLOCKS, KERNELS, MacroArch, MacroStage, baseline_points
from scinas.tasks import make_task

SPACE = SPACES.get("macro")
RESNETS = [n for n in BASELINES.names() if n not in SERIES_ONLY]  # resnet1d is no macro point
TRAIN = scinas.build_config("tiny").train


@pytest.mark.parametrize("name", RESNETS)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (2, 9, 70), (3, 96, 80), (5, 1, 1)])
def test_every_resnet_baseline_is_a_point_with_its_exact_parameter_count(name, shape):
    arch = load_genotype(f"macro:{name}")
    assert isinstance(arch, MacroArch)
    net = SPACE.build_network(arch, TRAIN, shape, 7)
    base = build_baseline(name, shape[0], 7, shape[1:])
    assert count_parameters(net) == count_parameters(base)
    assert net.strides == base.strides  # the same size rules, reductions dropped from the end


@pytest.mark.parametrize("name", RESNETS)
def test_every_resnet_point_computes_the_baselines_function(name):
    """With the baseline's weights copied in (same tensors in the same order), the macro point
    gives the baseline's outputs: the same network, not only the same count."""
    torch.manual_seed(0)
    base = build_baseline(name, 2, 3, (20, 20)).eval()
    net = SPACE.build_network(load_genotype(f"macro:{name}"), TRAIN, (2, 20, 20), 3).eval()
    src, dst = base.state_dict(), net.state_dict()
    assert [v.shape for v in src.values()] == [v.shape for v in dst.values()]
    with torch.no_grad():
        for p in base.parameters():  # zero-initialised BNs would hide the residual branches
            p.add_(0.1 * torch.randn_like(p))
    net.load_state_dict(dict(zip(dst, base.state_dict().values(), strict=True)))
    x = torch.randn(2, 2, 20, 20)
    torch.testing.assert_close(net(x)[0], base(x)[0])


def test_published_parameter_counts():
    """He et al.'s ResNet-18 at 3×32×32 and 10 classes: 11,173,962 parameters."""
    net = SPACE.build_network(load_genotype("macro:resnet18"), TRAIN, (3, 32, 32), 10)
    assert count_parameters(net) == 11_173_962
    net = SPACE.build_network(load_genotype("macro:resnet_tiny"), TRAIN, (3, 32, 32), 10)
    assert count_parameters(net) == 78_042
    assert set(baseline_points()) == {f"macro:{n}" for n in RESNETS}


@pytest.mark.parametrize("widths", [None, [16, 32, 64, 128, 256, 512]])
def test_the_resnet_points_are_in_the_decision_space(widths):
    """resnet_tiny with the default (CPU-sized) options, every ResNet with the wider widths."""
    s = SearchConfig.model_validate({"strategy": "random", "space": "macro", "widths": widths})
    choices = dict(SPACE.decisions(s).decisions)
    points = baseline_points()
    if widths is None:
        points = {"macro:resnet_tiny": points["macro:resnet_tiny"]}
    for arch in points.values():
        assert arch.stem in choices["stem"]
        for i, st in enumerate(arch.stages):
            for key in ("depth", "width", "block", "kernel", "dilation", "se"):
                assert getattr(st, key) in choices[f"s{i}_{key}"]
            assert st.downsample in choices[f"s{i}_down"]


COMBOS = list(itertools.product(BLOCKS, KERNELS, (1, 2), (False, True)))


@pytest.mark.parametrize("block, kernel, dilation, se", COMBOS)
def test_every_block_kernel_dilation_se_builds_and_trains_on_odd_shapes(
    block, kernel, dilation, se
):
    stages = (
        MacroStage(1, 8, False, block, 2, kernel, dilation, se),
        MacroStage(2, 12, True, block, 3, kernel, dilation, se),
    )
    arch = MacroArch(6, stages)
    for shape in [(3, 7, 13), (1, 4, 4), (2, 1, 1)]:
        net = SPACE.build_network(arch, TRAIN, shape, 4)
        x = torch.randn(3, *shape)
        out, aux = net(x)
        assert out.shape == (3, 4) and aux is None and torch.isfinite(out).all()
        out.sum().backward()


TASK_CASES = {
    "classification": (make_task("classification", 5), torch.tensor([0, 4, 2])),
    "regression": (make_task("regression", 3, [0.0] * 3, [1.0] * 3), torch.randn(3, 3)),
    "multilabel": (make_task("multilabel", 4), torch.tensor([[1, 0, 1, 0]] * 3).float()),
    "grouped softmax": (
        make_task("regression", 5, [0.0] * 5, [1.0] * 5, output_groups=[[0, 1, 2], [3, 4]]),
        torch.tensor([[0.2, 0.3, 0.5, 0.9, 0.1]] * 3),
    ),
}


@pytest.mark.parametrize("case", TASK_CASES)
def test_every_task_head(case):
    task, y = TASK_CASES[case]
    s = SearchConfig.model_validate({"strategy": "random", "space": "macro"})
    arch = SPACE.decisions(s).sample(np.random.RandomState(3))
    net = SPACE.build_network(arch, TRAIN, (2, 11, 9), task.num_outputs)
    out, _ = net(torch.randn(3, 2, 11, 9))
    loss = task.loss(out, task.encode_targets(y))
    assert torch.isfinite(loss)
    loss.backward()


def test_json_round_trip_and_canonical_form():
    s = SearchConfig.model_validate(
        {"strategy": "random", "space": "macro", "depths": [0, 1], "stages": 4}
    )
    rng = np.random.RandomState(0)
    for _ in range(20):
        arch = SPACE.decisions(s).sample(rng)
        assert all(st.depth >= 1 for st in arch.stages) and 1 <= len(arch.stages) <= 4
        again = scinas.spaces.arch_from_dict(json.loads(arch.to_json()))
        assert again == arch
    # a basic block has no expansion: one form per network
    assert MacroStage(1, 8, block="basic", expansion=4) == MacroStage(1, 8, block="basic")


@pytest.mark.parametrize(
    "data, phrase",
    [
        ({"stem": 8, "stages": []}, "1..4 stages"),
        ({"stem": 8, "stages": [{"depth": 1, "width": 8, "block": "resnext"}]}, "block type"),
        ({"stem": 8, "stages": [{"depth": 1, "width": 8, "kernel": 4}]}, "kernel size 4"),
        ({"stem": 8, "stages": [{"depth": 0, "width": 8}]}, "depth must be an integer in 1"),
        ({"stem": 8, "stages": [{"depth": 1, "width": 8, "colour": 1}]}, "stage 1 must be"),
        ({"stem": "8", "stages": [{"depth": 1, "width": 8}]}, "stem width"),
    ],
)
def test_bad_architecture_files_are_one_clear_message(data, phrase):
    with pytest.raises(UserError, match=phrase):
        SPACE.from_dict({"space": "macro", **data})


@pytest.mark.parametrize(
    "setting, phrase",
    [
        ("search.blocks=[basic,resnext]", "unknown macro block type 'resnext'"),
        ("search.kernels=[3,9]", "unknown macro kernel size 9"),
    ],
)
def test_unknown_block_or_kernel_exits_2_and_writes_nothing(tmp_path, setting, phrase):
    out = tmp_path / "out"
    args = ["--set", "search.space=macro", "--set", setting]
    res = scinas_cli("run", "--out", out, "--strategy", "random", *args)
    assert res.returncode == 2 and phrase in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "setting, phrase",
    [
        ("search.dilations=[0]", r"search.dilations \[0\] out of range"),
        ("search.depths=[0]", "search.depths needs a depth of at least 1"),
        ("search.kernels=[3,3]", "names a choice twice"),
        ("search.widths=[]", "search.widths is empty"),
    ],
)
def test_bad_options_are_one_clear_message(setting, phrase):
    sets = ["search.strategy=random", "search.space=macro", setting]
    with pytest.raises(UserError, match=phrase):
        scinas.build_config("tiny", overrides=sets)


def test_options_of_the_macro_space_are_refused_elsewhere():
    with pytest.raises(UserError, match="search.kernels=.* is a setting of space macro"):
        scinas.build_config("tiny", overrides=["search.strategy=random", "search.kernels=[3]"])


def test_options_narrow_the_decisions():
    s = SearchConfig.model_validate(
        {
            "strategy": "random",
            "space": "macro",
            "blocks": ["inverted"],
            "kernels": [5],
            "stages": 3,
            "se": [True],
        }
    )
    rng = np.random.RandomState(1)
    for _ in range(10):
        arch = SPACE.decisions(s).sample(rng)
        assert len(arch.stages) <= 3
        assert all(st.block == "inverted" and st.kernel == 5 and st.se for st in arch.stages)
