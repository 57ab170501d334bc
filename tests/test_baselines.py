from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scinas.errors import UserError
from scinas.flops import count_parameters
from scinas.spaces.baselines import (
    BASELINES,
    SERIES_ONLY,
    BasicBlock,
    ResNet,
    build_baseline,
    stage_strides,
)
from scinas.tasks import Classification, Regression
from scinas.train import Batches, train_network

# (C, H, W): digits, CIFAR, non-square, odd and tiny, and one that takes the ImageNet stem.
SHAPES = [(1, 8, 8), (3, 32, 32), (5, 30, 80), (3, 7, 9), (1, 96, 96)]


def final_hw(model: ResNet, x: torch.Tensor) -> tuple[int, int]:
    """Spatial size of the last stage's output, read through a forward hook."""
    seen = {}
    handle = model.stages.register_forward_hook(lambda _m, _i, out: seen.update(hw=out.shape[2:]))
    model(x)
    handle.remove()
    return tuple(seen["hw"])


# the series networks (resnet1d: full resolution throughout) run on images in test_series.py
@pytest.mark.parametrize("name", [n for n in BASELINES.names() if n not in SERIES_ONLY])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_shape_and_interface(name, shape):
    C, H, W = shape
    model = build_baseline(name, C, 7, (H, W))
    assert model.drop_path_prob == 0.0
    x = torch.randn(2, C, H, W)
    out, aux = model(x)
    assert out.shape == (2, 7) and aux is None
    assert torch.isfinite(out).all()
    model.eval()
    out, aux = model(x)
    assert out.shape == (2, 7) and aux is None
    assert min(final_hw(model, x)) >= 2  # never pooled down to 1×1


def test_resnet18_on_imagenet_sized_input():
    model = build_baseline("resnet18", 3, 5, (224, 224))
    assert not model.small_input
    x = torch.randn(2, 3, 224, 224)
    out, aux = model(x)
    assert out.shape == (2, 5) and aux is None
    assert final_hw(model, x) == (7, 7)  # the standard 224 -> 56 -> 7 of ImageNet ResNets


@pytest.mark.parametrize(
    "hw, small, strides, final",
    [
        ((32, 32), True, [1, 2, 2, 2], (4, 4)),
        ((8, 8), True, [1, 2, 2, 1], (2, 2)),  # the third reduction would give 1×1: dropped
        ((7, 9), True, [1, 2, 2, 1], (2, 3)),
        ((4, 4), True, [1, 2, 1, 1], (2, 2)),
        ((64, 100), True, [1, 2, 2, 2], (8, 13)),  # shorter side 64: still the CIFAR stem
        ((65, 65), False, [1, 2, 2, 2], (3, 3)),  # 65 -> 33 -> 17 (stem), then 9, 5, 3
        ((96, 96), False, [1, 2, 2, 2], (3, 3)),
    ],
)
def test_stem_and_stride_rule(hw, small, strides, final):
    model = build_baseline("resnet10", 1, 3, hw)
    assert model.small_input is small
    assert model.strides == strides
    assert final_hw(model, torch.randn(1, 1, *hw)) == final


def test_stage_strides_drop_reductions_from_the_end():
    assert stage_strides(4, 2) == [1, 1, 1, 1]
    assert stage_strides(4, 3) == [1, 2, 1, 1]
    assert stage_strides(4, 5) == [1, 2, 2, 1]
    assert stage_strides(3, 100) == [1, 2, 2]


def test_parameter_counts():
    counts = {name: count_parameters(build_baseline(name, 3, 10, (32, 32))) for name in BASELINES}
    assert counts["resnet18"] == 11_173_962  # torchvision resnet18 with a 3×3 stem, 10 classes
    assert counts["resnet10"] == 4_903_242
    assert counts["resnet_tiny"] == 78_042
    # The stem and head follow the input channels and outputs; the rest does not.
    assert count_parameters(build_baseline("resnet18", 5, 4, (32, 32))) == (
        11_173_962 + 2 * 64 * 9 - 6 * 513
    )
    # The ImageNet stem has a 7×7 conv: resnet18 at 3×224×224 with 1000 classes as in the paper.
    assert count_parameters(build_baseline("resnet18", 3, 1000, (224, 224))) == 11_689_512


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError, match="unknown baseline 'resnt18'.*Did you mean 'resnet18'"):
        build_baseline("resnt18", 3, 10, (32, 32))


@pytest.mark.parametrize(
    "args, match",
    [
        ((3, 10, (3, 32)), "too small"),
        ((0, 10, (32, 32)), "input channel"),
        ((3, 0, (32, 32)), "output"),
    ],
)
def test_bad_sizes_are_user_errors(args, match):
    with pytest.raises(UserError, match=match):
        build_baseline("resnet_tiny", *args)


def test_zero_init_makes_each_block_start_as_identity():
    model = build_baseline("resnet_tiny", 3, 10, (16, 16))
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(torch.equal(b.bn2.weight, torch.zeros_like(b.bn2.weight)) for b in blocks)
    model.eval()
    first = model.stages[0][0]  # identity shortcut, same width in and out
    x = torch.relu(torch.randn(2, 16, 16, 16))
    torch.testing.assert_close(first(x), x)


def all_grads_nonzero(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x)[0], y).backward()
    return [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def test_gradients_reach_every_parameter():
    x, y = torch.randn(4, 2, 12, 10), torch.tensor([0, 1, 2, 1])
    plain = ResNet(2, 3, (12, 10), [2, 1], [8, 16], zero_init_residual=False)
    assert all_grads_nonzero(plain, x, y) == []
    # With zero-init the branch convs wait for one step to move their block's gamma off zero.
    model = ResNet(2, 3, (12, 10), [2, 1], [8, 16])
    silent = all_grads_nonzero(model, x, y)
    assert silent and all("conv" in n or "bn1" in n for n in silent)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all_grads_nonzero(model, x, y) == []


def test_resnet_tiny_fits_a_tiny_batch():
    model = build_baseline("resnet_tiny", 3, 10, (32, 32))
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x)[0], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("task", [Classification(num_outputs=3), Regression(num_outputs=2)])
def test_the_network_trainer_trains_a_baseline(task):
    n = 24
    x = torch.randn(n, 1, 8, 8)
    y = torch.arange(n) % 3 if task.name == "classification" else torch.randn(n, 2)
    batches = Batches(x, y, torch.zeros(1), torch.ones(1), 8, torch.device("cpu"), shuffle=True)
    model = build_baseline("resnet_tiny", 1, task.num_outputs, (8, 8))
    history = train_network(
        model,
        task,
        batches,
        batches,
        epochs=2,
        lr=0.05,
        lr_min=0.0,
        momentum=0.9,
        weight_decay=3e-4,
        grad_clip=5.0,
        drop_path_prob=0.2,
    )
    assert len(history) == 2 and task.primary_metric in history[-1].val
