"""The ``zero-cost`` strategy: score ``search.pool`` random architectures of the space (all of them
when the space is smaller) with ``search.proxy`` (one proxy, or ``a+b`` for the mean of their
ranks), then train the best ``search.budget`` of them as any black-box candidate is trained; the
best on validation wins. The scoring (shared with every strategy's warm start) is
`scinas.strategies.warmstart`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..bounds import MAX_CANDIDATES
from ..proxies import PROXIES, parse_combo
from .blackbox import BlackBoxSettings, register_black_box
from .samplers import UniformSampler


class ZeroCostSettings(BlackBoxSettings):
    budget: int = Field(
        5, ge=1, le=MAX_CANDIDATES, description="best-scoring architectures trained"
    )
    proxy: str = Field(
        "synflow",
        description="zero-cost proxy, or a+b (mean rank); `scinas.proxies.PROXIES`: "
        + ", ".join(PROXIES.names()),
    )
    pool: int = Field(
        200, ge=1, le=MAX_CANDIDATES, description="random architectures scored by the proxy"
    )

    def proxy_plan(self) -> tuple[tuple[str, ...], int, int] | None:
        return parse_combo(self.proxy), self.pool, self.budget

    @model_validator(mode="after")
    def _consistent(self):
        parse_combo(self.proxy)
        if self.pool < self.budget:
            raise ValueError(
                f"search.pool ({self.pool}) must be at least search.budget ({self.budget}): "
                "the trained architectures are the best of the scored pool"
            )
        if self.warm_start is not None:
            raise ValueError(
                "search.warm_start does not apply to the zero-cost strategy: it already trains "
                "the best of search.pool by search.proxy"
            )
        return self


register_black_box(
    "zero-cost",
    "score many random architectures with zero-cost proxies, train the best few",
    ZeroCostSettings,
    lambda s, seed: UniformSampler(seed=seed),
)
