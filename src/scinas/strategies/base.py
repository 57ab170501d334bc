"""The strategy interface and its registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from pydantic import BaseModel, ConfigDict

from ..registry import STRATEGIES
from ..run_context import SearchContext

if TYPE_CHECKING:
    from ..spaces.darts.genotype import Genotype


@dataclass
class SearchResult:
    genotype: Genotype
    history: list[dict] = field(default_factory=list)
    model: torch.nn.Module | None = None  # the trained supernet, for one-shot strategies
    val_metrics: dict | None = None  # the supernet's final validation metrics
    seconds: float = 0.0
    # how the run ends (`scinas.pipeline.ENDINGS`): "retrain" the architecture; "supernet": the
    # trained supernet is the final model (search.derive=supernet); "elsewhere": another worker
    # of a shared study runs the final retrain
    ending: str = "retrain"
    recipe: dict | None = None  # train-section fields the search chose (`strategies.lineage`)


class Strategy(Protocol):
    def search(self, ctx: SearchContext) -> SearchResult: ...


class StrategySettings(BaseModel):
    """A strategy's own settings, set as ``search.KEY``; subclasses add fields (with
    descriptions: `scinas strategies` shows them) and their cross-field checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def proxy_plan(self) -> tuple[tuple[str, ...], int, int] | None:
        """(zero-cost proxy names, pool size, how many of the pool to use) when the search
        scores architectures by a proxy (`scinas.strategies.warmstart`), else None."""
        return None

    @property
    def continues_winner(self) -> bool:
        """Whether the final training starts from the search's winner's weights (winner.pt).
        Settings with a ``continue_winner`` field (lineage's) keep the winner when it is on."""
        if "continue_winner" in type(self).model_fields:
            return bool(self.continue_winner)
        return False

    @property
    def second_order(self) -> bool:
        """Whether the architecture step differentiates through a weight step (DARTS' second
        order; the memory estimates count its extra state)."""
        return False

    @property
    def returns_earlier_epoch(self) -> bool:
        """Whether the search may return an earlier epoch's cell than its last (the config
        refuses that with a model built from the last epoch's supernet)."""
        return False


class SearchStrategy:
    """What every strategy shares: its name, its settings, and the check that it can search a
    space."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "one-shot" | "black-box" | ..., for listings
    # the space searched when the user names none (None: the config's default, darts)
    default_space: ClassVar[str | None] = None
    description: ClassVar[str] = ""  # one line for `scinas strategies`
    Settings: ClassVar[type[StrategySettings]] = StrategySettings
    # derivation rules (`scinas.spaces.darts.genotype.DeriveRule` kinds) this strategy can apply
    # to its supernet's alphas; top2 is always allowed
    derive_kinds: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_search(cls, s, space) -> None:
        """Refuse (ValueError) a search section this strategy cannot run in ``space``."""
        check_derive(s, cls.derive_kinds)

    def preflight(self, ctx: SearchContext) -> None:
        """Check, before anything is written, that this search can run on the context's data
        (UserError otherwise); plans made here go into ``ctx.plans``."""


def check_derive(s, derive_kinds: tuple[str, ...]) -> None:
    """``search.derive`` must be top2 or a rule kind the strategy can apply."""
    if s.derive.strip() == "top2":
        return
    from ..spaces.darts.genotype import DeriveRule

    rule = DeriveRule.parse(s.derive)
    if str(rule) != "top2" and rule.kind not in derive_kinds:
        able = [n for n in STRATEGIES if rule.kind in STRATEGIES.get(n).derive_kinds]
        raise ValueError(
            f"search.derive={s.derive} reads the cell off the alphas of a one-shot search: it "
            f"needs strategy {' or '.join(able)} (leave it at top2)"
        )


def create_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)()
