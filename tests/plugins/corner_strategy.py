"""A throwaway strategy in one file (tests/test_one_file.py imports it): the architecture at a
corner of the space, every decision's first (or last) choice, with no search at all."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from scinas.registry import SPACES, STRATEGIES
from scinas.strategies.base import SearchResult, SearchStrategy, StrategySettings


class CornerSettings(StrategySettings):
    corner: Literal["first", "last"] = Field("first", description="each decision's choice")


@STRATEGIES.decorator("corner")
class Corner(SearchStrategy):
    name = "corner"
    kind = "black-box"
    description = "every decision's first or last choice (a test's throwaway strategy)"
    Settings = CornerSettings

    @classmethod
    def check_search(cls, s, space) -> None:
        super().check_search(s, space)
        space.decisions(s)  # a space without decisions is refused here, with its own message

    def search(self, ctx) -> SearchResult:
        t0 = time.perf_counter()
        s = ctx.cfg.search
        decisions = SPACES.get(s.space).decisions(s)
        pick = 0 if s.own.corner == "first" else -1
        arch = decisions.decode({name: choices[pick] for name, choices in decisions.decisions})
        ctx.reporter.log(f"corner: the {s.own.corner} choice of every decision: {arch}")
        return SearchResult(genotype=arch, seconds=time.perf_counter() - t0)
