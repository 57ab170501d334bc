"""Everything a verb checks before it writes anything: the space can build networks of the
configured sizes for this data, the strategy can run (its storage opens, its time budget buys
steps), and the final network fits the training budget.

A time-budget plan measured here is kept in ``s.plans`` and reused by the phase it plans.
"""

from __future__ import annotations

from .fit import plan_training, subset
from .spaces import SPACES, space_of
from .strategies import SearchContext, create_strategy


def check_search(s: SearchContext) -> None:
    """The search section can run on this data (UserError otherwise)."""
    sc = s.cfg.search
    SPACES.get(sc.space).check_search_sizes(sc, s.data.input_shape)
    create_strategy(sc.strategy).preflight(s)


def check_train(s: SearchContext, arch=None) -> None:
    """The final network can be built and trained; ``arch`` None: the one the search will find
    (its space checks the sizes it can, and a stand-in architecture plans the time budget)."""
    t = s.cfg.train
    space = space_of(arch) if arch is not None else SPACES.get(s.cfg.search.space)
    space.check_network(arch, t, s.data.input_shape)
    if t.time_budget is not None:
        # A budget too small to train anything fails here, before anything is written. Before a
        # search the architecture is unknown: the space's stand-in (DARTS_V2 in the DARTS space)
        # is timed instead, and the real plan follows the search.
        n = len(subset(s.data.train.x, s.data.train.y, t.max_samples, s.cfg.seed)[0])
        if arch is not None:
            if "train" not in s.plans:
                s.plans["train"] = plan_training(s, arch, t, n)
        elif (stand_in := space.planning_stand_in()) is not None:
            plan_training(s, stand_in, t, n)
