"""The recommended search for a dataset and a budget: what `scinas compare` runs as the method
``scinas`` (and, with the architecture fixed, as ``hpo``), and what README tells a new user to run
when the question is "is there a better network than the ones people design, at the same
compute?".

It is a lineage search (`scinas.strategies.lineage`) in the macro space, which holds the
hand-designed ResNets: it starts from ``macro:resnet_tiny`` with the train section's recipe and
trains it; challengers branch off it by function-preserving architecture changes or by changes
of the training recipe, and replace it only when better beyond the noise of their evaluation. The
network it ends with keeps training from its weights for the rest of the budget, so the compute
spent on it in the search is not thrown away; when no challenger wins, the search stops after
``search.patience`` of them in a row, and the result is the start network trained for the budget
less those challengers' compute.

``macro_evolution`` is the previous recommendation (regularised evolution with ASHA over the same
space), kept for the benchmarks that measure candidate costs.
"""

from __future__ import annotations

from .config import Config
from .spaces.baselines import RESNET_TINY_WIDTHS
from .strategies.blackbox import EvolutionSettings

SEARCH_SHARE = 0.5  # of compare.budget, searching (the incumbent trains in it); the rest goes on
EVOLUTION_SHARE = 0.4  # macro_evolution's: its candidates train from scratch
START_FROM = ["macro:resnet_tiny"]
# series: Wang et al. 2017's ResNet, the standard deep baseline for series classification; at
# 120 s on GunPoint it tested 0.983 against the macro resnet_tiny's 0.937 (benchmarks/results)
SERIES_START = ["resnet1d"]
CANDIDATES = 10  # without a budget; with one, as many as its search share allows
POPULATION = EvolutionSettings.model_fields["population"].default


def recommended(cfg: Config, *, architecture: bool = True, series: bool = False) -> Config:
    """``cfg`` with the recommended search filled in: a lineage from ``START_FROM`` that searches
    the architecture (unless ``architecture`` is false: the method ``hpo``) and the training
    recipe; with ``compare.budget`` its search time is ``SEARCH_SHARE`` of it. On ``series``
    (samples C×L) the lineage starts from ``SERIES_START`` in the baseline space and searches
    the recipe: the hand-designed series network has no function-preserving changes yet."""
    tree = cfg.model_dump()
    search = tree["search"]
    if series:
        search.update(
            strategy="lineage",
            space="baseline",
            start_from=SERIES_START,
            morph=False,
            recipe=True,
        )
        return _budgeted(tree)
    search.update(
        strategy="lineage",
        space="macro",
        start_from=START_FROM,
        morph=architecture,
        recipe=True,
        widths=[16, 32, 64, 128],
        depths=[0, 1, 2, 3],
        blocks=["basic", "bottleneck"],
        kernels=[3, 5, 7],
        dilations=[1],
        expansions=[1, 2, 4],
        se=[False],
    )
    return _budgeted(tree)


def _budgeted(tree: dict) -> Config:
    budget = tree["compare"]["budget"]
    if budget is not None:
        tree["search"]["time_budget"] = budget * SEARCH_SHARE
        tree["train"]["time_budget"] = budget * (1 - SEARCH_SHARE)
    return Config.model_validate(tree)


def macro_evolution(cfg: Config) -> Config:
    """``cfg`` with the previous recommendation: regularised evolution with ASHA over the macro
    space from ``START_FROM``; with ``compare.budget`` its search time is ``EVOLUTION_SHARE``."""
    tree = cfg.model_dump()
    search = tree["search"]
    search.update(
        strategy="evolution",
        space="macro",
        budget=CANDIDATES if tree["compare"]["budget"] is None else 10_000,
        start_from=START_FROM,
        pruner="asha",
        eval_epochs=3,
        min_epochs=1,
        reduction_factor=3,
        continue_winner=True,
        # searching pays only past evolution's first population: fewer candidates than that
        # in the time left, and the start network trains instead
        min_candidates=POPULATION - len(START_FROM),
        # around the start: networks that cost a few times resnet_tiny at most, so that at a
        # small budget a candidate's epochs stay short and the winner gets its epochs too
        widths=list(RESNET_TINY_WIDTHS),
        depths=[0, 1, 2],
        blocks=["basic", "bottleneck"],
        kernels=[3, 5],
        dilations=[1],
        expansions=[1, 2, 4],
        se=[False, True],
    )
    budget = tree["compare"]["budget"]
    if budget is not None:
        search["time_budget"] = budget * EVOLUTION_SHARE
        tree["train"]["time_budget"] = budget * (1 - EVOLUTION_SHARE)
    return Config.model_validate(tree)
