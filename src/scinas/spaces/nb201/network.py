"""The discrete NAS-Bench-201 network: the cell stacked in 3 stages, residual blocks between
them; for images and, with 1-D layers (`scinas.spaces.nd`), for series."""

from __future__ import annotations

import torch
from torch import nn

from ...errors import UserError, unknown
from .. import nd
from .arch import (
    NB201_EDGES,
    NB201_OPS,
    NUM_NODES,
    NB201Arch,
)


def make_op(
    name: str, C: int, affine: bool, track_running_stats: bool, d: int = 2
) -> nn.Module | None:
    """Build op ``name`` for C channels of ``d``-dimensional maps at stride 1; ``none`` is None
    because it is never run."""
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return (nn.AvgPool1d, nn.AvgPool2d)[d - 1](3, stride=1, padding=1, count_include_pad=False)
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        k = int(name[-1])
        return nn.Sequential(
            nn.ReLU(inplace=False),
            nd.conv(d, C, C, k, stride=1, padding=k // 2, bias=False),
            nd.batch_norm(d, C, affine=affine, track_running_stats=track_running_stats),
        )
    raise unknown("NAS-Bench-201 op", name, NB201_OPS)


class ResidualReduction(nn.Module):
    """The ResNet basic block between stages: C_in -> C_out, halving H and W (ceil) at stride 2.

    At stride 1 (an input too small to halve) it only changes the channels, so the stage layout
    and the parameter count of later stages do not depend on the image size.
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 2, d: int = 2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResidualReduction stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.branch = nn.Sequential(
            nn.ReLU(inplace=False),
            nd.conv(d, C_in, C_out, 3, stride=stride, padding=1, bias=False),
            nd.batch_norm(d, C_out),
            nn.ReLU(inplace=False),
            nd.conv(d, C_out, C_out, 3, stride=1, padding=1, bias=False),
            nd.batch_norm(d, C_out),
        )
        shortcut: list[nn.Module] = []
        if stride == 2:
            # ceil_mode: an odd side n gives ceil(n/2), as the stride-2 3×3 conv of the branch does
            shortcut.append((nn.AvgPool1d, nn.AvgPool2d)[d - 1](2, stride=2, ceil_mode=True))
        if stride == 2 or C_in != C_out:
            shortcut.append(nd.conv(d, C_in, C_out, 1, bias=False))
        self.shortcut = nn.Sequential(*shortcut) if shortcut else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)


class NB201Cell(nn.Module):
    """The discrete cell of one architecture; `none` edges hold no module and cost nothing."""

    def __init__(self, C: int, arch: NB201Arch, d: int = 2):
        super().__init__()
        self.arch = arch
        self.ops = nn.ModuleList()
        # per node, its (position in self.ops, from_node) pairs for edges that are not `none`
        wiring: list[list[tuple[int, int]]] = [[] for _ in range(NUM_NODES)]
        for (dst, src), name in zip(NB201_EDGES, arch.ops, strict=True):
            op = make_op(name, C, affine=True, track_running_stats=True, d=d)
            if op is not None:
                wiring[dst].append((len(self.ops), src))
                self.ops.append(op)
        self.wiring = tuple(tuple(w) for w in wiring)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, NUM_NODES):
            acc = None
            for k, src in self.wiring[node]:
                y = self.ops[k](nodes[src])
                acc = y if acc is None else acc + y
            # a node whose edges are all `none` is zero, so disconnected cells still run
            nodes.append(torch.zeros_like(x) if acc is None else acc)
        return nodes[-1]


def _check_sizes(in_channels: int, num_outputs: int, input_hw, C: int, cells_per_stage: int):
    """The input's sizes after the channels: (H, W) for images, (L,) for series."""
    hw = tuple(input_hw)
    if len(hw) not in nd.DIMS or any(int(s) != s or s < 1 for s in hw):
        raise UserError(
            f"input_hw must be positive image sizes (H, W) or a series length (L,), got {input_hw}."
        )
    for what, value in (
        ("in_channels", in_channels),
        ("num_outputs", num_outputs),
        ("C", C),
        ("cells_per_stage", cells_per_stage),
    ):
        if int(value) != value or value < 1:
            raise UserError(f"{what} must be a positive integer, got {value}.")
    return tuple(int(s) for s in hw)


def _build_backbone(
    in_channels: int,
    input_hw: tuple[int, ...],
    C: int,
    cells_per_stage: int,
    make_cell,
) -> tuple[nn.Module, nn.ModuleList, int]:
    """The stem and the 3 stages of cells with a residual block between them; ``make_cell(C,
    d)`` builds a cell of C channels for ``d``-dimensional maps.

    A block halves the resolution only while the map is at least 2×2 before it (8×8 -> 4 -> 2,
    2×2 -> 1 -> 1, 1×1 never; series alike); otherwise it runs at stride 1 and only widens the
    channels.
    """
    sizes, d = tuple(input_hw), len(tuple(input_hw))
    stem = nn.Sequential(
        nd.conv(d, in_channels, C, 3, padding=1, bias=False),
        nd.batch_norm(d, C),
    )
    layers = nn.ModuleList()
    C_curr = C
    for stage in range(3):
        if stage > 0:
            stride = 2 if min(sizes) >= 2 else 1
            if stride == 2:
                sizes = tuple((n + 1) // 2 for n in sizes)
            layers.append(ResidualReduction(C_curr, 2 * C_curr, stride, d))
            C_curr *= 2
        layers.extend(make_cell(C_curr, d) for _ in range(cells_per_stage))
    return stem, layers, C_curr


class NB201Network(nn.Module):
    """The discrete NAS-Bench-201 network of one architecture, for any C×H×W or C×L input.

    ``forward`` returns ``(output, None)`` like the project's DARTS network (no auxiliary head).
    """

    def __init__(
        self,
        arch: NB201Arch,
        in_channels: int,
        num_outputs: int,
        input_hw: tuple[int, ...],
        C: int = 16,
        cells_per_stage: int = 5,
    ):
        super().__init__()
        if not isinstance(arch, NB201Arch):
            raise UserError(f"NB201Network needs an NB201Arch, got {type(arch).__name__}.")
        hw = _check_sizes(in_channels, num_outputs, input_hw, C, cells_per_stage)
        self.arch = arch
        self.drop_path_prob = 0.0  # set by the trainer; NAS-Bench-201 trains without drop path
        self.stem, self.cells, C_out = _build_backbone(
            in_channels, hw, C, cells_per_stage, lambda c, d: NB201Cell(c, arch, d)
        )
        d = len(hw)
        self.lastact = nn.Sequential(nd.batch_norm(d, C_out), nn.ReLU(inplace=True))
        self.global_pooling = nd.global_pool(d)
        self.classifier = nn.Linear(C_out, num_outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        s = self.stem(x)
        for layer in self.cells:
            s = layer(s)
        s = self.lastact(s)
        return self.classifier(self.global_pooling(s).flatten(1)), None
