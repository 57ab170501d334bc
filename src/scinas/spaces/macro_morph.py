"""Function-preserving transformations (network morphisms) of macro networks.

Each morphism turns a trained `MacroNetwork` into a network of a larger architecture that
computes the same function, so the larger network starts where the trained one is instead of
from scratch (Net2Net, Chen et al. 2016; network morphisms in NAS: Elsken et al. 2018, 2019):

* ``deepen``: one more block at the end of a stage. Its last BatchNorm starts at zero, so its
  residual branch adds nothing and the block passes its input on (the input of a basic or
  bottleneck block is already through a ReLU).
* ``kernel``: a stage's k×k convolutions grown to the next kernel size of the options, the weights
  zero-padded around the centre and the padding grown with them.
* ``widen``: a stage of basic or bottleneck blocks at twice its width. Every channel is copied
  once (a convolution's output channel, its BatchNorm), and every layer that reads the copied
  channels splits its weight between the original and the copy as ``1/2 + d`` and ``1/2 - d``
  with a small random ``d``: the sum is the old weight, so the function is kept, and the two
  copies get different gradients, so they can become different features.

`morphs` lists the morphisms that apply to an architecture within a search section's options;
a morphism's ``apply(net)`` returns the new network (the old one is left as it was).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from . import nd
from .macro_network import MacroArch, MacroBlock, MacroNetwork, options, stage_strides

SPLIT = 0.1  # the largest |d| of a widened layer's weight split


@dataclass(frozen=True)
class Morph:
    """One function-preserving step from ``source`` to ``target``; ``name`` is for the log."""

    name: str
    source: MacroArch
    target: MacroArch
    fill: Callable[[MacroNetwork, MacroNetwork, torch.Generator], None]

    def apply(self, net: MacroNetwork, seed: int = 0) -> MacroNetwork:
        """A new network of ``target`` computing what ``net`` (of ``source``) computes."""
        first = next(net.parameters())
        in_channels = net.stem[0].in_channels
        new = MacroNetwork(self.target, in_channels, net.classifier.out_features, net.input_hw).to(
            device=first.device, memory_format=_memory_format(first)
        )
        with torch.no_grad():
            self.fill(net, new, torch.Generator().manual_seed(seed))
        new.train(net.training)
        return new


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    is_cl = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if is_cl else torch.contiguous_format


def _copy_matching(old: nn.Module, new: nn.Module, skip: Callable[[str], bool]) -> None:
    """Copy every tensor of ``old`` into ``new`` under the same name, except ``skip(name)``."""
    target = new.state_dict()
    for name, value in old.state_dict().items():
        if not skip(name) and name in target:
            target[name].copy_(value)


def _stage_of(name: str) -> tuple[int, int] | None:
    """(stage, block) of a state-dict name inside ``stages``, else None."""
    parts = name.split(".")
    return (int(parts[1]), int(parts[2])) if parts[0] == "stages" else None


# ----------------------------------------------------------------------------- deepen


def _deepen_fill(stage: int) -> Callable:
    def fill(old: MacroNetwork, new: MacroNetwork, gen: torch.Generator) -> None:
        _copy_matching(old, new, skip=lambda name: False)  # the new block keeps its zero start

    return fill


# ----------------------------------------------------------------------------- kernel


def _pad_kernel(w: torch.Tensor, k: int) -> torch.Tensor:
    grow = (k - w.shape[-1]) // 2
    return nn.functional.pad(w, (grow, grow) * (w.dim() - 2))  # every spatial side


def _kernel_fill(stage: int, k: int) -> Callable:
    def fill(old: MacroNetwork, new: MacroNetwork, gen: torch.Generator) -> None:
        _copy_shape_safe(old, new)
        for b_old, b_new in zip(old.stages[stage], new.stages[stage], strict=True):
            for m_old, m_new in zip(b_old.branch, b_new.branch, strict=True):
                if isinstance(m_old, nd.CONVS) and m_old.kernel_size[0] > 1:
                    m_new.weight.copy_(_pad_kernel(m_old.weight, k))

    return fill


# ----------------------------------------------------------------------------- widen


def _double(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``t`` with its channels along ``dim`` copied once: channel j + n is channel j."""
    return torch.cat([t, t], dim=dim)


def _split_in(w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A layer reading doubled channels: weights over input channels j and j + n that add up to
    the old weight of j (dim 1 of a convolution's or a linear layer's weight)."""
    n = w.shape[1]
    d = (torch.rand(n, generator=gen) * 2 - 1) * SPLIT
    shape = [1, n] + [1] * (w.dim() - 2)
    half = (0.5 + d).view(shape).to(w)
    return torch.cat([w * half, w * (1 - half)], dim=1)


def _double_bn(old: nn.Module, new: nn.Module) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(_double(getattr(old, name)))
    new.num_batches_tracked.copy_(old.num_batches_tracked)


def _widen_block(old: MacroBlock, new: MacroBlock, first: bool, gen: torch.Generator) -> None:
    """A block of the widened stage: every channel inside doubled, its input doubled too unless
    it is the stage's first block (which reads the previous stage)."""
    convs_old = [m for m in old.branch if isinstance(m, nd.CONVS)]
    convs_new = [m for m in new.branch if isinstance(m, nd.CONVS)]
    bns_old = [m for m in old.branch if isinstance(m, nd.NORMS)]
    bns_new = [m for m in new.branch if isinstance(m, nd.NORMS)]
    for i, (c_old, c_new) in enumerate(zip(convs_old, convs_new, strict=True)):
        w = c_old.weight
        if i > 0 or not first:
            w = _split_in(w, gen)
        c_new.weight.copy_(_double(w))
    for b_old, b_new in zip(bns_old, bns_new, strict=True):
        _double_bn(b_old, b_new)
    if first:  # a projection shortcut: reads the previous stage, writes doubled channels
        conv_o, bn_o = old.shortcut
        conv_n, bn_n = new.shortcut
        conv_n.weight.copy_(_double(_conv_of(conv_o).weight))
        _double_bn(bn_o, bn_n)


def _conv_of(m: nn.Module) -> nn.Module:
    return m if isinstance(m, nd.CONVS) else next(c for c in m.modules() if isinstance(c, nd.CONVS))


def _widen_fill(stage: int) -> Callable:
    def fill(old: MacroNetwork, new: MacroNetwork, gen: torch.Generator) -> None:
        last = stage == len(old.stages) - 1

        def touched(name: str) -> bool:
            where = _stage_of(name)
            if where is not None and (
                where[0] == stage or (where[0] == stage + 1 and where[1] == 0)
            ):
                return True
            return last and name.startswith("classifier.weight")

        _copy_matching(old, new, skip=touched)
        for j, (b_old, b_new) in enumerate(zip(old.stages[stage], new.stages[stage], strict=True)):
            _widen_block(b_old, b_new, j == 0, gen)
        if last:
            new.classifier.weight.copy_(_split_in(old.classifier.weight, gen))
            return
        b_old, b_new = old.stages[stage + 1][0], new.stages[stage + 1][0]
        _copy_shape_safe(b_old, b_new)  # all but the layers that read the doubled channels
        first_old = next(m for m in b_old.branch if isinstance(m, nd.CONVS))
        first_new = next(m for m in b_new.branch if isinstance(m, nd.CONVS))
        first_new.weight.copy_(_split_in(first_old.weight, gen))
        _conv_of(b_new.shortcut).weight.copy_(_split_in(_conv_of(b_old.shortcut).weight, gen))

    return fill


def _copy_shape_safe(old: nn.Module, new: nn.Module) -> None:
    """Copy the tensors whose shapes did not change."""
    target = new.state_dict()
    for name, value in old.state_dict().items():
        if name in target and target[name].shape == value.shape:
            target[name].copy_(value)


# ----------------------------------------------------------------------------- listing


def _projects(arch: MacroArch, stage: int, input_hw, widths: dict[int, int]) -> bool:
    """Whether stage ``stage``'s first block has a projection shortcut (a stride or a change of
    width), given per-stage widths ``widths`` (the stem's is key -1)."""
    probe = stage_strides(arch, input_hw)
    before = widths[stage - 1]
    return probe[stage] != 1 or before != widths[stage]


def morphs(arch: MacroArch, own, input_hw) -> list[Morph]:
    """The morphisms that take ``arch`` to an architecture within the options of the space's
    settings ``own`` (`scinas.spaces.macro_network.options`) for inputs of ``input_hw``."""
    opts = options(own)
    out: list[Morph] = []
    widths = {-1: arch.stem, **{i: st.width for i, st in enumerate(arch.stages)}}
    for i, st in enumerate(arch.stages):
        stages = list(arch.stages)
        if st.depth + 1 in opts["depths"]:
            stages[i] = replace(st, depth=st.depth + 1)
            out.append(
                Morph(
                    f"deepen stage {i + 1}",
                    arch,
                    MacroArch(arch.stem, tuple(stages)),
                    _deepen_fill(i),
                )
            )
        bigger = [k for k in opts["kernels"] if k > st.kernel]
        if bigger:
            k = min(bigger)
            stages = list(arch.stages)
            stages[i] = replace(st, kernel=k)
            out.append(
                Morph(
                    f"kernel {k}x{k} in stage {i + 1}",
                    arch,
                    MacroArch(arch.stem, tuple(stages)),
                    _kernel_fill(i, k),
                )
            )
        wide = st.width * 2
        divisible = st.block == "basic" or (st.width // st.expansion) * 2 == wide // st.expansion
        if (
            wide in opts["widths"]
            and st.block in ("basic", "bottleneck")
            and not st.se
            and divisible
        ):
            new_widths = {**widths, i: wide}
            ok = _projects(arch, i, input_hw, widths) and _projects(arch, i, input_hw, new_widths)
            if i + 1 < len(arch.stages):
                ok = ok and _projects(arch, i + 1, input_hw, widths)
                ok = ok and _projects(arch, i + 1, input_hw, new_widths)
            if ok:
                stages = list(arch.stages)
                stages[i] = replace(st, width=wide)
                out.append(
                    Morph(
                        f"widen stage {i + 1} to {wide}",
                        arch,
                        MacroArch(arch.stem, tuple(stages)),
                        _widen_fill(i),
                    )
                )
    return out
