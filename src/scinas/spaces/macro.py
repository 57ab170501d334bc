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

from pydantic import Field, model_validator

from ..errors import unknown
from . import nd
from .base import DecisionSpace, Drawing, SearchSpace, SpaceSettings, register_space
from .macro_morph import morphs
from .macro_network import (
    BLOCKS,
    KERNELS,
    MAX_DEPTH,
    MAX_DILATION,
    MAX_EXPANSION,
    MAX_STAGES,
    MAX_WIDTH,
    MacroArch,
    MacroNetwork,
    MacroStage,
    baseline_points,
    check_input,
    options,
)

# the architecture types stay importable from the space's module
__all__ = [
    "BLOCKS",
    "KERNELS",
    "MacroArch",
    "MacroNetwork",
    "MacroSpace",
    "MacroStage",
    "baseline_points",
]


class MacroSettings(SpaceSettings):
    """The choices searched per stage (None: the space's defaults,
    `scinas.spaces.macro_network.DEFAULTS`)."""

    blocks: list[str] | None = Field(None, description="block types (basic, bottleneck, inverted)")
    kernels: list[int] | None = Field(None, description="kernel sizes (3, 5, 7)")
    dilations: list[int] | None = Field(None, description="dilations (1, 2)")
    expansions: list[int] | None = Field(None, description="expansion ratios (1, 2, 4, 6)")
    widths: list[int] | None = Field(None, description="stem and stage widths (16, 32, 64, 128)")
    depths: list[int] | None = Field(
        None, description="blocks per stage, 0 drops a later stage (0..3)"
    )
    se: list[bool] | None = Field(None, description="squeeze-excitation (off, on)")
    stages: int = Field(MAX_STAGES, ge=1, le=MAX_STAGES, description="most stages")

    @model_validator(mode="after")
    def _buildable(self):
        check_options(self)
        return self


def check_options(s: MacroSettings) -> None:
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
    own = s.space_own
    opts, n = options(own), own.stages
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
    dims = nd.DIMS
    Settings = MacroSettings

    def from_dict(self, data, source: str = "architecture") -> MacroArch:
        return MacroArch.from_dict(data, source=source)

    def parse(self, text: str, source: str = "architecture") -> MacroArch | None:
        return baseline_points().get(text) if text.startswith("macro:") else None

    def named(self) -> list[str]:
        return list(baseline_points())

    def decisions(self, s) -> DecisionSpace:
        return macro_decisions(s)

    def check_network(self, arch, t, input_shape) -> None:
        check_input(tuple(input_shape[1:]))

    def check_search_sizes(self, s, input_shape) -> None:
        check_input(tuple(input_shape[1:]))

    def build_network(self, arch: MacroArch, t, input_shape, num_outputs: int) -> MacroNetwork:
        C_in, *sizes = input_shape
        return MacroNetwork(arch, C_in, num_outputs, tuple(sizes))

    def network_summary(self, arch, t) -> str:
        return str(arch)

    def morphs(self, arch: MacroArch, s, input_hw) -> list:
        """Function-preserving steps from ``arch`` within ``s``'s options (`macro_morph`)."""
        return morphs(arch, s.space_own, input_hw)

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
