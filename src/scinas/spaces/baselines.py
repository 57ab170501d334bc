"""Hand-designed ResNet baselines (He et al. 2016) to compare searched networks against.

Built for any number of input channels, any H×W from 4×4 up (non-square and odd sizes too) or any
series length from 4 up, and any number of outputs, from one definition: the layers' dimension
(`scinas.spaces.nd`) follows the input, so a series gets 1-D convolutions of the same kernel sizes.
Same interface as :class:`scinas.network.Network`: ``forward`` returns
``(output, None)`` and ``drop_path_prob`` exists (and is ignored), so one trainer serves both.

Size rules, so that small scientific images keep a usable feature map:

* Stem: if the shorter side is at most 64 pixels, a 3×3 stride-1 convolution and no max-pool (the
  CIFAR ResNets); otherwise the ImageNet stem, a 7×7 stride-2 convolution and a 3×3 stride-2
  max-pool (each halving with ceil, so H×W becomes ceil(ceil(H/2)/2) × ceil(ceil(W/2)/2)).
* Stages: the first keeps the stem's resolution; each later one halves it (stride 2, ceil) only
  while the shorter side stays at least 2 pixels (:func:`scinas.network.max_reductions`). The
  reductions that do not fit are dropped from the last stages, which then run at stride 1, so
  early layers still downsample and the deep layers never see a 1×1 map. E.g. resnet18's stages
  output 8, 4, 2, 2 pixels per side for 8×8 digits and 32, 16, 8, 4 for 32×32 images.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry
from . import nd, receptive, user_model
from .base import DecisionSpace, Drawing, SearchSpace, register_space
from .common import max_reductions
from .user_model import UserModelArch, convs_dict, parse_convs, receptive_summary

SMALL_INPUT_MAX_SIDE = 64
"""Inputs whose shorter side is at most this get the CIFAR stem (3×3, stride 1, no max-pool)."""

BaselineFactory = Callable[[int, int, tuple[int, ...]], nn.Module]
BASELINES: Registry[BaselineFactory] = Registry("baseline")


class BasicBlock(nn.Module):
    """Two 3×3 (series: 3) conv-BN layers plus a shortcut (1×1 conv + BN where the shape
    changes), of dimension ``d``."""

    def __init__(self, C_in: int, C_out: int, stride: int, d: int = 2):
        super().__init__()
        self.conv1 = nd.conv(d, C_in, C_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nd.batch_norm(d, C_out)
        self.conv2 = nd.conv(d, C_out, C_out, 3, padding=1, bias=False)
        self.bn2 = nd.batch_norm(d, C_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or C_in != C_out:
            self.shortcut = nn.Sequential(
                nd.conv1x1(d, C_in, C_out, stride), nd.batch_norm(d, C_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def stage_strides(num_stages: int, side: int) -> list[int]:
    """Stride of each stage: 1 for the first, 2 for later ones while the map stays ≥ 2×2.

    ``side`` is the shorter side after the stem; reductions that do not fit are dropped from the
    end, so downsampling happens early (cheap) and the last stages never reach 1×1.
    """
    allowed = max_reductions(side, side)
    return [1] + [2 if i <= allowed else 1 for i in range(1, num_stages)]


def init_conv_bn(model: nn.Module) -> None:
    """He initialisation (fan-out) of every convolution, BatchNorms at weight 1 and bias 0.
    Nothing to do on ``meta`` (shapes only, as the memory checks build): there, torch's first
    ``normal_`` imports torch._dynamo, most of a second in every scinas process."""
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nd.CONVS):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nd.NORMS):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """A ResNet of basic blocks with an input-size-adapted stem, for any C×H×W (or C×L series:
    ``input_hw`` is then ``(L,)`` and every layer 1-D) and output count.

    ``blocks[i]`` basic blocks of width ``widths[i]`` form stage i; global average pooling and a
    linear head give ``num_outputs`` values (class logits or regression targets).
    ``zero_init_residual`` starts each block's last BN at gamma 0, so every block begins as the
    identity: the network starts shallow and trains faster and more stably in short schedules
    (Goyal et al. 2017). The branch's convolutions then get zero gradient until the first step has
    moved gamma off zero.
    """

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        input_hw: tuple[int, ...],
        blocks: Sequence[int],
        widths: Sequence[int],
        zero_init_residual: bool = True,
    ):
        super().__init__()
        if in_channels < 1 or num_outputs < 1:
            raise UserError(
                f"a ResNet needs at least 1 input channel and 1 output, got "
                f"in_channels={in_channels}, num_outputs={num_outputs}."
            )
        sizes = nd.check_sizes(input_hw)
        d = nd.dim_of(sizes)
        if len(blocks) != len(widths) or not blocks or min(blocks) < 1:
            raise ValueError(f"blocks {list(blocks)} and widths {list(widths)} do not match")
        self.drop_path_prob = 0.0  # the trainer sets it; a ResNet has no paths to drop
        self.input_hw = sizes
        side = min(sizes)
        self.small_input = side <= SMALL_INPUT_MAX_SIDE
        C = widths[0]
        if self.small_input:
            stem: list[nn.Module] = [nd.conv(d, in_channels, C, 3, padding=1, bias=False)]
        else:
            stem = [nd.conv(d, in_channels, C, 7, stride=2, padding=3, bias=False)]
        stem += [nd.batch_norm(d, C), nn.ReLU(inplace=True)]
        if not self.small_input:
            stem.append(nd.max_pool(d, 3, stride=2, padding=1))
            side = (((side + 1) // 2) + 1) // 2
        self.stem = nn.Sequential(*stem)
        self.strides = stage_strides(len(blocks), side)
        stages, C_in = [], C
        for n, C_out, stride in zip(blocks, widths, self.strides, strict=True):
            layers = [BasicBlock(C_in, C_out, stride, d)]
            layers += [BasicBlock(C_out, C_out, 1, d) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            C_in = C_out
        self.stages = nn.Sequential(*stages)
        self.global_pooling = nd.global_pool(d)
        self.classifier = nn.Linear(C_in, num_outputs)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        init_conv_bn(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:  # x: (B, C_in, *sizes)
        features = self.stages(self.stem(x))
        return self.classifier(self.global_pooling(features).flatten(1)), None


@BASELINES.decorator("resnet10")
def resnet10(in_channels: int, num_outputs: int, input_hw: tuple[int, ...]) -> ResNet:
    """One basic block per stage at ResNet-18's widths: a cheaper ResNet reference."""
    return ResNet(in_channels, num_outputs, input_hw, [1, 1, 1, 1], [64, 128, 256, 512])


@BASELINES.decorator("resnet18")
def resnet18(in_channels: int, num_outputs: int, input_hw: tuple[int, ...]) -> ResNet:
    """He et al.'s ResNet-18 (11,173,962 parameters at 3×32×32 and 10 classes)."""
    return ResNet(in_channels, num_outputs, input_hw, [2, 2, 2, 2], [64, 128, 256, 512])


RESNET_TINY_WIDTHS = (16, 32, 64)


@BASELINES.decorator("resnet_tiny")
def resnet_tiny(in_channels: int, num_outputs: int, input_hw: tuple[int, ...]) -> ResNet:
    """A ResNet-8 at widths 16/32/64 (78,042 parameters at 3×32×32 and 10 classes).

    About the size of a small searched cell network, for a like-for-like comparison on CPU.
    """
    return ResNet(in_channels, num_outputs, input_hw, [1, 1, 1], list(RESNET_TINY_WIDTHS))


WANG_KERNELS = (8, 5, 3)


class WangBlock(nn.Module):
    """A residual block of Wang et al.'s ResNet: conv-BN-ReLU with kernels 8, 5 and 3 (stride 1,
    the size kept: `nd.same_conv`), the last without its ReLU, plus a shortcut (1×1 conv + BN
    where the width changes, BN alone otherwise, as in the paper's code), then ReLU."""

    def __init__(self, C_in: int, C_out: int, d: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i, k in enumerate(WANG_KERNELS):
            C = C_in if i == 0 else C_out
            layers += [*nd.same_conv(d, C, C_out, k), nd.batch_norm(d, C_out)]
            if i < len(WANG_KERNELS) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.branch = nn.Sequential(*layers)
        self.shortcut: nn.Module = (
            nn.Sequential(nd.conv1x1(d, C_in, C_out), nd.batch_norm(d, C_out))
            if C_in != C_out
            else nd.batch_norm(d, C_out)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class WangResNet(nn.Module):
    """The standard deep baseline of time-series classification (Wang, Yan & Oates 2017, "Time
    series classification from scratch with deep neural networks"; Ismail Fawaz et al. 2019 found
    it the strongest of nine): 3 residual blocks of 64, 128 and 128 channels (kernels 8, 5, 3),
    no downsampling at all, global average pooling and a linear head. Built for series (1-D); the
    same code builds the 2-D analogue for images, which is slow (8×8 kernels at full resolution)."""

    def __init__(self, in_channels: int, num_outputs: int, input_hw: tuple[int, ...]):
        super().__init__()
        d = nd.dim_of(nd.check_sizes(input_hw))
        self.drop_path_prob = 0.0  # the trainer sets it; no paths to drop
        self.input_hw = tuple(input_hw)
        blocks, C_in = [], in_channels
        for C_out in (64, 128, 128):
            blocks.append(WangBlock(C_in, C_out, d))
            C_in = C_out
        self.stages = nn.Sequential(*blocks)
        self.global_pooling = nd.global_pool(d)
        self.classifier = nn.Linear(C_in, num_outputs)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        features = self.stages(x)
        return self.classifier(self.global_pooling(features).flatten(1)), None


@BASELINES.decorator("resnet1d")
def resnet1d(in_channels: int, num_outputs: int, input_hw: tuple[int, ...]) -> WangResNet:
    """Wang et al. 2017's ResNet for time-series classification (3 blocks of 64/128/128 channels,
    kernels 8, 5, 3; 503,106 parameters at 1×150 and 2 classes: no conv biases before BN)."""
    return WangResNet(in_channels, num_outputs, input_hw)


SERIES_ONLY = frozenset({"resnet1d"})
"""Baselines designed for series: the baseline space's search offers them only for series (on
images resnet1d's 8×8 kernels at full resolution cost about 100 times resnet_tiny's steps)."""


def build_baseline(
    name: str, in_channels: int, num_outputs: int, input_hw: tuple[int, ...]
) -> nn.Module:
    """Build the registered baseline ``name``; an unknown name is a UserError with a suggestion."""
    return BASELINES.get(name)(in_channels, num_outputs, tuple(input_hw))


@dataclass(frozen=True)
class BaselineArch:
    """A hand-designed network named in place of a genotype (``scinas train --genotype
    resnet18``); JSON form ``{"space": "baseline", "name": "resnet18"}``, with ``"convs":
    {MODULE: [KERNEL, DILATION]}`` when a receptive-field search chose its convolutions'."""

    space: ClassVar[str] = "baseline"

    name: str
    convs: tuple[tuple[str, int, int], ...] = ()  # (module path, kernel, dilation), sorted

    def __post_init__(self) -> None:
        BASELINES.get(self.name)  # unknown -> UserError with a suggestion

    def __str__(self) -> str:
        return self.name + receptive_summary(self.convs)

    def to_dict(self) -> dict:
        return {"space": "baseline", "name": self.name, **convs_dict(self.convs)}

    @classmethod
    def from_dict(cls, d, source: str = "architecture") -> BaselineArch:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise UserError(f'{source}: a baseline is {{"space": "baseline", "name": NAME}}.')
        return cls(d["name"], parse_convs(d, source))

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text


@register_space
class BaselineSpace(SearchSpace):
    """The hand-designed networks as a space of fixed architectures: one decision, which network.
    Black-box strategies can pick among them; there is no supernet to share weights in."""

    name = "baseline"
    description = "hand-designed networks (" + ", ".join(BASELINES.names()) + "), fixed"
    dims = nd.DIMS
    has_receptive_fields = True

    def from_dict(self, data, source: str = "architecture"):
        if isinstance(data, dict) and data.get("name") == "model" and "file" in data:
            return UserModelArch.from_dict(data, source=source)  # the user's own network
        return BaselineArch.from_dict(data, source=source)

    def parse(self, text: str, source: str = "architecture"):
        if user_model.is_spec(text):  # FILE.py:FUNCTION (runnable once the user named it)
            return user_model.arch_of(text)
        return BaselineArch(text) if text in BASELINES else None

    def named(self) -> list[str]:
        return BASELINES.names()

    def decisions(self, s) -> DecisionSpace:
        return DecisionSpace(
            "baseline",
            (("network", tuple(n for n in BASELINES.names() if n not in SERIES_ONLY)),),
            lambda p: BaselineArch(p["network"]),
        )

    def build_network(self, arch: BaselineArch, t, input_shape, num_outputs: int) -> nn.Module:
        if isinstance(arch, UserModelArch):
            net = user_model.build(arch, tuple(input_shape), num_outputs)
        else:
            C_in, *sizes = input_shape
            net = build_baseline(arch.name, C_in, num_outputs, tuple(sizes))
        try:
            return receptive.apply(net, arch.convs)
        except ValueError as e:
            raise UserError(f"{arch}: {e}: the architecture names another network.") from None

    def network_summary(self, arch, t) -> str:
        if isinstance(arch, UserModelArch):
            return f"your network {arch}"
        return str(arch)

    def morphs(self, arch, s, input_hw) -> list:
        """Function-preserving steps: for your own network, one convolution's kernel grown by 2
        (`user_model.KernelGrowth`); none for the hand-designed ones."""
        return user_model.morphs(arch) if isinstance(arch, UserModelArch) else []

    def drawing(self, data: dict) -> Drawing:
        if data.get("name") == "model" and "file" in data:
            return Drawing(notes=(f"your network: {data['file']}:{data.get('function')}",))
        return Drawing(notes=(f"hand-designed network: {data.get('name')}",))
