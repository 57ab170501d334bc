"""GDAS (Dong & Yang, CVPR 2019): gradient-based search by differentiable architecture sampling.

Each forward pass draws one op per edge from a hard Gumbel-softmax over the edge's alphas and runs
only that op (`scinas.supernet.gumbel_hard`): the value is exactly one-hot, the gradient is that of
the soft sample (straight-through), so a search step costs about one discrete network instead of
the whole supernet. The temperature falls linearly from ``search.tau_max`` (10) to
``search.tau_min`` (0.1) over the epochs. Weights and alphas alternate as in first-order DARTS
(Adam on the alphas, on the architecture half of the data).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..run_context import SearchContext
from .base import STRATEGIES
from .darts import GradientStrategy
from .oneshot_settings import ArchSettings


def temperature(epoch: int, epochs: int, tau_max: float, tau_min: float) -> float:
    """Linear annealing from tau_max (first epoch) to tau_min (last epoch)."""
    if epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * epoch / (epochs - 1)


class GdasSettings(ArchSettings):
    tau_max: float = Field(10.0, gt=0, description="Gumbel temperature at the first epoch")
    tau_min: float = Field(0.1, gt=0, description="Gumbel temperature at the last epoch")

    @model_validator(mode="after")
    def _falling(self):
        if self.tau_min > self.tau_max:
            raise ValueError(f"search.tau_min ({self.tau_min}) exceeds tau_max ({self.tau_max})")
        return self


@STRATEGIES.decorator("gdas")
class GdasStrategy(GradientStrategy):
    """One sampled op per edge per step (hard Gumbel-softmax, straight-through gradient)."""

    sampling = "gumbel"

    name = "gdas"
    description = (
        "GDAS: one op per edge sampled by hard Gumbel-softmax, temperature tau_max -> tau_min"
    )
    Settings = GdasSettings
    # thresholds and keeping the supernet need a continuous mixture: GDAS scores its supernet
    # along one op per edge
    derive_kinds = ("top", "ranks")

    def describe(self, ctx: SearchContext) -> str:
        s = ctx.cfg.search
        return f"GDAS, tau {s.tau_max:g} -> {s.tau_min:g}"

    def begin_epoch(self, model, epoch: int, ctx: SearchContext) -> None:
        s = ctx.cfg.search
        model.tau = temperature(epoch, s.epochs, s.tau_max, s.tau_min)

    def evaluate_supernet(self, model, ctx: SearchContext, val_batches) -> dict:
        """The supernet along the currently derived architecture (not a random sample)."""
        model.set_arch(model.genotype())
        try:
            return self.metrics(model, ctx, val_batches)
        finally:
            model.set_arch(None)
