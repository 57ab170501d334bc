"""The lineage search's settings (`scinas.strategies.lineage`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..bounds import MAX_CANDIDATES, MAX_SAMPLES, MAX_STEPS
from .base import StrategySettings
from .branch import RECIPE_DIMS, RecipeDim


class LineageSettings(StrategySettings):
    start_from: list[str] | None = Field(
        None,
        description="the architecture the lineage starts from, e.g. macro:resnet_tiny (None: the "
        "space's stand-in network, else a seeded random one)",
    )
    budget: int = Field(
        20, ge=1, le=MAX_CANDIDATES, description="most challengers tried (a time budget may end it)"
    )
    patience: int | None = Field(
        2,
        ge=1,
        le=MAX_CANDIDATES,
        description="after this many challengers in a row not accepted, the search stops (in "
        "scinas compare, whose one budget covers everything, its time left goes to the final "
        "training); None: challengers until the budget ends",
    )
    wait_for_plateau: bool = Field(
        True,
        description="a challenger is tried only after a segment in which the incumbent's own "
        "paired validation gain was within one standard error of none; while it still gains, "
        "its segments buy more than a challenger's, and the search trains it on",
    )
    noise_z: float = Field(
        2.0,
        gt=0,
        le=10,
        description="a challenger replaces the incumbent when its paired validation advantage "
        "exceeds this many standard errors",
    )
    scores: Literal["auto", "metric", "proper"] = Field(
        "auto",
        description="what a decision pairs on each validation sample: metric, the primary "
        "metric's own score (for classification right or wrong); proper, a proper scoring rule "
        "of the same predictions (for classification minus the Brier score, which separates "
        "networks whose predicted classes agree; elsewhere minus the loss, as metric); auto, "
        "proper where right-or-wrong scores could not accept an advantage under one point "
        "(fewer than 100 x noise_z^2 validation samples: 400 at the default), else metric",
    )
    decision_val: int | None = Field(
        2000,
        ge=2,
        le=MAX_SAMPLES,
        description="validation samples the decisions pair over: a stratified subsample of the "
        "whole validation split (all of it where it holds fewer), which data.max_val caps only "
        "for the per-epoch scoring (a decision scores twice a segment, so more samples cost "
        "little, and the noise halves per four times as many); None: the split data.max_val "
        "leaves",
    )
    morph: bool = Field(
        True,
        description="challengers may change the architecture, in spaces with function-preserving "
        "transformations (macro)",
    )
    recipe: bool = Field(True, description="challengers may change the training recipe")
    recipe_dims: list[RecipeDim] = Field(
        list(RECIPE_DIMS),
        min_length=1,
        description="the recipe's settings challengers may change (leave one out to fix it at "
        "its train.* value): " + ", ".join(RECIPE_DIMS),
    )
    weaken: bool = Field(
        False,
        description="recipe challengers may also regularise less (augmentation none, less weight "
        "decay or label smoothing): such changes win at a segment's horizon and can lose over the "
        "rest of the training (short-horizon bias)",
    )
    symmetries: bool = Field(
        True,
        description="after the start's first segment, test which mirrors and quarter turns "
        "keep the labels (the network's validation loss on the transformed images rises by "
        "less than a fifth of its margin over a constant output; `scinas.symmetry`); those "
        "found choose the augmentation (when augment is in recipe_dims) and, where the trained "
        "network confirms them, become test-time views (train.tta)",
    )
    max_cost: float = Field(
        3.0,
        ge=1,
        le=1000,
        description="architecture challengers cost at most this many times the start network's "
        "FLOPs per sample, so the rest of the budget still trains them",
    )
    continue_winner: bool = Field(
        True,
        description="the final training goes on from the incumbent's weights (false: retrain "
        "the chosen network and recipe from scratch)",
    )
    segment_steps: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="training steps per segment (None: from the time budget, at least the steps "
        "the start takes to score above chance)",
    )
