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


def test_conv1x1_equals_conv2d(pointwise_path):
    conv = Conv1x1(5, 7)
    x = torch.randn(4, 5, 6, 3)
    ref = F.conv2d(x, conv.weight)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = conv(xc)
    torch.testing.assert_close(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, [xc, conv.weight], g)
    want = torch.autograd.grad(F.conv2d(xc, conv.weight), [xc, conv.weight], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_unknown_op_suggests_closest():
    with pytest.raises(UserError, match="Did you mean 'sep_conv_3x3'"):
        create_op("sep_conv3x3", 4, 1)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shifted", [False, True])
def test_strided_conv1x1_equals_strided_convolution(channels_last, shifted, pointwise_path):
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
    if channels_last and not shifted:  # its gradient in the input's layout (`Subsample`)
        assert xa.grad.is_contiguous(memory_format=torch.channels_last)


def _plain_dilconv(m, x):
    """DilConv's arithmetic from torch's own autograd ops (the reference for the lean path)."""
    dw, pw, bn = m[-3], m[-2], m[-1]
    if m.relu_in:
        x = F.relu(x)
    t = F.conv2d(x, dw.weight, None, dw.stride, dw.padding, dw.dilation, dw.groups)
    u = F.conv2d(t, pw.weight)
    return F.batch_norm(u, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)


@pytest.mark.parametrize("name", ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("relu_in", [True, False])
def test_lean_conv_ops_give_autograds_outputs_and_gradients(
    name, stride, channels_last, relu_in, lean_always, pointwise_path
):
    """The recomputing depthwise->1×1 function and the output-keeping BatchNorm give the same
    outputs and gradients (input and every weight) as torch's autograd on the plain ops, in
    float64, odd and non-square sizes included; BatchNorm statistics move the same way."""
    torch.manual_seed(0)
    op = create_op(name, 6, stride, affine=False, relu_in=relu_in).double()
    x = torch.randn(3, 6, 9, 7, dtype=torch.double)
    if channels_last:
        op = op.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    blocks = list(op) if name.startswith("sep") else [op]

    def plain(x):
        for b in blocks:
            x = _plain_dilconv(b, x)
        return x

    y_ref = plain(x)
    g = torch.randn_like(y_ref)
    params = [p for p in op.parameters()]
    ref = torch.autograd.grad(y_ref, [x, *params], g)
    stats_before = [b[-1].running_mean.clone() for b in blocks]
    y = op(x)
    got = torch.autograd.grad(y, [x, *params], g)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    assert y.shape == (3, 6, -(-9 // stride), -(-7 // stride))
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for b, before in zip(blocks, stats_before, strict=True):
        assert b[-1].num_batches_tracked.item() == 1
        assert not torch.equal(b[-1].running_mean, before)
    # frozen weights (the architecture step): input gradient only, still the same
    for p in params:
        p.requires_grad_(False)
    (gx,) = torch.autograd.grad(op(x), x, g)
    torch.testing.assert_close(gx, ref[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (5, 1), (3, 2), (5, 2), (7, 1)])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("hw", [(11, 8), (6, 9)])
def test_depthwise_backward_equals_convolution_backward(
    kernel, dilation, stride, channels_last, hw, monkeypatch
):
    """Every way `depthwise_backward` computes (the stride-1 input gradient as a convolution,
    strided ones through stride 1, weight gradients split into 3×3 windows or phases, here at
    any size) equals torch's convolution backward."""
    import scinas.lean_ops
    from scinas.ops import depthwise_backward

    monkeypatch.setattr(scinas.lean_ops, "WINDOWS_FROM", 0)
    monkeypatch.setattr(scinas.lean_ops, "PHASES_FROM", 0)
    torch.manual_seed(0)
    C, pad = 5, dilation * (kernel - 1) // 2
    x = torch.randn(2, C, *hw, dtype=torch.double)
    w = torch.randn(C, 1, kernel, kernel, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, w, None, stride, pad, dilation, C)
    g = torch.randn_like(y)
    args = ([stride] * 2, [pad] * 2, [dilation] * 2)
    ref_x, ref_w, _ = torch.ops.aten.convolution_backward(
        g, x, w, None, *args, False, [0, 0], C, [True, True, False]
    )
    gx, gw = depthwise_backward(g, x, w, *args, True, True)
    torch.testing.assert_close(gx, ref_x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, ref_w, rtol=1e-10, atol=1e-10)
    assert depthwise_backward(g, x, w, *args, False, True)[0] is None
    assert depthwise_backward(g, x, w, *args, True, False)[1] is None
    split = scinas.lean_ops._split_weight_grad(g, x, w.shape[-2:], *args[1:])
    assert (split is not None) == (channels_last and (kernel, dilation) in {(5, 1), (7, 1), (3, 2)})


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("C", [5, 20, 32])  # channels-last: WideBatchNorm for 5 and 20
def test_search_batchnorm_equals_batchnorm(momentum, channels_last, affine, C, lean_always):
    from scinas.ops import LeanBatchNorm2d

    torch.manual_seed(0)
    ours = LeanBatchNorm2d(C, affine=affine, momentum=momentum).double()
    ref = nn.BatchNorm2d(C, affine=affine, momentum=momentum).double()
    if affine:
        with torch.no_grad():
            for p in (*ours.parameters(), *ref.parameters()):
                p.copy_(torch.linspace(-1.5, 2.0, C, dtype=torch.double))
    assert list(ours.state_dict()) == list(ref.state_dict())
    for step in range(3):
        x = torch.randn(4, C, 6, 3, dtype=torch.double) * (step + 1) + step
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        y, y_ref = ours(x), ref(x)
        g = torch.randn_like(y)
        torch.testing.assert_close(y, y_ref)
        got = torch.autograd.grad(y, [x, *ours.parameters()], g)
        want = torch.autograd.grad(y_ref, [x, *ref.parameters()], g)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (4, 3, 4, 4), (3, 5, 3, 1)])  # k = 2, 32, 1
def test_wide_batchnorm_gradients_match_finite_differences(affine, shape):
    from scinas.lean_ops import WideBatchNorm, _wide_rows

    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.double).contiguous(memory_format=torch.channels_last)
    assert _wide_rows(x)[1] == {(3, 4, 5, 2): 2, (4, 3, 4, 4): 32, (3, 5, 3, 1): 1}[shape]
    x.requires_grad_(True)
    C = shape[1]
    w = torch.randn(C, dtype=torch.double, requires_grad=True) if affine else None
    b = torch.randn(C, dtype=torch.double, requires_grad=True) if affine else None
    inputs = (x, w, b, 1e-5)
    assert torch.autograd.gradcheck(lambda *a: WideBatchNorm.apply(*a)[0], inputs)
    y, mean, var = WideBatchNorm.apply(*inputs)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(var, x.var((0, 2, 3), unbiased=False))
    assert not y._is_view()
    if affine:  # an in-place ReLU may follow (without affine, the output is kept for backward)
        F.relu(y, inplace=True).sum().backward()


def _saved_maps(module, x, weight=None) -> int:
    """How many distinct full-size feature maps autograd keeps for backward after
    ``weight * module(x)`` (the supernet's weighted sum, which needs the op's output for the
    weight's gradient)."""
    kept = set()

    def pack(t):
        if t.numel() == x.numel():
            kept.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
        if weight is not None:
            y * weight
    return len(kept)


def test_lean_sepconv_keeps_two_feature_maps_besides_its_input(lean_always):
    """What the recomputation buys. In the supernet (no affine BatchNorm, ReLU shared by the cell,
    output weighted by a softmax weight) autograd on the plain SepConv keeps 6 full-size maps
    besides its input (depthwise out, 1×1 out, ReLU out, depthwise out, 1×1 out, BN out); the lean
    one keeps the two BatchNorm outputs. In a discrete network (affine BatchNorm, own ReLU) it
    keeps 3 besides the input."""
    torch.manual_seed(0)
    x = torch.randn(4, 8, 10, 10, requires_grad=True)
    alpha = torch.tensor(0.3, requires_grad=True)
    op = create_op("sep_conv_3x3", 8, 1, affine=False, relu_in=False)
    assert _saved_maps(op, x, alpha) == 1 + 2
    plain = nn.Sequential(*[nn.Sequential(*b) for b in op])  # the same modules, one by one
    for b in plain:
        b[-1].__class__ = nn.BatchNorm2d
    assert _saved_maps(plain, x, alpha) == 1 + 6
    discrete = create_op("sep_conv_3x3", 8, 1, affine=True, relu_in=True)
    assert _saved_maps(discrete, x) == 1 + 3  # BN1 in, BN1 out (the next ReLU's input), BN2 in


@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (1, 1), (2, 5)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_factorized_reduce_is_dartss_padded_two_branch_reduction(
    hw, channels_last, lean_always, pointwise_path
):
    """FactorizedReduce equals DARTS' definition, with the offset branch on the input padded by one
    zero row and column at the far end (which gives ceil(H/2) for odd sizes): outputs and
    gradients."""
    from scinas.ops import FactorizedReduce

    torch.manual_seed(0)
    op = FactorizedReduce(4, 6).double()
    x = torch.randn(3, 4, *hw, dtype=torch.double)
    if channels_last:
        op = op.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    r = F.relu(x)
    shifted = F.pad(r, (0, 1, 0, 1))[:, :, 1:, 1:]
    branches = [
        F.conv2d(r, op.conv_1.weight, stride=2),
        F.conv2d(shifted, op.conv_2.weight, stride=2),
    ]
    ref = F.batch_norm(torch.cat(branches, 1), None, None, op.bn.weight, op.bn.bias, training=True)
    y = op(x)
    assert y.shape == (3, 6, -(-hw[0] // 2), -(-hw[1] // 2))
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    params = [x, op.conv_1.weight, op.conv_2.weight, op.bn.weight]
    grads = torch.autograd.grad(y, params, g)
    for a, b in zip(grads, torch.autograd.grad(ref, params, g), strict=True):
        torch.testing.assert_close(a, b)
    if channels_last:  # one layout through backward (a mixed one runs torch's slow kernels)
        assert grads[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("stride, offsets", [(2, (0, 1)), (2, (0,)), (3, (0, 2))])
@pytest.mark.parametrize("hw", [(6, 6), (5, 7), (1, 1)])
def test_subsample_gradients_match_finite_differences(hw, stride, offsets):
    from scinas.lean_ops import Subsample

    x = torch.randn(2, 3, *hw, dtype=torch.double).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    maps = Subsample.apply(x, stride, offsets)
    for m, o in zip(maps, offsets, strict=True):
        assert torch.equal(m, x[:, :, o::stride, o::stride])
        assert m.is_contiguous(memory_format=torch.channels_last)

    def sums(t):
        return [m.sum((0, 1)) for m in Subsample.apply(t, stride, offsets)]

    assert torch.autograd.gradcheck(sums, (x,))


def test_global_pool_equals_adaptive_pool_and_keeps_the_gradients_layout():
    from scinas.lean_ops import GlobalAvgPool2d

    x = torch.randn(3, 5, 6, 7, dtype=torch.double).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    pool = GlobalAvgPool2d()
    y, ref = pool(x), nn.AdaptiveAvgPool2d(1)(x)
    torch.testing.assert_close(y, ref)
    w = torch.randn_like(y)
    (g,) = torch.autograd.grad((y * w).sum(), x)
    torch.testing.assert_close(g, torch.autograd.grad((ref * w).sum(), x)[0])
    assert g.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(pool, (x,))


def test_lean_functions_switch_on_from_lean_from_elements(monkeypatch):
    import scinas.lean_ops

    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    alpha = torch.tensor(0.3, requires_grad=True)
    op = create_op("sep_conv_3x3", 8, 1, affine=False, relu_in=False)
    assert x.numel() < scinas.lean_ops.LEAN_FROM
    assert _saved_maps(op, x, alpha) == 1 + 6  # plain autograd below the threshold
    monkeypatch.setattr(scinas.lean_ops, "LEAN_FROM", x.numel())
    assert _saved_maps(op, x, alpha) == 1 + 2
