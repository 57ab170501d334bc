from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scinas.errors import UserError
from scinas.ops import OPS, Conv1x1, create_op, op_takes_relu


@pytest.mark.parametrize("name", OPS.names())
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (5, 12)])
def test_every_op_keeps_channels_and_gives_ceil_size(name, stride, hw):
    op = create_op(name, 6, stride)
    x = torch.randn(2, 6, *hw)
    y = op(x)
    assert y.shape == (2, 6, -(-hw[0] // stride), -(-hw[1] // stride))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", [n for n in OPS.names() if n != "none"])
def test_relu_in_false_equals_op_on_relu_input(name):
    torch.manual_seed(0)
    with_relu = create_op(name, 4, 1, relu_in=True)
    torch.manual_seed(0)
    without = create_op(name, 4, 1, relu_in=False)
    x = torch.randn(3, 4, 6, 6)
    fed = F.relu(x) if op_takes_relu(name, 1) else x
    torch.testing.assert_close(without(fed), with_relu(x))


def test_none_is_zero_and_skip_is_identity():
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(create_op("none", 3, 1)(x), torch.zeros_like(x))
    assert torch.equal(create_op("skip_connect", 3, 1)(x), x)


def test_conv1x1_matmul_path_equals_conv2d():
    conv = Conv1x1(5, 7)
    x = torch.randn(4, 5, 6, 3)
    ref = F.conv2d(x, conv.weight)
    out = conv(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_unknown_op_suggests_closest():
    with pytest.raises(UserError, match="Did you mean 'sep_conv_3x3'"):
        create_op("sep_conv3x3", 4, 1)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shifted", [False, True])
def test_strided_conv1x1_equals_strided_convolution(channels_last, shifted):
    """Conv1x1 with stride 2 (subsample, then matmul) gives nn.Conv2d's outputs and gradients.
    The shape is one where torch 2.13's oneDNN weight gradient of the strided 1×1 convolution
    corrupted the heap on an AVX-512 CPU (batch 31, 4 -> 2 channels, 12×20, channels-last)."""
    torch.manual_seed(0)
    ours = Conv1x1(4, 2, stride=2)
    ref = nn.Conv2d(4, 2, 1, stride=2, bias=False)
    ref.weight.data.copy_(ours.weight.data)
    x = torch.randn(31, 4, 12, 20)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if shifted:  # FactorizedReduce's second branch: a view, not contiguous in either format
        x = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
    xa, xb = x.detach().clone().requires_grad_(True), x.detach().clone().requires_grad_(True)
    for _ in range(3):
        ya, yb = ours(xa), ref(xb.contiguous())  # the reference on NCHW: no oneDNN strided path
        assert ya.shape == yb.shape == (31, 2, 6, 10)
        assert torch.allclose(ya, yb, atol=1e-5)
        g = torch.randn_like(yb)
        ya.backward(g)
        yb.backward(g)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)
    assert torch.allclose(ours.weight.grad, ref.weight.grad, atol=1e-4)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
