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


# ---- relaxations of an edge's op choice, shared by every supernet
SAMPLING_MODES = ("softmax", "gumbel", "dirichlet")


def masked_logits(alpha: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``alpha`` with the pruned ops (``mask`` False) at -inf: no weight and no gradient."""
    if mask is None:
        return alpha
    return alpha.masked_fill(~mask, float("-inf"))


def dirichlet_concentration(alpha: torch.Tensor) -> torch.Tensor:
    """DrNAS' concentration parameters: elu(alpha) + 1, positive for every real alpha (1 at 0)."""
    return F.elu(alpha) + 1.0


def expected_weights(alpha: torch.Tensor, mask: torch.Tensor | None, sampling: str) -> torch.Tensor:
    """Each edge's op weights as the relaxation means them, (E, K), pruned ops at 0 and the rest
    renormalised: softmax(alpha) (DARTS, GDAS), or the Dirichlet mean conc / sum(conc) (DrNAS).
    Differentiable: the regularisers and the derivation read these."""
    if sampling == "dirichlet":
        conc = dirichlet_concentration(alpha)
        if mask is not None:
            conc = conc * mask
        return conc / conc.sum(-1, keepdim=True)
    return F.softmax(masked_logits(alpha, mask), dim=-1)


def mixing_weights(alpha, mask, sampling: str, tau: float, training: bool):
    """``(weights (E, K), index)`` of one forward pass: ``index`` None means every active op runs,
    weighted; otherwise edge e runs only op ``index[e]`` (GDAS' hard sample).

    ``dirichlet`` (DrNAS): in training a reparameterised sample of Dirichlet(elu(alpha) + 1)
    (`torch.distributions.Dirichlet.rsample`, so alpha gets the pathwise gradient); the pruned
    ops' shares are dropped and the rest renormalised, which is again a Dirichlet sample over the
    active ops. In evaluation the mean."""
    if sampling == "gumbel":
        hard, index = gumbel_hard(masked_logits(alpha, mask), tau)
        return hard, index
    if sampling == "dirichlet" and training and torch.is_grad_enabled():
        w = torch.distributions.Dirichlet(dirichlet_concentration(alpha)).rsample()
        if mask is not None:
            w = w * mask
            w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        return w, None
    if sampling in ("softmax", "dirichlet"):
        return expected_weights(alpha, mask, sampling), None
    raise ValueError(f"unknown supernet sampling {sampling!r} ({' | '.join(SAMPLING_MODES)})")


def active_columns(mask: torch.Tensor) -> list[list[int]]:
    """Per edge, the alpha columns still active (a Python list: no device sync per forward)."""
    return [[k for k, on in enumerate(row) if on] for row in mask.tolist()]
