"""The macro space's architectures and networks: `MacroArch` (a stem and up to 4 stages) and the
`MacroNetwork` built from one. The space itself (decisions, checks) is `scinas.spaces.macro`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserError, unknown
from . import nd
from .baselines import BASELINES, SMALL_INPUT_MAX_SIDE, ResNet, init_conv_bn
from .common import max_reductions

BLOCKS: tuple[str, ...] = ("basic", "bottleneck", "inverted")
KERNELS: tuple[int, ...] = (3, 5, 7)
MAX_DILATION = 4
MAX_EXPANSION = 8
MAX_WIDTH = 2048
MAX_DEPTH = 16
MAX_STAGES = 4

# The options searched when a setting is unset (``search.KEY`` -> its default choices).
DEFAULTS: dict[str, tuple] = {
    "blocks": BLOCKS,
    "kernels": KERNELS,
    "dilations": (1, 2),
    "expansions": (1, 2, 4, 6),
    "widths": (16, 32, 64, 128),  # CPU-sized; resnet10/18 need 256 and 512 as well
    "depths": (0, 1, 2, 3),
    "se": (False, True),
}


# ----------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class MacroStage:
    """One stage: ``depth`` blocks of one kind, the first one changing width and stride."""

    depth: int
    width: int
    downsample: bool = True
    block: str = "basic"
    expansion: int = 1  # basic blocks have none: always 1
    kernel: int = 3
    dilation: int = 1
    se: bool = False

    def __post_init__(self) -> None:
        for name, low, high in (
            ("depth", 1, MAX_DEPTH),
            ("width", 1, MAX_WIDTH),
            ("expansion", 1, MAX_EXPANSION),
            ("dilation", 1, MAX_DILATION),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UserError(
                    f"a macro stage's {name} must be an integer in {low}..{high}, got {value!r}."
                )
        if self.block not in BLOCKS:
            raise unknown("macro block type", str(self.block), BLOCKS)
        if self.kernel not in KERNELS or isinstance(self.kernel, bool):
            raise UserError(
                f"unknown macro kernel size {self.kernel!r}. Valid kernel sizes: "
                f"{', '.join(map(str, KERNELS))}."
            )
        for name in ("downsample", "se"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"a macro stage's {name} must be true or false.")
        if self.block == "basic" and self.expansion != 1:
            object.__setattr__(self, "expansion", 1)  # one form per network


@dataclass(frozen=True)
class MacroArch:
    """A stem width and 1..4 stages (none empty); always valid once built."""

    space: ClassVar[str] = "macro"

    stem: int
    stages: tuple[MacroStage, ...]

    def __post_init__(self) -> None:
        if isinstance(self.stem, bool) or not isinstance(self.stem, int):
            raise UserError(f"a macro network's stem width must be an integer, got {self.stem!r}.")
        if not 1 <= self.stem <= MAX_WIDTH:
            raise UserError(f"a macro network's stem width must be in 1..{MAX_WIDTH}.")
        stages = tuple(self.stages)
        if not 1 <= len(stages) <= MAX_STAGES:
            raise UserError(
                f"a macro network has 1..{MAX_STAGES} stages of at least one block, got "
                f"{len(stages)}."
            )
        object.__setattr__(self, "stages", stages)

    def to_dict(self) -> dict:
        return {"space": "macro", "stem": self.stem, "stages": [asdict(s) for s in self.stages]}

    @classmethod
    def from_dict(cls, d, source: str = "architecture") -> MacroArch:
        shape = '{"space": "macro", "stem": 16, "stages": [{"depth": 1, "width": 16, ...}, ...]}'
        if not isinstance(d, Mapping):
            raise UserError(f"{source} is not a macro architecture: expected {shape}.")
        if d.get("space", "macro") != "macro":
            raise UserError(f"{source} is for the search space '{d.get('space')}', not 'macro'.")
        extra = set(d) - {"space", "stem", "stages"}
        if extra or "stem" not in d or not isinstance(d.get("stages"), list):
            raise UserError(f"{source}: a macro architecture is {shape} (got keys {sorted(d)}).")
        known = {f.name for f in fields(MacroStage)}
        stages = []
        for i, st in enumerate(d["stages"]):
            if not isinstance(st, Mapping) or set(st) - known or not {"depth", "width"} <= set(st):
                raise UserError(
                    f"{source}: stage {i + 1} must be an object with depth and width and "
                    f"optionally {', '.join(sorted(known - {'depth', 'width'}))}."
                )
            try:
                stages.append(MacroStage(**st))
            except UserError as e:
                raise UserError(f"{source}: stage {i + 1}: {e}") from None
        return cls(d["stem"], tuple(stages))

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def __str__(self) -> str:
        parts = [f"stem {self.stem}"]
        for s in self.stages:
            kind = s.block if s.block == "basic" else f"{s.block}×{s.expansion}"
            extra = (f" d{s.dilation}" if s.dilation > 1 else "") + (" SE" if s.se else "")
            down = "/2 " if s.downsample else ""
            parts.append(f"{down}{s.depth}×{kind} {s.kernel}×{s.kernel}{extra} w{s.width}")
        return " | ".join(parts)


def from_resnet(net: ResNet) -> MacroArch:
    """The macro point of a ResNet baseline, read off the built network: its stem width, and per
    stage the number of basic blocks and their width (every stage but the first downsamples)."""
    stages = tuple(
        MacroStage(depth=len(stage), width=stage[0].conv1.out_channels, downsample=i > 0)
        for i, stage in enumerate(net.stages)
    )
    return MacroArch(net.stem[0].out_channels, stages)


_POINTS: dict[tuple, MacroArch | None] = {}  # (name, builder): its point, built once


def baseline_points() -> dict[str, MacroArch]:
    """``macro:NAME`` for every registered baseline that is a ResNet of basic blocks (each
    built once per process: the CLI's help texts ask for them on every command)."""
    points = {}
    for name in BASELINES.names():
        build = BASELINES.get(name)
        key = (name, build)
        if key not in _POINTS:
            with torch.device("meta"):  # only the structure is read: no memory, no init cost
                net = build(3, 10, (32, 32))
            _POINTS[key] = from_resnet(net) if isinstance(net, ResNet) else None
        if _POINTS[key] is not None:
            points[f"macro:{name}"] = _POINTS[key]
    return points


# ----------------------------------------------------------------------------- network


def _conv_bn(C_in, C_out, k, stride=1, dilation=1, groups=1, d=2) -> list[nn.Module]:
    pad = dilation * (k - 1) // 2
    conv = nd.conv(d, C_in, C_out, k, stride, pad, dilation=dilation, groups=groups, bias=False)
    return [conv, nd.batch_norm(d, C_out)]


class SqueezeExcite(nn.Module):
    """Hu et al.'s squeeze-and-excitation: channel gates from the pooled map (reduction 4)."""

    def __init__(self, C: int, d: int = 2):
        super().__init__()
        hidden = max(1, C // 4)
        self.gate = nn.Sequential(
            nd.global_pool(d),
            nd.conv(d, C, hidden, 1),
            nn.ReLU(inplace=True),
            nd.conv(d, hidden, C, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MacroBlock(nn.Module):
    """One residual block of a stage: ``branch`` (ending in a BatchNorm), optional
    squeeze-excitation, plus the shortcut, then ReLU (none after an inverted residual)."""

    def __init__(self, st: MacroStage, C_in: int, C_out: int, stride: int, dim: int = 2):
        super().__init__()
        k, d, e = st.kernel, st.dilation, st.expansion
        act = nn.ReLU if st.block != "inverted" else nn.ReLU6
        if st.block == "basic":
            layers = [
                *_conv_bn(C_in, C_out, k, stride, d, d=dim),
                act(inplace=True),
                *_conv_bn(C_out, C_out, k, 1, d, d=dim),
            ]
        elif st.block == "bottleneck":
            mid = max(1, C_out // e)
            layers = [
                *_conv_bn(C_in, mid, 1, d=dim),
                act(inplace=True),
                *_conv_bn(mid, mid, k, stride, d, d=dim),
                act(inplace=True),
                *_conv_bn(mid, C_out, 1, d=dim),
            ]
        else:  # inverted residual
            mid = C_in * e
            layers = [*_conv_bn(C_in, mid, 1, d=dim), act(inplace=True)] if e > 1 else []
            layers += [
                *_conv_bn(mid, mid, k, stride, d, groups=mid, d=dim),
                act(inplace=True),
                *_conv_bn(mid, C_out, 1, d=dim),
            ]
        self.branch = nn.Sequential(*layers)  # ends in the BatchNorm that starts at zero
        self.se = SqueezeExcite(C_out, dim) if st.se else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or C_in != C_out:
            self.shortcut = nn.Sequential(
                nd.conv1x1(dim, C_in, C_out, stride), nd.batch_norm(dim, C_out)
            )
        self.out_act = nn.ReLU(inplace=True) if st.block != "inverted" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.se(self.branch(x)) + self.shortcut(x))


def check_input(input_hw) -> tuple[int, ...]:
    """The input's sizes after the channels, ``(H, W)`` or a series' ``(L,)``, checked."""
    return nd.check_sizes(input_hw)


def stage_strides(arch: MacroArch, input_hw) -> list[int]:
    """Each stage's stride for inputs of ``input_hw``: 2 where it downsamples, while the map
    stays at least 2×2 (a series: 2 steps) after the large-input stem's two halvings."""
    side = min(int(s) for s in input_hw)
    if side > SMALL_INPUT_MAX_SIDE:
        side = (((side + 1) // 2) + 1) // 2
    allowed, used, strides = max_reductions(side, side), 0, []
    for st in arch.stages:
        stride = 2 if st.downsample and used < allowed else 1
        used += stride == 2
        strides.append(stride)
    return strides


class MacroNetwork(nn.Module):
    """The network of a `MacroArch` for (C, H, W) inputs, or (C, L) series (``input_hw`` then
    ``(L,)``, every layer 1-D), and ``num_outputs`` outputs (logits or regression targets, the
    task's head decides). ``forward`` returns ``(output, None)``."""

    def __init__(self, arch: MacroArch, in_channels: int, num_outputs: int, input_hw):
        super().__init__()
        if in_channels < 1 or num_outputs < 1:
            raise UserError(
                f"a macro network needs at least 1 input channel and 1 output, got "
                f"in_channels={in_channels}, num_outputs={num_outputs}."
            )
        sizes = check_input(input_hw)
        d = nd.dim_of(sizes)
        self.arch, self.input_hw = arch, sizes
        self.drop_path_prob = 0.0  # the trainer sets it; no paths to drop
        if min(sizes) <= SMALL_INPUT_MAX_SIDE:
            stem: list[nn.Module] = _conv_bn(in_channels, arch.stem, 3, d=d)
            stem.append(nn.ReLU(inplace=True))
        else:
            stem = [*_conv_bn(in_channels, arch.stem, 7, 2, d=d), nn.ReLU(inplace=True)]
            stem.append(nd.max_pool(d, 3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        self.strides: list[int] = stage_strides(arch, sizes)
        stages, C = [], arch.stem
        for st, stride in zip(arch.stages, self.strides, strict=True):
            blocks = [MacroBlock(st, C, st.width, stride, d)]
            blocks += [MacroBlock(st, st.width, st.width, 1, d) for _ in range(st.depth - 1)]
            stages.append(nn.Sequential(*blocks))
            C = st.width
        self.stages = nn.Sequential(*stages)
        self.global_pooling = nd.global_pool(d)
        self.classifier = nn.Linear(C, num_outputs)
        init_conv_bn(self)
        for m in self.modules():
            if isinstance(m, MacroBlock):
                nn.init.zeros_(m.branch[-1].weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        features = self.stages(self.stem(x))
        return self.classifier(self.global_pooling(features).flatten(1)), None


def options(own) -> dict[str, tuple]:
    """The choices searched under the space's settings ``own`` (`scinas.spaces.macro`'s
    ``MacroSettings``): each one given, or its default."""
    given = own.model_dump()
    return {k: v if given[k] is None else tuple(given[k]) for k, v in DEFAULTS.items()}
