"""Candidate operations of the DARTS cell space, one registered factory each.

Every factory has the signature ``(C, stride, affine, relu_in) -> nn.Module`` and maps a C-channel
feature map of size (H, W) to a C-channel one of size (ceil(H/stride), ceil(W/stride)), for odd and
even sizes alike, so cells work on non-square and odd-sized inputs. An op registered with
``dims=(1, 2)`` also takes ``d=1`` and then maps series (C, L) to (C, ceil(L/stride)) with the same
kernels along the one axis: one definition for series and images (``d=2``, the default, builds
exactly the layers it always did).

``relu_in``: DARTS' convolutional ops all begin with a ReLU of their input. In the supernet, every
node state feeds many such ops (up to 4 conv ops on each of up to 5 outgoing edges), so the supernet
applies that ReLU once per state and builds the ops with ``relu_in=False``; the discrete network
builds them with ``relu_in=True``. ``OpSpec.takes_relu`` says which input an op wants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError
from .lean_ops import (  # noqa: F401  (the lean layers stay importable from here)
    Conv1x1,
    DepthwisePointwise,
    LeanBatchNorm2d,
    depthwise_backward,
    pointwise,
    subsample,
    wants_autograd,
)
from .registry import Registry

OpFactory = Callable[[int, int, bool, bool], nn.Module]


@dataclass(frozen=True)
class OpSpec:
    """A registered operation: its factory and whether it consumes the ReLU'd input."""

    name: str
    factory: OpFactory
    takes_relu: bool  # conv ops start with ReLU; pooling, identity and none do not
    parameter_free: bool
    dims: tuple[int, ...] = (2,)  # the input dimensions it builds for (1: series)


OPS: Registry[OpSpec] = Registry("operation")

# The 8 primitives of the DARTS paper, in the paper's order (alpha columns follow this order).
DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def register_op(
    name: str, *, takes_relu: bool, parameter_free: bool = False, dims: tuple[int, ...] = (2,)
):
    """Register an op factory; with ``dims=(1, 2)`` it takes a keyword ``d`` (1: series)."""

    def wrap(factory: OpFactory) -> OpFactory:
        OPS.register(name, OpSpec(name, factory, takes_relu, parameter_free, tuple(dims)))
        return factory

    return wrap


def create_op(
    name: str, C: int, stride: int, affine: bool = True, relu_in: bool = True, d: int = 2
):
    """Build operation ``name`` for C channels of ``d``-dimensional maps (the single front door
    to the registry)."""
    spec = OPS.get(name)
    if d == 2:
        return spec.factory(C, stride, affine, relu_in)
    if d not in spec.dims:
        with_d = [n for n in OPS.names() if d in OPS.get(n).dims]
        raise UserError(
            f"the op {name} builds for images only, and the data are series. Leave it out of "
            f"search.ops (ops for series: {', '.join(with_d)})."
        )
    return spec.factory(C, stride, affine, relu_in, d=d)


CONV_OF = {1: nn.Conv1d, 2: nn.Conv2d}


def _relu(relu_in: bool) -> list[nn.Module]:
    return [nn.ReLU(inplace=False)] if relu_in else []


def search_batch_norm(C: int, affine: bool, d: int = 2) -> nn.Module:
    """The ops' BatchNorm: `LeanBatchNorm2d` for images, plain BatchNorm for series."""
    return LeanBatchNorm2d(C, affine=affine) if d == 2 else nn.BatchNorm1d(C, affine=affine)


def _conv(C_in, C_out, kernel, stride, padding, dilation=1, groups=1, d=2):
    if kernel == 1 and padding == 0 and groups == 1 and d == 2:
        return Conv1x1(C_in, C_out, stride)
    return CONV_OF[d](
        C_in,
        C_out,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=False,
    )


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k×k) -> BN, the DARTS preprocessing and plain-conv block."""

    def __init__(self, C_in, C_out, kernel, stride, padding, affine=True, relu_in=True, d=2):
        super().__init__(
            *_relu(relu_in),
            _conv(C_in, C_out, kernel, stride, padding, d=d),
            search_batch_norm(C_out, affine, d),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise dilated conv -> 1×1 conv -> BN.

    When gradients are recorded on images, the ReLU, depthwise and 1×1 convolutions run as one
    autograd function that keeps only its input (`scinas.lean_ops.DepthwisePointwise`); the
    modules and state_dict keys are those of the plain sequence, which runs otherwise (series,
    inference, export, inputs under `LEAN_FROM` elements).
    """

    def __init__(
        self, C_in, C_out, kernel, stride, padding, dilation, affine=True, relu_in=True, d=2
    ):
        super().__init__(
            *_relu(relu_in),
            _conv(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, d=d),
            _conv(C_in, C_out, 1, 1, 0, d=d),
            search_batch_norm(C_out, affine, d),
        )
        self.relu_in = relu_in

    def forward(self, x):
        dw, pw, bn = self[-3], self[-2], self[-1]
        if x.dim() != 4 or not wants_autograd(x, dw.weight, pw.weight):
            return super().forward(x)
        y = DepthwisePointwise.apply(
            x, dw.weight, pw.weight, dw.stride, dw.padding, dw.dilation, self.relu_in
        )
        return bn(y)


class SepConv(nn.Sequential):
    """Two stacked (ReLU -> depthwise conv -> 1×1 conv -> BN) blocks, the first one strided."""

    def __init__(self, C_in, C_out, kernel, stride, padding, affine=True, relu_in=True, d=2):
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine, relu_in, d=d),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine, True, d=d),
        )


class FactorizedReduce(nn.Module):
    """Halve H and W (series: L) with two offset strided 1×1 convs (the DARTS skip connection in
    reductions).

    The offset branch pads one row and column at the far end so odd sizes give ceil(H/2) in both
    branches; for even sizes this is exactly the DARTS operation.
    """

    def __init__(self, C_in, C_out, affine=True, relu_in=True, d=2):
        super().__init__()
        assert C_out % 2 == 0, "FactorizedReduce needs an even channel count"
        self.relu = nn.ReLU(inplace=False) if relu_in else nn.Identity()
        self.conv_1 = _conv(C_in, C_out // 2, 1, 2, 0, d=d)
        self.conv_2 = _conv(C_in, C_out - C_out // 2, 1, 2, 0, d=d)
        self.bn = search_batch_norm(C_out, affine, d)

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))
        if (
            isinstance(self.conv_1, Conv1x1)
            and x.is_contiguous(memory_format=torch.channels_last)
            and min(x.shape[2:]) > 1  # an odd map of at least one row and column
        ):
            # subsampled first, so the ReLU sees a half of the map and no slice's gradient
            # comes back in the other layout (`lean_ops.Subsample`)
            even, odd = subsample(x, 2, (0, 1))
            a = pointwise(self.relu(even), self.conv_1.weight.flatten(1))
            b = pointwise(self.relu(odd), self.conv_2.weight.flatten(1))
            if b.shape[2:] != a.shape[2:]:
                b = F.pad(b, [0, a.size(3) - b.size(3), 0, a.size(2) - b.size(2)])
            return self.bn(torch.cat([a, b], dim=1))
        x = self.relu(x)
        a = self.conv_1(x)
        # The offset branch reads rows/columns 1, 3, 5, ...; for odd sizes the last one is the
        # zero padding, added after the (bias-free, so zero-preserving) 1×1 convolution on the
        # small output instead of as a padded copy of the whole input.
        b = self.conv_2(x[(slice(None), slice(None)) + (slice(1, None),) * (x.dim() - 2)])
        if b.shape[2:] != a.shape[2:]:
            b = F.pad(b, [n for i in range(x.dim() - 1, 1, -1) for n in (0, a.size(i) - b.size(i))])
        return self.bn(torch.cat([a, b], dim=1))


class Zero(nn.Module):
    """The `none` op. The supernet never calls it (its output is zero, so it only matters through
    the softmax); the discrete network never contains it."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        every = (slice(None, None, self.stride),) * (x.dim() - 2)
        return x[(slice(None), slice(None), *every)].mul(0.0)


class Pool2x2(nn.Module):
    """2×2 max/average pooling (series: 2): same size at stride 1, ceil(H/2) at stride 2."""

    def __init__(self, kind: str, stride: int):
        super().__init__()
        self.kind, self.stride = kind, stride

    def forward(self, x):
        d = x.dim() - 2
        if self.stride == 1:
            x = F.pad(x, (0, 1) * d, mode="replicate")
        pool = {1: (F.max_pool1d, F.avg_pool1d), 2: (F.max_pool2d, F.avg_pool2d)}[d]
        return pool[self.kind != "max"](x, 2, stride=self.stride, ceil_mode=True)


BOTH = (1, 2)  # the built-in ops build for series and images


@register_op("none", takes_relu=False, parameter_free=True, dims=BOTH)
def _none(C, stride, affine, relu_in, d=2):
    return Zero(stride)


@register_op("avg_pool_3x3", takes_relu=False, parameter_free=True, dims=BOTH)
def _avg3(C, stride, affine, relu_in, d=2):
    pool = (nn.AvgPool1d, nn.AvgPool2d)[d - 1]
    return pool(3, stride=stride, padding=1, count_include_pad=False)


@register_op("max_pool_3x3", takes_relu=False, parameter_free=True, dims=BOTH)
def _max3(C, stride, affine, relu_in, d=2):
    return (nn.MaxPool1d, nn.MaxPool2d)[d - 1](3, stride=stride, padding=1)


@register_op("max_pool_2x2", takes_relu=False, parameter_free=True, dims=BOTH)
def _max2(C, stride, affine, relu_in, d=2):
    return Pool2x2("max", stride)


@register_op("avg_pool_2x2", takes_relu=False, parameter_free=True, dims=BOTH)
def _avg2(C, stride, affine, relu_in, d=2):
    return Pool2x2("avg", stride)


# skip_connect is an identity at stride 1 (no ReLU) but a FactorizedReduce (with ReLU) at stride 2;
# the supernet asks `op_takes_relu(name, stride)` rather than the spec alone for this reason.
@register_op("skip_connect", takes_relu=False, parameter_free=True, dims=BOTH)
def _skip(C, stride, affine, relu_in, d=2):
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine, relu_in, d=d)


def _conv_op(block: type[nn.Module], kernel: int, padding: int, dilation: int | None = None):
    """The factory of a convolutional op: ``block`` (SepConv, DilConv or ReLUConvBN) from C to
    C channels with the kernel, padding and (DilConv) dilation given."""
    extra = () if dilation is None else (dilation,)

    def factory(C, stride, affine, relu_in, d=2):
        return block(C, C, kernel, stride, padding, *extra, affine, relu_in, d=d)

    return factory


# name: (block, kernel, padding[, dilation]); padding keeps the size at stride 1
CONV_OPS = {
    "sep_conv_3x3": (SepConv, 3, 1),
    "sep_conv_5x5": (SepConv, 5, 2),
    "sep_conv_7x7": (SepConv, 7, 3),
    "dil_conv_3x3": (DilConv, 3, 2, 2),
    "dil_conv_5x5": (DilConv, 5, 4, 2),
    "conv_1x1": (ReLUConvBN, 1, 0),
    "conv_3x3": (ReLUConvBN, 3, 1),
}
for _name, _args in CONV_OPS.items():
    register_op(_name, takes_relu=True, dims=BOTH)(_conv_op(*_args))


def op_takes_relu(name: str, stride: int) -> bool:
    """Whether op ``name`` at ``stride`` starts with a ReLU of its input."""
    if name == "skip_connect":
        return stride != 1
    return OPS.get(name).takes_relu


def is_parameter_free(name: str) -> bool:
    return OPS.get(name).parameter_free
