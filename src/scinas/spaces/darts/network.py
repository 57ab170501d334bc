"""The discrete network built from a genotype (DARTS' evaluation network), for any C×H×W input
and for series (C×L: the same cells with 1-D ops, `scinas.ops`).

Layout as in DARTS: a 3×3 conv stem, ``layers`` cells, reduction cells at 1/3 and 2/3 of the depth
(fewer where the image is too small to halve twice), an optional auxiliary head after the last
reduction, global average pooling and a linear task head (classes or regression targets).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import UserError
from ...ops import FactorizedReduce, ReLUConvBN, create_op
from .. import nd
from ..common import max_reductions, min_side_for
from .genotype import Genotype


def plan_reductions(layers: int, input_hw: tuple[int, ...], reductions: int | None = None):
    """Cell indices that reduce: DARTS places two at layers//3 and 2*layers//3. ``input_hw``:
    (H, W) for images, (L,) for series.

    ``reductions=None`` means as in DARTS (2) but never more than the input size allows; an explicit
    number that the input cannot take is a UserError that names the minimum image size.
    """
    sizes = nd.check_sizes(input_hw)  # images under 4×4 and series under 4 steps: refused
    allowed = max_reductions(min(sizes), min(sizes))
    if reductions is None:
        reductions = min(2, allowed)
    elif reductions > allowed:
        need = min_side_for(reductions)
        what, needs = (
            (f"images of {sizes[0]}×{sizes[1]}", f"{need}×{need}")
            if len(sizes) == 2
            else (f"series of length {sizes[0]}", f"{need} steps")
        )
        raise UserError(
            f"{what} are too small for {reductions} reduction cells: that needs at least "
            f"{needs}. Lower model reductions (--set search.reductions=N / "
            f"train.reductions=N, at most {allowed} here) or use larger inputs."
        )
    if layers < 1:
        raise UserError(f"a network needs at least 1 cell, got layers={layers}.")
    reductions = min(reductions, layers)
    return tuple(layers * (i + 1) // (reductions + 1) for i in range(reductions))


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability drop_prob, rescaling the rest."""
    keep = 1.0 - drop_prob
    shape = (x.size(0),) + (1,) * (x.dim() - 1)
    mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def make_stem(in_channels: int, C_out: int, d: int = 2) -> nn.Sequential:
    """3×3 conv + BN (series: 3) from any number of input channels."""
    return nn.Sequential(
        nd.conv(d, in_channels, C_out, 3, padding=1, bias=False), nd.batch_norm(d, C_out)
    )


def build_cells(layers, C, stem_channels, positions, multiplier, make_cell):
    """The DARTS channel schedule, shared by the supernet and the discrete network.

    Channels double at each reduction; each cell reads the outputs of the two cells before it.
    ``make_cell(C_pp, C_p, C_curr, reduction, reduction_prev)`` builds one cell. Returns the cells
    and the channel count after each of them.
    """
    C_pp, C_p, C_curr = stem_channels, stem_channels, C
    cells, channels = nn.ModuleList(), []
    reduction_prev = False
    for i in range(layers):
        reduction = i in positions
        if reduction:
            C_curr *= 2
        cells.append(make_cell(C_pp, C_p, C_curr, reduction, reduction_prev))
        reduction_prev = reduction
        C_pp, C_p = C_p, multiplier * C_curr
        channels.append(C_p)
    return cells, channels


class Cell(nn.Module):
    def __init__(
        self, genotype: Genotype, C_pp, C_p, C, reduction: bool, reduction_prev: bool, d: int = 2
    ):
        super().__init__()
        self.preprocess0 = (
            FactorizedReduce(C_pp, C, d=d) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, d=d)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, d=d)
        which = "reduce" if reduction else "normal"
        edges, concat = getattr(genotype, which), getattr(genotype, f"{which}_concat")
        self.ops = nn.ModuleList(
            create_op(name, C, 2 if reduction and idx < 2 else 1, d=d) for name, idx in edges
        )
        self.inputs = [idx for _, idx in edges]
        self.is_identity = [isinstance(op, nn.Identity) for op in self.ops]
        self.concat = list(concat)
        self.node_edges = genotype.node_edges(which)  # edge indices into each node
        self.steps = len(self.node_edges)
        self.multiplier = len(concat)

    def forward(self, s0, s1, drop_prob: float = 0.0):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for ks in self.node_edges:
            h = None
            for k in ks:
                y = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not self.is_identity[k]:
                    y = drop_path(y, drop_prob)
                h = y if h is None else h + y
            states.append(h)
        return torch.cat([states[i] for i in self.concat], dim=1)


class FixedReductionCell(nn.Module):
    """GDAS' hand-designed reduction cell (Dong & Yang 2019), so only the normal cell is searched.

    Two factorised 3×3 branches (1×3 then 3×1 grouped convolutions, stride 2, then a 1×1
    convolution; series: one grouped convolution of 3, stride 2) on the two cell inputs, a 3×3
    max-pool (stride 1) of their sum, and a strided 3×3 max-pool of the second input; the four
    results are concatenated (4·C channels, as a DARTS cell with 4 nodes). Output size
    ceil(H/2)×ceil(W/2) for any H, W.
    """

    reduction = True

    def __init__(self, C_pp, C_p, C, reduction_prev: bool, affine: bool = True, d: int = 2):
        super().__init__()
        self.preprocess0 = (
            FactorizedReduce(C_pp, C, affine=affine, d=d)
            if reduction_prev
            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=affine, d=d)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=affine, d=d)
        groups = math.gcd(C, 8)

        def factorised():
            if d == 1:
                return [nn.Conv1d(C, C, 3, stride=2, padding=1, groups=groups, bias=False)]
            return [
                nn.Conv2d(C, C, (1, 3), stride=(1, 2), padding=(0, 1), groups=groups, bias=False),
                nn.Conv2d(C, C, (3, 1), stride=(2, 1), padding=(1, 0), groups=groups, bias=False),
            ]

        def branch():
            return nn.Sequential(
                nn.ReLU(),
                *factorised(),
                nd.batch_norm(d, C, affine=affine),
                nn.ReLU(),
                nd.conv(d, C, C, 1, bias=False),
                nd.batch_norm(d, C, affine=affine),
            )

        self.branch0, self.branch1 = branch(), branch()
        self.pool_sum = nn.Sequential(nd.max_pool(d, 3, 1, 1), nd.batch_norm(d, C, affine=affine))
        self.pool_down = nn.Sequential(nd.max_pool(d, 3, 2, 1), nd.batch_norm(d, C, affine=affine))

    def forward(self, s0, s1, *_):  # ignores op weights / drop-path: nothing to search or drop
        s0, s1 = self.preprocess0(s0), self.preprocess1(s1)
        x0, x1 = self.branch0(s0), self.branch1(s1)
        return torch.cat([x0, x1, self.pool_sum(x0 + x1), self.pool_down(s1)], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier, with adaptive pooling so it works at any feature-map size."""

    def __init__(self, C, num_outputs, d: int = 2):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)[d - 1](2),
            nd.conv(d, C, 128, 1, bias=False),
            nd.batch_norm(d, 128),
            nn.ReLU(inplace=True),
            nd.conv(d, 128, 768, 2, bias=False),
            nd.batch_norm(d, 768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class Network(nn.Module):
    """Discrete network from a genotype.

    ``forward`` returns ``(output, aux_output)``; ``aux_output`` is None in eval mode or without an
    auxiliary head. ``drop_path_prob`` is set by the trainer each epoch.
    """

    def __init__(
        self,
        genotype: Genotype,
        in_channels: int,
        num_outputs: int,
        input_hw: tuple[int, ...],
        C: int = 36,
        layers: int = 20,
        auxiliary: bool = False,
        reductions: int | None = None,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        self.genotype = genotype
        self.drop_path_prob = 0.0
        positions = plan_reductions(layers, input_hw, reductions)
        d = len(tuple(input_hw))
        self.stem = make_stem(in_channels, stem_multiplier * C, d)
        self.cells, channels = build_cells(
            layers,
            C,
            stem_multiplier * C,
            positions,
            len(genotype.normal_concat),
            lambda C_pp, C_p, C_curr, red, red_prev: (
                FixedReductionCell(C_pp, C_p, C_curr, red_prev, d=d)
                if red and genotype.fixed_reduce
                else Cell(genotype, C_pp, C_p, C_curr, red, red_prev, d=d)
            ),
        )
        if not genotype.fixed_reduce and len(genotype.reduce_concat) != len(genotype.normal_concat):
            raise UserError("the genotype's normal_concat and reduce_concat differ in length.")
        self.aux_position = positions[-1] if (auxiliary and positions) else None
        C_aux = channels[self.aux_position] if self.aux_position is not None else None
        C_p = channels[-1]
        self.auxiliary_head = AuxiliaryHead(C_aux, num_outputs, d) if C_aux else None
        self.global_pooling = nd.global_pool(d)
        self.classifier = nn.Linear(C_p, num_outputs)

    def forward(self, x):  # x: (B, C_in, H, W) or (B, C_in, L)
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_position and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        out = self.classifier(self.global_pooling(s1).flatten(1))  # (B, num_outputs)
        return out, aux
