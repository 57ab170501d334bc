"""DrNAS (Chen et al., ICLR 2021): differentiable search with a Dirichlet relaxation.

Each edge's op weights are not the softmax of its alphas but a sample of a Dirichlet
distribution whose concentrations are elu(alpha) + 1 (positive, 1 at alpha = 0). A weight step
and an architecture step each draw a fresh sample (`torch.distributions.Dirichlet.rsample`:
pathwise, so the architecture loss has a gradient with respect to the concentrations); the
supernet is scored, and the cell derived, on the Dirichlet mean conc / sum(conc). The sampling
noise makes the search explore and smooths the loss landscape the alphas see, which is how
DrNAS avoids DARTS' drift to parameter-free cells (94.36 on NAS-Bench-201's CIFAR-10, against
DARTS' 54.30).

The architecture loss adds ``search.kl_weight`` times the KL divergence between each edge's
Dirichlet and an anchor Dirichlet(``search.prior``) (the paper's regulariser, keeping the
concentrations from growing without bound), on top of what every strategy with alphas may add
(`scinas.strategies.regularisers`). Alphas: Adam as in DARTS, first order, at the shared
``search.arch_lr`` (the paper used 6e-4 on CIFAR-10: set it so). Not implemented: the
paper's progressive learning (partial channels that widen as ops are pruned); progressive
pruning itself is available to every such strategy (``search.prune_threshold``).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..run_context import SearchContext
from .base import STRATEGIES
from .darts import GradientStrategy
from .oneshot_settings import ArchSettings


class DrnasSettings(ArchSettings):
    kl_weight: float = Field(
        1e-3,
        description="weight of KL(Dirichlet(elu(alpha)+1) || Dirichlet(prior)) in the "
        "architecture loss (DrNAS: 1e-3); 0: off",
    )
    prior: float = Field(
        1.0, gt=0, description="concentration of the anchor Dirichlet of the KL term"
    )

    @field_validator("kl_weight")
    @classmethod
    def _kl(cls, v: float) -> float:
        if v != v or v < 0 or v == float("inf"):
            raise ValueError(
                f"search.kl_weight must be a finite weight >= 0 (0 turns it off), got {v}"
            )
        return v


@STRATEGIES.decorator("drnas")
class DrnasStrategy(GradientStrategy):
    """Dirichlet-sampled op weights on every edge; the cell from the Dirichlet mean."""

    sampling = "dirichlet"

    name = "drnas"
    description = (
        "DrNAS: each edge's op weights sampled from Dirichlet(elu(alpha)+1), a KL anchor on the "
        "concentrations"
    )
    Settings = DrnasSettings
    bn_from_training = True  # every op sees every batch (every Dirichlet share is positive)
    derive_kinds = ("top", "ranks", "threshold", "supernet")

    def describe(self, ctx: SearchContext) -> str:
        s = ctx.cfg.search
        return f"DrNAS, KL weight {s.kl_weight:g} to Dirichlet({s.prior:g})"

    def penalty_options(self, ctx: SearchContext) -> dict:
        return {"kl_weight": ctx.cfg.search.kl_weight, "prior": ctx.cfg.search.prior}
