"""Memory-lean and GEMM-backed forms of the DARTS ops' image layers (`scinas.ops`).

A 1×1 convolution as one matrix product on small channels-last maps (`Conv1x1`), and autograd
functions that keep less for backward than torch's own: the ReLU -> depthwise -> 1×1 chain of
the separable and dilated convolutions keeps only its input (`DepthwisePointwise`), and the
supernet's affine-free BatchNorm keeps its output (`LeanBatchNorm2d`), which also normalises
channels-last maps whose width torch's kernel vectorises badly on wide views (`WideBatchNorm`).
They act on images (4-D maps) at and above `LEAN_FROM` elements; everything else runs torch's
own layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


class Conv1x1(nn.Conv2d):
    """A bias-free 1×1 convolution (any stride) through `pointwise` on channels-last input.

    On CPU, oneDNN's 1×1 convolution carries a large fixed cost per call that dominates the small
    feature maps of a supernet; on a channels-last tensor the same product is one GEMM over
    (B·H·W, C) with no copies (the permutes are views), which `pointwise` takes on small maps.
    A stride s keeps every s-th row and column first (the same outputs as the strided
    convolution, which has no padding), then multiplies at stride 1. That also steers clear of
    a oneDNN bug: torch 2.13's CPU weight gradient of a strided 1×1 convolution on channels-last
    input corrupts the heap for some shapes on AVX-512 CPUs (e.g. batch 31, 4 -> 2 channels,
    12×20: "double free or corruption"; NCHW, stride 1, or oneDNN limited to AVX2 do not).
    Weights and state_dict keys are those of nn.Conv2d, so checkpoints and FLOP counts are
    unchanged.
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 1):
        super().__init__(C_in, C_out, 1, stride=stride, bias=False)

    def forward(self, x):
        s = self.stride[0]
        # channels-last, or (strided) a channels-innermost view such as FactorizedReduce's shifted
        # slice, which the subsampling copies into channels-last anyway
        channels_last = x.is_contiguous(memory_format=torch.channels_last) or (
            s > 1 and x.stride(1) == 1
        )
        if x.dim() == 4 and channels_last and x.size(1) > 1:
            if s > 1:  # a view's slices as before; a map's through `Subsample`, one layout
                dense = x.is_contiguous(memory_format=torch.channels_last)
                x = subsample(x, s, (0,))[0] if dense else _strided(x, s, 0)
            return pointwise(x, self.weight.flatten(1))
        return super().forward(x)


# A CPU's 1×1 convolution of at least this many input and output elements runs oneDNN's kernel,
# smaller ones one GEMM: oneDNN's fixed cost per call dominates small maps, and the GEMM of few
# channels (K and N of 8-64) reaches half oneDNN's speed on large ones (`benchmarks/small_speed.py
# --pointwise`)
GEMM_BELOW = 1 << 18


def pointwise(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """1×1 convolution of x (B, C_in, H, W) with w (C_out, C_in): one GEMM on small
    channels-last maps (`GEMM_BELOW`), a convolution otherwise."""
    if x.is_contiguous(memory_format=torch.channels_last) and _gemm(x, w.size(0)):
        y = F.linear(x.permute(0, 2, 3, 1), w)  # (B, H, W, C_out)
        return y.permute(0, 3, 1, 2)  # channels-last (B, C_out, H, W) view
    return F.conv2d(x, w[:, :, None, None])


def _gemm(x: torch.Tensor, out_channels: int) -> bool:
    """Whether a 1×1 convolution of ``x`` to ``out_channels`` runs as a GEMM (`GEMM_BELOW`)."""
    if x.device.type != "cpu" or x.numel() == 0:  # an empty map: torch's convolution refuses it
        return True
    return x.numel() // x.size(1) * (x.size(1) + out_channels) < GEMM_BELOW


def pointwise_weight_grad(gy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The (C_out, C_in) weight gradient of a 1×1 convolution of channels-last ``x`` given its
    output's gradient ``gy`` (channels-last), by the same rule as `pointwise`."""
    if _gemm(x, gy.size(1)):
        return _rows(gy).t() @ _rows(x)
    w = x.new_empty(gy.size(1), x.size(1), 1, 1)
    return torch.ops.aten.convolution_backward(
        gy, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1].flatten(1)


def _format(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B·H·W, C); a view for channels-last tensors."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.size(1))


class Subsample(torch.autograd.Function):
    """Every ``stride``-th row and column of a channels-last map from each offset in ``offsets``,
    each as a channels-last copy: ``x[:, :, o::s, o::s]`` (a strided 1×1 convolution's input,
    `FactorizedReduce`'s two branches).

    Autograd's slicing returns its gradient in a zero-filled contiguous (NCHW) map per slice, so
    the gradient reaching a channels-last ReLU or sum came in the other layout, and torch's
    kernels for mixed layouts are far slower than for one; this backward fills one channels-last
    map."""

    @staticmethod
    def forward(ctx, x, stride: int, offsets: tuple[int, ...]):
        ctx.shape, ctx.stride, ctx.offsets = x.shape, stride, offsets
        return tuple(_strided(x, stride, o) for o in offsets)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        g = next(g for g in grads if g is not None)
        cl, s = torch.channels_last, ctx.stride
        gx = torch.empty(ctx.shape, dtype=g.dtype, device=g.device, memory_format=cl).zero_()
        for o, g in zip(ctx.offsets, grads, strict=True):
            if g is not None:
                gx[:, :, o::s, o::s] = g
        return gx, None, None


def _strided(x: torch.Tensor, stride: int, offset: int) -> torch.Tensor:
    return x[:, :, offset::stride, offset::stride].contiguous(memory_format=torch.channels_last)


def subsample(x: torch.Tensor, stride: int, offsets: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """`Subsample`'s maps; plain slices where no gradient is recorded or a graph is traced for
    export."""
    if _records(x):
        return Subsample.apply(x, stride, offsets)
    return tuple(_strided(x, stride, o) for o in offsets)


class _MeanKeepingLayout(torch.autograd.Function):
    """The mean over H and W whose gradient keeps a channels-last input's layout (autograd's
    is an expanded NCHW map: the backward of the ReLU before the pooling then mixes layouts)."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean((2, 3), keepdim=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        B, C, H, W = ctx.shape
        return (g / (H * W)).expand(B, C, H, W).contiguous(memory_format=torch.channels_last)


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d(1)`` whose input gradient keeps a channels-last input's layout."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x):
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        if x.dim() == 4 and channels_last and not x.is_contiguous() and _records(x):
            return _MeanKeepingLayout.apply(x)
        return super().forward(x)


def _records(x: torch.Tensor) -> bool:
    """Whether autograd records ``x``'s use, outside a trace for export."""
    return torch.is_grad_enabled() and x.requires_grad and not _tracing()


def _tracing() -> bool:
    """Whether a graph is being traced for export (the autograd functions here have no
    symbolic form)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


# The lean autograd functions below cost some Python per call and a recomputation in backward;
# they pay from inputs of about this many elements up (lean vs plain DARTS steps: CHANGELOG).
LEAN_FROM = 1 << 17


def wants_autograd(x: torch.Tensor, *weights: torch.Tensor) -> bool:
    """Whether a forward should go through the memory-lean autograd functions below: gradients
    are being recorded, the graph is not being traced for export (they have no symbolic), and
    the input is large enough for them to pay (`LEAN_FROM`), and no autocast is on (their
    backward recomputes convolutions from saved tensors of mixed dtypes: `precision=bf16|fp16`
    takes torch's own ops)."""
    if not torch.is_grad_enabled() or _tracing():
        return False
    if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
        return False
    if x.numel() < LEAN_FROM:
        return False
    return x.requires_grad or any(w.requires_grad for w in weights)


def depthwise_backward(g, x, w, stride, padding, dilation, need_x: bool, need_w: bool):
    """Gradients of a depthwise convolution (groups = channels) w.r.t. its input and weight.

    oneDNN (torch 2.13, AVX-512) has a depthwise-specific kernel for the forward pass at any kernel
    size and dilation, but for the backward only at 3×3 without dilation: other shapes run a
    generic grouped kernel that computes 16×16 blocks per one-channel group, 6–20× slower than the
    forward. At stride 1 the input gradient is the forward convolution of ``g`` with the flipped
    kernel (padding ``d·(k-1) - p``), which takes the fast kernel, and on large channels-last
    maps the weight gradient of a 5×5, 7×7 or dilated 3×3 kernel is a sum of fast 3×3 ones
    (`_split_weight_grad`). Strided convolutions go through their stride-1 counterpart (below).
    The results are those of ``torch.ops.aten.convolution_backward`` up to float rounding, on
    any device.
    """
    C = x.size(1)
    kernel = w.shape[-2:]
    fits = all(p <= d * (k - 1) for p, d, k in zip(padding, dilation, kernel, strict=True))
    if tuple(stride) != (1, 1) and fits:
        # A strided output is the stride-1 output subsampled, so its gradient is the stride-1
        # gradient spread onto every s-th position (zeros between). oneDNN's strided backward
        # takes the generic kernel (10–17 ms for a 5×5 or dilated 64×32×32×32 input gradient,
        # against ~0.4 ms this way); the weight gradient goes the stride-1 way only where that
        # reaches the fast 3×3 kernel.
        size = [
            n + 2 * p - d * (k - 1)
            for n, p, d, k in zip(x.shape[2:], padding, dilation, kernel, strict=True)
        ]
        g1 = torch.empty(
            (g.size(0), C, *size), dtype=g.dtype, device=g.device, memory_format=_format(x)
        ).zero_()
        g1[:, :, :: stride[0], :: stride[1]] = g
        fast_w = tuple(kernel) == (3, 3) and tuple(dilation) == (1, 1)
        gx, gw = depthwise_backward(g1, x, w, (1, 1), padding, dilation, need_x, need_w and fast_w)
        if need_w and not fast_w:
            gw = torch.ops.aten.convolution_backward(
                g, x, w, None, list(stride), list(padding), list(dilation), False, [0, 0], C,
                [False, True, False],
            )[1]  # fmt: skip
        return gx, gw
    gx = gw = None
    native_x = need_x
    if need_x and tuple(stride) == (1, 1) and fits:
        pad = [d * (k - 1) - p for p, d, k in zip(padding, dilation, kernel, strict=True)]
        gx = F.conv2d(g, w.flip(2, 3), None, 1, pad, dilation, C)
        native_x = False
    if need_w and not native_x and (split := _split_weight_grad(g, x, kernel, padding, dilation)):
        return gx, split()
    if native_x or need_w:
        gx_native, gw, _ = torch.ops.aten.convolution_backward(
            g, x, w, None, list(stride), list(padding), list(dilation), False, [0, 0], C,
            [native_x, need_w, False],
        )  # fmt: skip
        if native_x:
            gx = gx_native
    return gx, gw


# Weight gradients split into 3×3 windows (5×5, 7×7) or phases (dilated 3×3) from this many
# input elements: below, the copies cost about what they save (`small_speed.py --depthwise`)
WINDOWS_FROM = 1 << 18
PHASES_FROM = 1 << 20


def _split_weight_grad(g, x, kernel, padding, dilation):
    """The weight gradient of a stride-1 depthwise convolution of "same" padding as calls of
    oneDNN's fast 3×3 kernel, where that pays (None where not): a 5×5 or 7×7 kernel as its 3×3
    windows, each on the padded input shifted to the window; a 3×3 kernel of dilation 2 as four
    undilated 3×3 gradients, one per phase (every other row and column from each offset), whose
    sum it is. Each window or phase costs a copy of a feature map."""
    k, d, p = kernel[0], dilation[0], padding[0]
    if not (
        x.device.type == "cpu"
        and x.is_contiguous(memory_format=torch.channels_last)
        and tuple(kernel) == (k, k)
        and tuple(dilation) == (d, d)
        and tuple(padding) == (p, p)
        and k % 2 == 1
        and p == d * (k - 1) // 2
    ):
        return None
    if d == 1 and k in (5, 7) and x.numel() >= WINDOWS_FROM:
        return lambda: _windows_weight_grad(g, x, k)
    if d == 2 and k == 3 and x.numel() >= PHASES_FROM:
        return lambda: _phases_weight_grad(g, x)
    return None


def _fast_weight_grad(g, x, padding: int) -> torch.Tensor:
    """oneDNN's 3×3 depthwise weight gradient, stride 1, no dilation."""
    w = x.new_empty(x.size(1), 1, 3, 3)
    return torch.ops.aten.convolution_backward(
        g.contiguous(memory_format=torch.channels_last), x, w, None, [1, 1], [padding] * 2,
        [1, 1], False, [0, 0], x.size(1), [False, True, False],
    )[1]  # fmt: skip


def _windows_weight_grad(g, x, k: int) -> torch.Tensor:
    """A k×k ("same" padding) weight gradient from the 3×3 windows at rows and columns
    0, 2, ..., k-3 of the kernel: the window at (a, b) is the 3×3 gradient, without padding, of
    the input padded by (k-1)/2 and cut to start at (a, b)."""
    p, (H, W) = (k - 1) // 2, x.shape[2:]
    xp = F.pad(x, (p, p, p, p))
    gw = x.new_empty(x.size(1), 1, k, k)
    for a in range(0, k - 2, 2):
        for b in range(0, k - 2, 2):
            window = xp[:, :, a : a + H + 2, b : b + W + 2]
            gw[:, :, a : a + 3, b : b + 3] = _fast_weight_grad(
                g, window.contiguous(memory_format=torch.channels_last), 0
            )
    return gw


def _phases_weight_grad(g, x) -> torch.Tensor:
    """A 3×3 weight gradient of dilation 2 and padding 2: output row 2u+r reads input rows
    2(u+i-1)+r, so each phase (r, c) of the output pairs with the same phase of the input
    through an undilated 3×3 kernel of padding 1."""
    cl = torch.channels_last
    return sum(
        _fast_weight_grad(g[:, :, r::2, c::2], x[:, :, r::2, c::2].contiguous(memory_format=cl), 1)
        for r in (0, 1)
        for c in (0, 1)
    )


class DepthwisePointwise(torch.autograd.Function):
    """[ReLU ->] depthwise conv -> 1×1 conv, keeping only the input for backward.

    Autograd would keep the depthwise output (the 1×1 convolution's input) and, with the ReLU, the
    ReLU's output: two full feature maps per op. Both are recomputed in backward from the input,
    which is kept anyway (it is a node state or a BatchNorm output that other ops keep). The
    recomputation costs one depthwise convolution, the cheapest op of the chain.
    """

    @staticmethod
    def forward(ctx, x, w_dw, w_pw, stride, padding, dilation, relu_in: bool):
        r = F.relu(x) if relu_in else x
        y = pointwise(
            F.conv2d(r, w_dw, None, stride, padding, dilation, x.size(1)), w_pw.flatten(1)
        )
        ctx.conv = (stride, padding, dilation)
        ctx.relu_in = relu_in
        ctx.save_for_backward(x, w_dw, w_pw)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, w_dw, w_pw = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        need_x, need_dw, need_pw = ctx.needs_input_grad[:3]
        if x.is_contiguous(memory_format=torch.channels_last):
            gy = gy.contiguous(memory_format=torch.channels_last)
        # the ReLU's output is needed for the weight gradients only; the input gradient of a
        # convolution reads nothing but the shape of its input
        r = F.relu(x) if ctx.relu_in and (need_dw or need_pw) else x
        g_pw = g_x = g_dw = None
        if need_pw:
            t = F.conv2d(r, w_dw, None, stride, padding, dilation, x.size(1))
            g_pw = pointwise_weight_grad(gy, t).view_as(w_pw)
        if need_x or need_dw:
            g_t = pointwise(gy, w_pw.flatten(1).t())
            g_x, g_dw = depthwise_backward(g_t, r, w_dw, stride, padding, dilation, need_x, need_dw)
            if g_x is not None and ctx.relu_in:
                g_x = torch.ops.aten.threshold_backward(g_x, x, 0)
        return g_x, g_dw, g_pw, None, None, None, None


class BatchNormKeepingOutput(torch.autograd.Function):
    """Train-mode BatchNorm without affine parameters whose backward works from its output.

    Without ``weight`` and ``bias`` the output is x-hat itself, which is all the backward needs
    besides the per-channel inverse std. Autograd's BatchNorm keeps its input instead; in the
    supernet the output is kept anyway (by the weighted sum, for the alpha gradient, and by the
    pooling ops and cells that read a node state), so keeping the output saves one feature map
    per op.
    """

    @staticmethod
    def forward(ctx, x, running_mean, running_var, momentum: float, eps: float):
        y, _, invstd = torch.native_batch_norm(
            x, None, None, running_mean, running_var, True, momentum, eps
        )
        ctx.eps = eps
        ctx.save_for_backward(y, invstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        y, invstd = ctx.saved_tensors
        if y.is_contiguous(memory_format=torch.channels_last):
            gy = gy.contiguous(memory_format=torch.channels_last)
        # native backward with input y, mean 0, inverse std 1 (so its x-hat is y) and weight
        # `invstd` gives invstd·(g − mean(g) − y·mean(g·y)): the gradient w.r.t. the input.
        gx = torch.ops.aten.native_batch_norm_backward(
            gy, y, invstd, None, None, torch.zeros_like(invstd), torch.ones_like(invstd),
            True, ctx.eps, [True, False, False],
        )[0]  # fmt: skip
        return gx, None, None, None, None


# torch's channels-last BatchNorm on a CPU vectorises over the channels in blocks of this many
# floats: other widths run `WideBatchNorm` (`benchmarks/small_speed.py --batchnorm`)
BN_BLOCK = 16
WIDE_BN = 128  # `WideBatchNorm`'s elementwise work runs on rows of up to this many floats


class WideBatchNorm(torch.autograd.Function):
    """Train-mode BatchNorm of a channels-last map whose width torch's CPU kernel vectorises
    badly (channels not a multiple of `BN_BLOCK`: 8, 12, 17, 24, ...).

    Seen as a (B·H·W, C) matrix (a view), the per-channel sums are column sums, and the
    per-channel scaling runs on a (B·H·W/k, k·C) view of the same memory with the per-channel
    vectors tiled k times, so every elementwise op works on wide rows. Keeps x-hat and the
    inverse std (with ``weight`` None x-hat is the output, as `BatchNormKeepingOutput` keeps).
    Returns the output, the batch mean and the biased variance.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        wide, k = _wide_rows(x)
        n = wide.numel() // x.size(1)
        mean = _column_sums(wide, k) / n
        # outputs are whole tensors, not views of the rows (an in-place op may follow)
        xhat = torch.empty_like(x, memory_format=torch.channels_last)
        xhat_rows = _wide_rows(xhat)[0]
        torch.sub(wide, mean.repeat(k), out=xhat_rows)
        var = _column_sums(xhat_rows * xhat_rows, k) / n  # two passes: no cancellation
        invstd = torch.rsqrt(var + eps)
        xhat_rows.mul_(invstd.repeat(k))
        y = xhat
        if weight is not None:
            y = torch.empty_like(xhat)
            torch.addcmul(bias.repeat(k), xhat_rows, weight.repeat(k), out=_wide_rows(y)[0])
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, _mean, _var):
        xhat, invstd, weight = ctx.saved_tensors
        xhat, k = _wide_rows(xhat)
        g = _rows(gy.contiguous(memory_format=torch.channels_last)).view(xhat.shape)
        n = xhat.numel() // gy.size(1)
        g_bias = _column_sums(g, k)
        g_weight = _column_sums(g * xhat, k)
        scale = invstd if weight is None else invstd * weight
        # scale·(g − mean(g) − x-hat·mean(g·x-hat)), the input gradient of a BatchNorm
        gx = torch.addcmul((g_bias * (-scale / n)).repeat(k), g, scale.repeat(k))
        gx.addcmul_(xhat, (g_weight * (scale / n)).repeat(k), value=-1)
        B, C, H, W = gy.shape
        gx = gx.view(B, H, W, C).permute(0, 3, 1, 2)
        if weight is None:
            return gx, None, None, None
        return gx, g_weight, g_bias, None


def _wide_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A channels-last map as a (B·H·W/k, k·C) view, k the largest power of two that divides
    B·H·W with k·C at most `WIDE_BN`."""
    rows = _rows(x)
    k = 1
    while 2 * k * rows.size(1) <= WIDE_BN and rows.size(0) % (2 * k) == 0:
        k *= 2
    return rows.view(rows.size(0) // k, k * rows.size(1)), k


def _column_sums(wide: torch.Tensor, k: int) -> torch.Tensor:
    """Per-channel sums of a `_wide_rows` view."""
    return wide.sum(0).view(k, -1).sum(0)


class LeanBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same state_dict, statistics and outputs up to float rounding) with
    two training-mode paths of its own: on a CPU's channels-last maps of a width not a multiple
    of `BN_BLOCK`, `WideBatchNorm`; otherwise, without affine parameters (the supernet's ops), a
    backward that keeps its output rather than its input (`BatchNormKeepingOutput`). The DARTS
    ops and the generic networks' image layers (`scinas.spaces.nd`) use it."""

    def forward(self, x):
        if not (self.training and self.track_running_stats and x.dim() == 4):
            return super().forward(x)
        wide = (  # measured on CPUs only
            x.device.type == "cpu"
            and x.size(1) % BN_BLOCK != 0
            and x.is_contiguous(memory_format=torch.channels_last)
        )
        if (self.affine and not wide) or not wants_autograd(x, *self.parameters()):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        if not wide:
            return BatchNormKeepingOutput.apply(
                x, self.running_mean, self.running_var, momentum, self.eps
            )
        y, mean, var = WideBatchNorm.apply(x, self.weight, self.bias, self.eps)
        n = x.numel() // x.size(1)
        with torch.no_grad():  # as torch's kernel: the running variance unbiased
            self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(var * (n / max(n - 1, 1)), alpha=momentum)
        return y
