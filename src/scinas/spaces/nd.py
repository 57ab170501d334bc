"""Layers of dimension d, so that one network definition builds for series and images alike.

A network reads its dimension from the input it is built for: ``input_shape`` is ``(C, L)`` for
series (N×C×L batches, d = 1) and ``(C, H, W)`` for images (N×C×H×W, d = 2). Each factory here
returns the torch layer of that dimension with the same arguments, so a block is written once
(``conv(d, C_in, C_out, 3, padding=1)``) rather than once per dimension. For d = 2 the layers are
those the networks used before (same initialisation order, same state_dict keys), so images build
the same networks with the same numbers; the 2-D BatchNorm is `LeanBatchNorm2d`, a
``nn.BatchNorm2d`` whose training pass on narrow channels-last maps is faster on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..bounds import MIN_SIDE
from ..errors import UserError
from ..lean_ops import Conv1x1, GlobalAvgPool2d, LeanBatchNorm2d

DIMS = (1, 2)
"""The input dimensions the generic networks build for: series and images."""

CONVS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d)
NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, LeanBatchNorm2d)


def dim_of(sizes: Sequence[int]) -> int:
    """The dimension of an input from its sizes after the channels: ``(L,)`` 1, ``(H, W)`` 2."""
    d = len(tuple(sizes))
    if d not in DIMS:
        raise UserError(
            f"inputs of {d} dimensions after the channels ({tuple(sizes)}) are not supported: "
            "scinas reads series (C×L) and images (C×H×W)."
        )
    return d


def check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    """Refuse (UserError) inputs too small for the stems: images under 4×4 pixels (a 1×1 map is a
    feature vector and is allowed) and series shorter than 4 steps."""
    sizes = tuple(int(s) for s in sizes)
    if dim_of(sizes) == 1:
        if sizes[0] < MIN_SIDE:
            raise UserError(
                f"series of length {sizes[0]} are too short: scinas needs at least {MIN_SIDE} "
                "steps. Pad the series or give more steps per sample."
            )
        return sizes
    h, w = sizes
    if min(h, w) < MIN_SIDE and (h, w) != (1, 1):  # 1×1: feature vectors as channels
        raise UserError(
            f"images of {h}×{w} are too small: scinas needs at least {MIN_SIDE}×{MIN_SIDE} pixels."
        )
    return sizes


def conv(d: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d`` or ``nn.Conv2d`` with the given arguments (an int kernel is k or k×k)."""
    return CONVS[d - 1](*args, **kwargs)


def batch_norm(d: int, C: int, **kwargs) -> nn.Module:
    return NORMS[d - 1](C, **kwargs)


def conv1x1(d: int, C_in: int, C_out: int, stride: int = 1) -> nn.Module:
    """A bias-free pointwise convolution; for images the GEMM-backed `Conv1x1` of `scinas.ops`."""
    if d == 2:
        return Conv1x1(C_in, C_out, stride)
    return nn.Conv1d(C_in, C_out, 1, stride=stride, bias=False)


def max_pool(d: int, kernel: int, stride: int, padding: int) -> nn.Module:
    return (nn.MaxPool1d, nn.MaxPool2d)[d - 1](kernel, stride=stride, padding=padding)


def global_pool(d: int) -> nn.Module:
    """Average over every position: (B, C, *sizes) -> (B, C, 1[, 1])."""
    return nn.AdaptiveAvgPool1d(1) if d == 1 else GlobalAvgPool2d()


def same_conv(d: int, C_in: int, C_out: int, k: int) -> list[nn.Module]:
    """A bias-free stride-1 convolution whose output keeps the input's size for any kernel, odd
    or even: an even kernel is zero-padded by (k-1)//2 before and k//2 after each axis, as
    Keras' and torch's ``padding="same"`` do, but as its own layer (torch warns on every even
    ``"same"`` convolution and copies the input anyway)."""
    if k % 2:
        return [conv(d, C_in, C_out, k, padding=k // 2, bias=False)]
    before, after = (k - 1) // 2, k // 2
    pad = (nn.ConstantPad1d, nn.ConstantPad2d)[d - 1]((before, after) * d, 0.0)
    return [pad, conv(d, C_in, C_out, k, bias=False)]
