"""Pieces every space's networks share: how far an input can be halved, and GDAS' sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def max_reductions(height: int, width: int) -> int:
    """How many times the feature map can be halved (ceil) while staying at least 2×2."""
    side, count = min(height, width), 0
    while (side + 1) // 2 >= 2:
        side, count = (side + 1) // 2, count + 1
    return count


def min_side_for(reductions: int) -> int:
    side = 2
    while max_reductions(side, side) < reductions:
        side += 1
    return side


def gumbel_hard(alpha: torch.Tensor, tau: float, generator=None):
    """GDAS sampling: one op per edge from Gumbel-softmax(log_softmax(alpha), tau), hard.

    Returns ``(weights, index)``: ``index`` (E,) the sampled op of each edge, ``weights`` (E, K) the
    straight-through one-hot (value exactly one-hot, gradient that of the soft sample), so an edge
    computes only ``weights[e, index[e]] * op_index(x)`` and alpha still gets a gradient.
    """
    log_p = F.log_softmax(alpha, dim=-1)
    u = torch.rand(alpha.shape, generator=generator, device=alpha.device, dtype=alpha.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    soft = F.softmax((log_p + gumbel) / tau, dim=-1)
    index = soft.argmax(dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return hard - soft.detach() + soft, index
