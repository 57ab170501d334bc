"""Terms added to the architecture loss of a one-shot search, and their schedules.

Each has a real gradient with respect to the alphas (tests/test_robust_oneshot.py checks them
against finite differences):

- **entropy** (``search.entropy_weight``): the mean normalised entropy of each edge's op weights.
  Minimising it pushes every edge toward one op, so the derived cell is the one the supernet
  used. Unlike an L1 norm of softmax weights (always 1, so no gradient), its gradient is
  -p·(log p + H) per edge: zero only at exactly uniform or one-hot weights. With
  ``search.entropy_schedule=ramp`` its weight grows linearly over the epochs, as Beta-Decay's
  does, so the edges commit at the end of the search rather than to whichever op leads in its
  first epochs.
- **Beta-Decay** (``search.beta_decay``, β-DARTS, Ye et al. 2022): the mean over edges of
  logsumexp(alpha). Its gradient is softmax(alpha), so the strongest alphas are pulled down
  hardest: the alphas stay small and comparable, which keeps the softmax from running away to
  parameter-free ops early. Its weight ramps linearly over the epochs up to the value set.
- **Dirichlet KL** (DrNAS, Chen et al. 2021): KL(Dir(elu(alpha)+1) || Dir(prior)), the anchor
  that keeps the concentrations from growing without bound; see `scinas.strategies.drnas`.

DARTS-' auxiliary skip connection (``search.aux_skip``, Chu et al. 2021) is not a loss term but
a schedule: `aux_skip_weight`.
"""

from __future__ import annotations

import math

import torch

from ..spaces.common import dirichlet_concentration, masked_logits
from .oneshot_settings import ArchSettings


def mean_entropy(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over every edge of every cell of the normalised entropy of its op weights."""
    terms = []
    for w in weights.values():
        k = w.shape[-1]
        h = -(w * w.clamp_min(1e-12).log()).sum(-1)
        terms.append(h / math.log(k) if k > 1 else h)
    return torch.cat(terms).mean()


def beta_decay_loss(alphas: dict[str, torch.Tensor], masks: dict | None = None) -> torch.Tensor:
    """β-DARTS' Beta-Decay term: mean over edges of logsumexp of the (unpruned) alphas."""
    masks = masks or {}
    rows = [torch.logsumexp(masked_logits(a, masks.get(c)), -1) for c, a in alphas.items()]
    return torch.cat(rows).mean()


def dirichlet_kl(alphas: dict[str, torch.Tensor], prior: float) -> torch.Tensor:
    """Mean over edges of KL(Dirichlet(elu(alpha)+1) || Dirichlet(prior, ..., prior))."""
    D = torch.distributions.Dirichlet
    rows = []
    for a in alphas.values():
        conc = dirichlet_concentration(a)
        rows.append(torch.distributions.kl_divergence(D(conc), D(torch.full_like(conc, prior))))
    return torch.cat(rows).mean()


def ramp(weight: float, epoch: int, epochs: int) -> float:
    """A weight growing linearly to ``weight`` at the last epoch (β-DARTS' schedule)."""
    return weight * (epoch + 1) / max(1, epochs)


def aux_skip_weight(start: float, epoch: int, epochs: int) -> float:
    """DARTS-' auxiliary skip: ``start`` at the first epoch, falling linearly toward 0."""
    return start * (1.0 - epoch / max(1, epochs))


class ArchPenalty:
    """The regularisers a search's settings ask for, as one term of the architecture loss.

    Called with no arguments inside the architecture step, it returns the weighted sum (a
    tensor with a graph to the alphas) or None when every weight is 0; `last` keeps the parts of
    the last call for the epoch's log."""

    def __init__(
        self,
        model,
        *,
        entropy_weight: float = 0.0,
        entropy_schedule: str = "constant",
        beta_decay: float = 0.0,
        kl_weight: float = 0.0,
        prior: float = 1.0,
        epochs: int = 1,
    ):
        self.model, self.epochs = model, epochs
        self.entropy_weight, self.beta_decay = entropy_weight, beta_decay
        if entropy_schedule not in ("constant", "ramp"):
            raise ValueError(f"entropy_schedule must be constant or ramp, got {entropy_schedule!r}")
        self.entropy_schedule = entropy_schedule
        self.kl_weight, self.prior = kl_weight, prior
        self.epoch = 0
        self.last: dict[str, float] = {}

    @classmethod
    def from_settings(cls, model, s, **extra) -> ArchPenalty | None:
        own = s.own
        if not isinstance(own, ArchSettings):
            return None  # only strategies that learn alphas regularise them
        penalty = cls(
            model,
            entropy_weight=own.entropy_weight,
            entropy_schedule=own.entropy_schedule,
            beta_decay=own.beta_decay,
            epochs=s.epochs,
            **extra,
        )
        return penalty if penalty.active else None

    @property
    def active(self) -> bool:
        return bool(self.entropy_weight or self.beta_decay or self.kl_weight)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self) -> torch.Tensor | None:
        model, parts = self.model, {}
        if self.entropy_weight:
            weight = self.entropy_weight
            if self.entropy_schedule == "ramp":
                weight = ramp(weight, self.epoch, self.epochs)
            parts["entropy"] = weight * mean_entropy(model.op_weights())
        if self.beta_decay:
            weight = ramp(self.beta_decay, self.epoch, self.epochs)
            parts["beta_decay"] = weight * beta_decay_loss(model.op_alphas(), model.op_masks())
        if self.kl_weight:
            parts["dirichlet_kl"] = self.kl_weight * dirichlet_kl(model.op_alphas(), self.prior)
        if not parts:
            return None
        self.last = {k: float(v.detach()) for k, v in parts.items()}
        return sum(parts.values())
