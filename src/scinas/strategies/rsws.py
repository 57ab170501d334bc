"""Random search with weight sharing (Li & Talwalkar, UAI 2019).

The supernet trains along one uniformly random architecture per step (only that architecture's
ops run, weight 1, no architecture parameters). Then ``search.budget`` random architectures are
ranked by the supernet's validation metric along their path, and the best is returned. Every
ranked architecture is written to the run directory.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..bounds import MAX_CANDIDATES
from ..checkpoint import numpy_rng_state, set_numpy_rng_state
from ..run_context import SearchContext
from .base import STRATEGIES
from .blackbox import decision_space
from .oneshot import OneShotStrategy
from .oneshot_settings import OneShotSettings


class RswsSettings(OneShotSettings):
    budget: int = Field(
        20, ge=1, le=MAX_CANDIDATES, description="random architectures ranked on the supernet"
    )


@STRATEGIES.decorator("rsws")
class RandomSearchWeightSharing(OneShotStrategy):
    """Uniform path sampling for the weights, then ranking of random architectures."""

    name = "rsws"
    description = (
        "random search with weight sharing: random paths train the supernet, then search.budget "
        "random architectures are ranked on it"
    )
    Settings = RswsSettings
    updates_arch = False
    has_alphas = False

    def describe(self, ctx: SearchContext) -> str:
        return f"random search with weight sharing, ranking {ctx.cfg.search.budget} architectures"

    def configure(self, model, ctx: SearchContext) -> None:
        self.space = decision_space(ctx.cfg.search)
        self.rng = np.random.RandomState(ctx.cfg.seed + 7)

    def state_dict(self) -> dict:
        return {"rng": numpy_rng_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        set_numpy_rng_state(self.rng, state["rng"])

    def before_weight_step(self, model) -> None:
        model.set_arch(self.space.sample(self.rng))

    def _score(self, model, ctx, arch, val_batches) -> dict:
        model.set_arch(arch)
        try:
            return self.metrics(model, ctx, val_batches)
        finally:
            model.set_arch(None)

    def evaluate_supernet(self, model, ctx: SearchContext, val_batches) -> dict:
        """Per epoch: the supernet along one random architecture (a cheap progress signal)."""
        return self._score(model, ctx, self.space.sample(self.rng), val_batches)

    def derive(self, model, ctx: SearchContext, val_batches, last_val=None):
        s, task = ctx.cfg.search, ctx.task
        rng = np.random.RandomState(ctx.cfg.seed + 8)
        seen, ranked = set(), []
        for _ in range(50 * s.budget):
            if len(ranked) == s.budget:
                break
            arch = self.space.sample(rng)
            key = str(arch.to_dict())
            if key in seen:
                continue
            seen.add(key)
            metrics = self._score(model, ctx, arch, val_batches)
            ranked.append((arch, metrics))
            if ctx.run is not None:
                ctx.run.log_event({"event": "rsws_rank", "arch": arch.to_dict(), "val": metrics})
        sign = 1 if task.higher_is_better else -1
        arch, metrics = max(ranked, key=lambda am: sign * am[1][task.primary_metric])
        ctx.reporter.log(
            f"rsws: ranked {len(ranked)} architectures by supernet validation; best "
            f"{task.primary_metric} {metrics[task.primary_metric]:.4f}"
        )
        return arch, metrics
