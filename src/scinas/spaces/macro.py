"""The macro search space: the stage-wise networks people design by hand (ResNet, MobileNet-style).

A network is a stem and up to 4 stages. Each stage chooses its depth (blocks; every stage after the
first may have 0, which drops it), its width, whether it downsamples, and one block for all its
blocks: a basic residual block (two k×k convolutions), a bottleneck (1×1 down to width/expansion,
k×k, 1×1 up) or an inverted residual (1×1 up to expansion×input, depthwise k×k, 1×1 down), with a
kernel size of 3, 5 or 7, a dilation, and squeeze-excitation on or off. Every block is residual:
an identity shortcut where the shape is kept, a 1×1 convolution and BatchNorm where it changes
(where MobileNetV2 has none), and its last BatchNorm starts at zero so each block starts as the
identity, as the ResNet baselines do.

The stem and the strides follow the ResNet baselines' size rules (`scinas.spaces.baselines`): a
3×3 stride-1 stem on inputs up to 64 pixels a side, the 7×7 stride-2 stem and max-pool above; a
stage that downsamples halves the map (stride 2, ceil) only while it stays at least 2×2, the
reductions that do not fit being dropped from the last stages. So ``resnet_tiny``, ``resnet10``
and ``resnet18`` are points of this space (`named` gives them as ``macro:resnet18``...), with the
baselines' parameter counts exactly, for any input shape.

Its options (``search.blocks``, ``kernels``, ``dilations``, ``expansions``, ``widths``, ``depths``,
``se``, ``stages``) choose what the black-box strategies search over; the convolutions are dense
except the inverted residual's depthwise one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserError, unknown
from ..ops import Conv1x1
from .base import DecisionSpace, Drawing, SearchSpace, register_space
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
DEFAULT_STAGES = 4


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


def baseline_points() -> dict[str, MacroArch]:
    """``macro:NAME`` for every registered baseline that is a ResNet of basic blocks."""
    points = {}
    for name in BASELINES.names():
        with torch.device("meta"):  # only the structure is read: no memory, no init cost
            net = BASELINES.get(name)(3, 10, (32, 32))
        if isinstance(net, ResNet):
            points[f"macro:{name}"] = from_resnet(net)
    return points


# ----------------------------------------------------------------------------- network


def _conv_bn(C_in, C_out, k, stride=1, dilation=1, groups=1) -> list[nn.Module]:
    pad = dilation * (k - 1) // 2
    conv = nn.Conv2d(C_in, C_out, k, stride, pad, dilation=dilation, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(C_out)]


class SqueezeExcite(nn.Module):
    """Hu et al.'s squeeze-and-excitation: channel gates from the pooled map (reduction 4)."""

    def __init__(self, C: int):
        super().__init__()
        hidden = max(1, C // 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(C, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, C, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MacroBlock(nn.Module):
    """One residual block of a stage: ``branch`` (ending in a BatchNorm), optional
    squeeze-excitation, plus the shortcut, then ReLU (none after an inverted residual)."""

    def __init__(self, st: MacroStage, C_in: int, C_out: int, stride: int):
        super().__init__()
        k, d, e = st.kernel, st.dilation, st.expansion
        act = nn.ReLU if st.block != "inverted" else nn.ReLU6
        if st.block == "basic":
            layers = [
                *_conv_bn(C_in, C_out, k, stride, d),
                act(inplace=True),
                *_conv_bn(C_out, C_out, k, 1, d),
            ]
        elif st.block == "bottleneck":
            mid = max(1, C_out // e)
            layers = [
                *_conv_bn(C_in, mid, 1),
                act(inplace=True),
                *_conv_bn(mid, mid, k, stride, d),
                act(inplace=True),
                *_conv_bn(mid, C_out, 1),
            ]
        else:  # inverted residual
            mid = C_in * e
            layers = [*_conv_bn(C_in, mid, 1), act(inplace=True)] if e > 1 else []
            layers += [
                *_conv_bn(mid, mid, k, stride, d, groups=mid),
                act(inplace=True),
                *_conv_bn(mid, C_out, 1),
            ]
        self.branch = nn.Sequential(*layers)  # ends in the BatchNorm that starts at zero
        self.se = SqueezeExcite(C_out) if st.se else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or C_in != C_out:
            self.shortcut = nn.Sequential(Conv1x1(C_in, C_out, stride), nn.BatchNorm2d(C_out))
        self.out_act = nn.ReLU(inplace=True) if st.block != "inverted" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.se(self.branch(x)) + self.shortcut(x))


def check_input(input_hw) -> tuple[int, int]:
    h, w = (int(s) for s in input_hw)
    if min(h, w) < 4 and (h, w) != (1, 1):  # 1×1: feature vectors as channels
        raise UserError(f"images of {h}×{w} are too small: scinas needs at least 4×4 pixels.")
    return h, w


def stage_strides(arch: MacroArch, input_hw) -> list[int]:
    """Each stage's stride for inputs of ``input_hw``: 2 where it downsamples, while the map
    stays at least 2×2 (after the large-input stem's two halvings)."""
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
    """The network of a `MacroArch` for (C, H, W) inputs and ``num_outputs`` outputs (logits or
    regression targets, the task's head decides). ``forward`` returns ``(output, None)``."""

    def __init__(self, arch: MacroArch, in_channels: int, num_outputs: int, input_hw):
        super().__init__()
        if in_channels < 1 or num_outputs < 1:
            raise UserError(
                f"a macro network needs at least 1 input channel and 1 output, got "
                f"in_channels={in_channels}, num_outputs={num_outputs}."
            )
        h, w = check_input(input_hw)
        self.arch, self.input_hw = arch, (h, w)
        self.drop_path_prob = 0.0  # the trainer sets it; no paths to drop
        if min(h, w) <= SMALL_INPUT_MAX_SIDE:
            stem: list[nn.Module] = _conv_bn(in_channels, arch.stem, 3)
            stem.append(nn.ReLU(inplace=True))
        else:
            stem = [*_conv_bn(in_channels, arch.stem, 7, 2), nn.ReLU(inplace=True)]
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        self.strides: list[int] = stage_strides(arch, (h, w))
        stages, C = [], arch.stem
        for st, stride in zip(arch.stages, self.strides, strict=True):
            blocks = [MacroBlock(st, C, st.width, stride)]
            blocks += [MacroBlock(st, st.width, st.width, 1) for _ in range(st.depth - 1)]
            stages.append(nn.Sequential(*blocks))
            C = st.width
        self.stages = nn.Sequential(*stages)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_outputs)
        init_conv_bn(self)
        for m in self.modules():
            if isinstance(m, MacroBlock):
                nn.init.zeros_(m.branch[-1].weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        features = self.stages(self.stem(x))
        return self.classifier(self.global_pooling(features).flatten(1)), None


# ----------------------------------------------------------------------------- the space


def options(s) -> dict[str, tuple]:
    """The choices searched under search section ``s``: each setting or its default."""
    return {
        k: tuple(getattr(s, k)) if getattr(s, k) is not None else v for k, v in DEFAULTS.items()
    }


def check_options(s) -> None:
    """Refuse options the space cannot build (ValueError: the config's one message)."""
    opts = options(s)
    for key, values in opts.items():
        if not values:
            raise ValueError(f"search.{key} is empty: give at least one choice")
        if len(set(values)) != len(values):
            raise ValueError(f"search.{key} {list(values)} names a choice twice")
    for b in opts["blocks"]:
        if b not in BLOCKS:
            raise ValueError(str(unknown("macro block type", str(b), BLOCKS)))
    for k in opts["kernels"]:
        if k not in KERNELS:
            raise ValueError(
                f"unknown macro kernel size {k} in search.kernels. Valid kernel sizes: "
                f"{', '.join(map(str, KERNELS))}."
            )
    for key, low, high in (
        ("dilations", 1, MAX_DILATION),
        ("expansions", 1, MAX_EXPANSION),
        ("widths", 1, MAX_WIDTH),
        ("depths", 0, MAX_DEPTH),
    ):
        bad = [v for v in opts[key] if not low <= v <= high]
        if bad:
            raise ValueError(f"search.{key} {bad} out of range: each must be in {low}..{high}")
    if max(opts["depths"]) < 1:
        raise ValueError("search.depths needs a depth of at least 1 (the first stage's)")


def macro_decisions(s) -> DecisionSpace:
    """Per stage: depth, width, downsampling, block, expansion, kernel, dilation and SE; the first
    stage takes at least one block, a later stage of depth 0 is left out."""
    opts, n = options(s), s.stages
    decisions: list[tuple[str, tuple]] = [("stem", opts["widths"])]
    for i in range(n):
        depths = opts["depths"] if i else tuple(d for d in opts["depths"] if d > 0)
        decisions += [
            (f"s{i}_depth", depths),
            (f"s{i}_width", opts["widths"]),
            (f"s{i}_down", (False, True)),
            (f"s{i}_block", opts["blocks"]),
            (f"s{i}_expansion", opts["expansions"]),
            (f"s{i}_kernel", opts["kernels"]),
            (f"s{i}_dilation", opts["dilations"]),
            (f"s{i}_se", opts["se"]),
        ]

    def decode(p: dict) -> MacroArch:
        stages = tuple(
            MacroStage(
                depth=p[f"s{i}_depth"],
                width=p[f"s{i}_width"],
                downsample=p[f"s{i}_down"],
                block=p[f"s{i}_block"],
                expansion=p[f"s{i}_expansion"],
                kernel=p[f"s{i}_kernel"],
                dilation=p[f"s{i}_dilation"],
                se=p[f"s{i}_se"],
            )
            for i in range(n)
            if p[f"s{i}_depth"] > 0
        )
        return MacroArch(p["stem"], stages)

    choices = dict(decisions)

    def encode(arch: MacroArch) -> dict | None:
        if len(arch.stages) > n:
            return None
        p = {"stem": arch.stem}
        for i in range(n):
            st = arch.stages[i] if i < len(arch.stages) else None
            for field in ("depth", "width", "down", "block", "expansion", "kernel", "dilation"):
                p[f"s{i}_{field}"] = choices[f"s{i}_{field}"][0]  # read only where it matters
            p[f"s{i}_se"] = choices[f"s{i}_se"][0]
            if st is None:
                p[f"s{i}_depth"] = 0
                continue
            p.update(
                {
                    f"s{i}_depth": st.depth,
                    f"s{i}_width": st.width,
                    f"s{i}_down": st.downsample,
                    f"s{i}_block": st.block,
                    f"s{i}_kernel": st.kernel,
                    f"s{i}_dilation": st.dilation,
                    f"s{i}_se": st.se,
                }
            )
            if st.block != "basic":  # basic blocks read no expansion
                p[f"s{i}_expansion"] = st.expansion
        if any(value not in choices[name] for name, value in p.items()):
            return None
        return p if decode(p) == arch else None

    return DecisionSpace("macro", tuple(decisions), decode, encode)


@register_space
class MacroSpace(SearchSpace):
    name = "macro"
    description = (
        "stage-wise networks: stem + up to 4 stages of basic / bottleneck / inverted residual "
        "blocks (depth, width, stride, kernel, dilation, SE); holds the ResNet baselines"
    )
    settings = ("blocks", "kernels", "dilations", "expansions", "widths", "depths", "se", "stages")

    def from_dict(self, data, source: str = "architecture") -> MacroArch:
        return MacroArch.from_dict(data, source=source)

    def parse(self, text: str, source: str = "architecture") -> MacroArch | None:
        return baseline_points().get(text) if text.startswith("macro:") else None

    def named(self) -> list[str]:
        return list(baseline_points())

    def check_search(self, s) -> None:
        super().check_search(s)
        check_options(s)

    def decisions(self, s) -> DecisionSpace:
        return macro_decisions(s)

    def check_network(self, arch, t, input_shape) -> None:
        check_input(tuple(input_shape[1:]))

    def check_search_sizes(self, s, input_shape) -> None:
        check_input(tuple(input_shape[1:]))

    def build_network(self, arch: MacroArch, t, input_shape, num_outputs: int) -> MacroNetwork:
        C_in, H, W = input_shape
        return MacroNetwork(arch, C_in, num_outputs, (H, W))

    def network_summary(self, arch, t) -> str:
        return str(arch)

    def morphs(self, arch: MacroArch, s, input_hw) -> list:
        """Function-preserving steps from ``arch`` within ``s``'s options (`macro_morph`)."""
        from .macro_morph import morphs

        return morphs(arch, s, input_hw)

    def planning_stand_in(self) -> MacroArch:
        return baseline_points()["macro:resnet_tiny"]

    def drawing(self, data: dict) -> Drawing:
        arch = MacroArch.from_dict(data)
        nodes = ["input", f"stem {arch.stem}"]
        for i, s in enumerate(arch.stages):
            kind = s.block if s.block == "basic" else f"{s.block}×{s.expansion}"
            se = " SE" if s.se else ""
            down = " /2" if s.downsample else ""
            nodes.append(
                f"stage {i + 1}: {s.depth}× {kind} {s.kernel}×{s.kernel} d{s.dilation}{se} "
                f"w{s.width}{down}"
            )
        nodes.append("pool + head")
        edges = tuple((a, b, "") for a, b in zip(nodes, nodes[1:], strict=False))
        return Drawing((("network", "macro network", edges),), notes=(str(arch),))

    def cell_ops(self, data: dict) -> dict[str, list[str]]:
        arch = MacroArch.from_dict(data)
        return {"network": [s.block for s in arch.stages for _ in range(s.depth)]}
