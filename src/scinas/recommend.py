"""The recommended search for a dataset and a budget: what `scinas compare` runs as the method
``scinas``, and what the README tells a new user to run when the question is "is there a better
network than the ones people design, at the same compute?".

The recipe (measured in README, "Was NAS worth it?"; never chosen by the dataset's name):

* the macro space (`scinas.spaces.macro`), which holds the hand-designed ResNets: dense
  convolutions, fast per FLOP on CPUs and GPUs, unlike the cell spaces' separable ones;
* regularised evolution over it, starting from ``macro:resnet_tiny`` (the best of the
  hand-designed networks on every dataset measured), so the search begins where a careful user
  would, among networks of a few times that one's cost at most (``WIDTHS``, up to 2 blocks a
  stage, basic and bottleneck blocks, kernels 3 and 5);
* multi-fidelity: each candidate reports its validation score per epoch and ASHA stops the weak
  ones at the first rung, and every one still training when the search's time is up
  (`scinas.strategies.fidelity`);
* the winner keeps training from its checkpoint in the retraining phase instead of starting
  again, so the compute spent on it during the search is not thrown away;
* with a budget, a smaller share of it for searching than DARTS gets (``SEARCH_SHARE``): the
  final network's training is where most of the accuracy comes from at small budgets;
* a search that cannot pay stops (``search.min_candidates``, `scinas.strategies.fidelity`):
  once the start network is evaluated, if the search time left affords fewer candidates than it
  takes to get past evolution's first population (random draws), the search ends there and the
  start network takes the time as training, and the log and ``metrics.jsonl`` say so. A
  candidate's cost is the start's seconds per epoch scaled by the space's mean FLOPs over the
  start's and by the epochs ASHA lets a candidate train on average. Measured in README: at the
  tiny preset's 120 s the search kept ``resnet_tiny`` with less training time and lost to it
  (0.476 against 0.583 on the CIFAR-10 subset); at 600 s on Fashion-MNIST, with the start's
  own cost as the estimate, the search went on (56 candidates estimated, 11 afforded: they
  cost 3.4 times the start per epoch and trained 2.1 epochs on average), and its winners
  (0.878) lost to ``resnet_tiny`` trained for the whole budget (0.902); the scaled estimate
  says 7 and 4 there (it overestimates by 1.3-1.9x), so that search would stop.
"""

from __future__ import annotations

from .config import Config
from .strategies.blackbox import EvolutionSettings

SEARCH_SHARE = 0.4  # of compare.budget, searching; the rest trains the winner on
START_FROM = ["macro:resnet_tiny"]
WIDTHS = (16, 32, 64)
CANDIDATES = 10  # without a budget; with one, as many as its search share allows
POPULATION = EvolutionSettings.model_fields["population"].default


def recommended(cfg: Config) -> Config:
    """``cfg`` with the recommended search strategy, space and settings filled in; with
    ``compare.budget`` its search time is ``SEARCH_SHARE`` of it."""
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
        widths=list(WIDTHS),
        depths=[0, 1, 2],
        blocks=["basic", "bottleneck"],
        kernels=[3, 5],
        dilations=[1],
        expansions=[1, 2, 4],
        se=[False, True],
    )
    budget = tree["compare"]["budget"]
    if budget is not None:
        search["time_budget"] = budget * SEARCH_SHARE
        tree["train"]["time_budget"] = budget * (1 - SEARCH_SHARE)
    return Config.model_validate(tree)
