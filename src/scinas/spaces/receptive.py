"""Receptive fields of a network's convolutions: which of them can be searched (`sites`), a choice
of kernel size and dilation applied to a built network (`apply`), and the aggregated convolution
that mixes every choice of one layer (`AggregatedConv`, after DASH: Shen et al. 2022, "Efficient
architecture search for diverse tasks").

A searchable convolution is 1-D or 2-D with one kernel size and one dilation on every axis and a
"same" padding: numeric padding ``dilation * (k - 1) / 2`` for an odd kernel, or, for an even one,
no padding behind a zero-padding layer of ``(k-1)//2`` before and ``k//2`` after
(`scinas.spaces.nd.same_conv`). A choice (k, d) replaces it by a convolution of kernel k and
dilation d, padded by ``d * (k - 1) / 2`` (odd k only), so every output keeps its size; a 1×1
convolution is a projection and is left alone."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d)
PADS = (nn.ConstantPad1d, nn.ConstantPad2d)
MAX_KERNEL = 63
MAX_DILATION = 64


@dataclass(frozen=True)
class Site:
    """One searchable convolution of a network: its module path, the path of the padding layer
    before it (an even kernel's), and its kernel size, dilation and dimension."""

    path: str
    pad: str | None
    kernel: int
    dilation: int
    dim: int


def span(kernel: int, dilation: int) -> int:
    """The steps (pixels along an axis) one output of a kernel at this dilation sees."""
    return dilation * (kernel - 1) + 1


def _uniform(values: Sequence[int]) -> int | None:
    return values[0] if len(set(values)) == 1 else None


def _site(path: str, conv: nn.Module, before: nn.Module | None, before_path: str) -> Site | None:
    k, d = _uniform(conv.kernel_size), _uniform(conv.dilation)
    if k is None or d is None or k < 2 or isinstance(conv.padding, str):
        return None
    if conv.padding_mode != "zeros":
        return None
    dim = len(conv.kernel_size)
    if k % 2 and all(p == d * (k - 1) // 2 for p in conv.padding):
        return Site(path, None, k, d, dim)
    if k % 2 == 0 and all(p == 0 for p in conv.padding) and isinstance(before, PADS):
        same = ((k - 1) // 2 * d, k // 2 * d) * dim
        if tuple(before.padding) == same and before.value == 0:
            return Site(path, before_path, k, d, dim)
    return None


def sites(net: nn.Module) -> list[Site]:
    """The searchable convolutions of ``net``, in module order."""
    out = []
    for parent_path, parent in net.named_modules():
        children = list(parent.named_children())
        for i, (name, m) in enumerate(children):
            if not isinstance(m, CONVS):
                continue
            before = children[i - 1] if i and isinstance(parent, nn.Sequential) else (None, None)
            prefix = f"{parent_path}." if parent_path else ""
            pad_path = f"{prefix}{before[0]}" if before[0] is not None else ""
            site = _site(prefix + name, m, before[1], pad_path)
            if site is not None:
                out.append(site)
    return out


def _set(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, module)


def _fresh(conv: nn.Module, k: int, d: int) -> nn.Module:
    """A newly initialised ``conv`` of kernel ``k`` and dilation ``d``, padded to keep sizes."""
    return type(conv)(
        conv.in_channels,
        conv.out_channels,
        k,
        stride=conv.stride,
        padding=d * (k - 1) // 2,
        dilation=d,
        groups=conv.groups,
        bias=conv.bias is not None,
    )


def apply(net: nn.Module, choices: Sequence[tuple[str, int, int]], what: str = "network"):
    """``net`` with each (path, kernel, dilation) of ``choices`` applied (in place); a path
    that is not a searchable convolution of ``net`` is a ValueError naming it."""
    if not choices:
        return net
    found = {s.path: s for s in sites(net)}
    for path, k, d in choices:
        site = found.get(path)
        if site is None:
            raise ValueError(
                f"the {what} has no searchable convolution {path!r} (it has: "
                f"{', '.join(found) or 'none'})"
            )
        if site.pad is not None:
            _set(net, site.pad, nn.Identity())
        _set(net, path, _fresh(net.get_submodule(path), k, d))
    return net


def check_choices(kernels: Sequence[int], dilations: Sequence[int]) -> None:
    """Kernel sizes odd, from 3 to MAX_KERNEL; dilations from 1 to MAX_DILATION (ValueError)."""
    bad = [k for k in kernels if not (3 <= k <= MAX_KERNEL and k % 2)]
    if bad:
        raise ValueError(f"kernel sizes must be odd, 3 to {MAX_KERNEL}: {bad} are not")
    bad = [d for d in dilations if not 1 <= d <= MAX_DILATION]
    if bad:
        raise ValueError(f"dilations must be 1 to {MAX_DILATION}: {bad} are not")
    for name, values in (("kernel sizes", kernels), ("dilations", dilations)):
        if len(set(values)) != len(values) or not values:
            raise ValueError(f"the {name} must be distinct and at least one")


class AggregatedConv(nn.Module):
    """Every (kernel, dilation) choice of one convolution mixed in one pass per dilation.

    The choices share one weight of the largest kernel K; kernel k is its centre k×k (weight
    sharing). The mixture ``sum_ij p_ij conv(x, W * M_i, dilation d_j)`` of the choices'
    outputs, ``p = softmax(alpha)``, is by linearity ``sum_j conv(x, W * (sum_i p_ij M_i), d_j)``:
    one convolution of kernel K per dilation, however many kernel sizes are searched (DASH's
    aggregated kernel). With ``alpha`` one-hot it computes exactly the chosen convolution.

    ``length``: the smallest size along an axis of the input this layer sees; the choices that
    span more than that are left out (the narrowest one always stays)."""

    def __init__(
        self,
        conv: nn.Module,
        kernels: Sequence[int],
        dilations: Sequence[int],
        length: int | None = None,
    ):
        super().__init__()
        check_choices(kernels, dilations)
        self.kernels, self.dilations = tuple(kernels), tuple(dilations)
        self.dim = len(conv.kernel_size)
        self.stride, self.groups = conv.stride, conv.groups
        K = max(self.kernels)
        template = _fresh(conv, K, 1)
        self.weight = template.weight
        self.bias = template.bias
        masks = torch.zeros(len(self.kernels), *([K] * self.dim))
        for i, k in enumerate(self.kernels):
            m = (K - k) // 2
            masks[(i, *[slice(m, m + k)] * self.dim)] = 1.0
        self.register_buffer("masks", masks, persistent=False)
        self.alpha = nn.Parameter(torch.zeros(len(self.kernels), len(self.dilations)))
        self._conv = (F.conv1d, F.conv2d)[self.dim - 1]
        # a choice wider than the input it sees would mostly convolve its zero padding: left
        # out, except the narrowest, so that every layer keeps a choice
        allowed = torch.tensor(
            [[length is None or span(k, d) <= length for d in self.dilations] for k in kernels]
        )
        allowed[self.kernels.index(min(kernels)), self.dilations.index(min(dilations))] = True
        self.register_buffer("allowed", allowed, persistent=False)
        self.length = length
        self._used = [bool(allowed[:, j].any()) for j in range(len(self.dilations))]

    def probabilities(self) -> torch.Tensor:
        """The softmax of the logits over the allowed choices (the others' probability 0)."""
        alpha = self.alpha.masked_fill(~self.allowed, float("-inf"))
        return torch.softmax(alpha.flatten(), 0).view_as(self.alpha)

    def choice(self) -> tuple[int, int, float]:
        """The most likely (kernel, dilation) and its probability."""
        p = self.probabilities().detach()
        i, j = divmod(int(p.argmax()), len(self.dilations))
        return self.kernels[i], self.dilations[j], float(p[i, j])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.probabilities()
        K = self.weight.shape[-1]
        out = None
        for j, d in enumerate(self.dilations):
            if not self._used[j]:
                continue
            mask = torch.tensordot(p[:, j], self.masks, dims=1)
            y = self._conv(
                x, self.weight * mask, None, self.stride, d * (K - 1) // 2, d, self.groups
            )
            out = y if out is None else out + y
        if self.bias is not None:
            out = out + self.bias.view(1, -1, *([1] * self.dim))
        return out


def input_lengths(net: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """The smallest axis of the input each searchable convolution of ``net`` sees, for inputs
    of ``input_shape`` (channels first), from a pass on the meta device (no compute)."""
    meta = copy.deepcopy(net).to("meta")
    seen: dict[str, int] = {}

    def see(path: str):
        def hook(_module, args) -> None:  # returns None: the input goes on unchanged
            seen.setdefault(path, min(args[0].shape[2:]))

        return hook

    hooks = [
        meta.get_submodule(site.path).register_forward_pre_hook(see(site.path))
        for site in sites(meta)
    ]
    try:
        with torch.no_grad():
            meta.eval()(torch.empty(2, *input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return seen


def aggregate(
    net: nn.Module,
    kernels: Sequence[int],
    dilations: Sequence[int],
    input_shape: Sequence[int] | None = None,
) -> list[Site]:
    """Replace every searchable convolution of ``net`` (in place) by an `AggregatedConv` over
    ``kernels`` and ``dilations``; an even kernel's padding layer becomes an identity. With
    ``input_shape``, each layer leaves out the choices wider than the input it sees. Returns
    the sites replaced."""
    found = sites(net)
    lengths = input_lengths(net, input_shape) if input_shape is not None else {}
    for site in found:
        if site.pad is not None:
            _set(net, site.pad, nn.Identity())
        conv = net.get_submodule(site.path)
        mixed = AggregatedConv(conv, kernels, dilations, lengths.get(site.path))
        _set(net, site.path, mixed)
    return found
