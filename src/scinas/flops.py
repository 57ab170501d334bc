"""Parameter and FLOP counts of a network for one input sample."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass on one (C, H, W) sample in eval mode (auxiliary head off).

    Counted by torch's FlopCounterMode: convolutions and matmuls, 2 FLOPs per multiply-add,
    grouped/depthwise convolutions at their true cost. Halve it for the "multiply-adds" that many
    NAS papers call FLOPs.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_shape, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def count_parameters(model: nn.Module, *, exclude_auxiliary: bool = True) -> int:
    """Trainable parameters; the auxiliary head (training-only) is left out, as DARTS reports."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.requires_grad and not (exclude_auxiliary and "auxiliary" in name)
    )
