"""The settings every one-shot strategy shares (`OneShotSettings`: the supernet's weight training)
and those of the ones that learn architecture weights (`ArchSettings`)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..bounds import MAX_EPOCHS, MAX_STEPS
from ..rates import AUTO, LearningRate, is_auto
from .base import StrategySettings


def _lower(value):
    return value.strip().lower() if isinstance(value, str) else value


class OneShotSettings(StrategySettings):
    """What every one-shot strategy trains its supernet weights with."""

    epochs: int = Field(50, ge=1, le=MAX_EPOCHS, description="search epochs")
    lr: LearningRate = Field(
        0.025,
        description="weight learning rate (SGD, cosine schedule), or auto: found by a range test "
        "on the training data before the search (scinas.lr_finder)",
    )
    lr_min: float | None = Field(
        0.001,
        ge=0,
        description="learning rate at the end of the schedule (with lr=auto, unless given: lr/25)",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum of the weights")
    weight_decay: float = Field(3e-4, ge=0, description="L2 weight decay of the weights")
    grad_clip: float = Field(5.0, gt=0, description="gradient-norm clip of the weights")
    train_portion: float = Field(
        0.5, gt=0, lt=1, description="share of the training split for the weights"
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        le=MAX_EPOCHS,
        description="epochs of weight-only training before the architecture moves",
    )
    steps_per_epoch: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="cap on steps per epoch (None: the whole split)"
    )

    @model_validator(mode="before")
    @classmethod
    def _auto_defaults(cls, data):
        """With lr=auto, the settings scaled by it and not given follow it: lr_min (None until
        the range test sets it to lr/25), arch_lr (auto) where the strategy has one."""
        if isinstance(data, dict) and is_auto(_lower(data.get("lr"))):
            data = {"lr_min": None, **data}
            if "arch_lr" in cls.model_fields:
                data = {"arch_lr": AUTO, **data}
        return data

    @model_validator(mode="after")
    def _auto_lr_floor(self):
        if self.lr == AUTO and self.lr_min:
            raise ValueError(
                f"search.lr=auto finds the peak learning rate on the data, but search.lr_min="
                f"{self.lr_min:g} is an absolute rate the found one may lie below, so the "
                "schedule would climb instead of anneal. With lr=auto leave search.lr_min unset "
                "(it is then lr/25) or 0, or give search.lr as a number"
            )
        return self


class ArchSettings(OneShotSettings):
    """One-shot strategies that learn architecture weights (alphas) by gradient."""

    arch_lr: LearningRate = Field(
        3e-4,
        description="alpha learning rate (Adam), or auto: as far as the alphas may travel over "
        "the search's architecture steps (scinas.lr_finder); auto with lr=auto unless given",
    )
    arch_weight_decay: float = Field(1e-3, ge=0, description="alpha weight decay")
    arch_lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="the alpha learning rate over the search: constant (DARTS), or cosine: "
        "scaled by the weights' rate over its peak (search.lr), so the alphas settle as the "
        "weights do; with arch_lr=auto its peak is raised so the alphas may travel as far",
    )
    # robust one-shot search (scinas.strategies.regularisers, scinas.strategies.pruning)
    entropy_weight: float = Field(
        0.0,
        description="weight of the mean edge entropy in the architecture loss: pushes each edge "
        "toward one op (sparsity with a real gradient); 0: off",
    )
    entropy_schedule: Literal["constant", "ramp"] = Field(
        "constant",
        description="the entropy weight over the search: constant, or ramp: growing linearly to "
        "entropy_weight at the last epoch (as beta_decay), so edges commit at the end",
    )
    beta_decay: float = Field(
        0.0,
        description="beta-DARTS: weight of the Beta-Decay term (mean logsumexp of each edge's "
        "alphas), ramped linearly to this value over the epochs; 0: off",
    )
    aux_skip: float = Field(
        0.0,
        description="DARTS-: weight of an auxiliary skip connection on every stride-1 edge, "
        "times 1 - e/epochs in epoch e (from 0; 1/epochs in the last) (DARTS- uses 1); 0: off",
    )
    prune_threshold: float | None = Field(
        None,
        description="progressive pruning: an op whose weight on its edge stays below this share "
        "(in (0, 1), e.g. 0.05) for prune_patience epochs is removed and no longer computed; "
        "None: off",
    )
    prune_patience: int = Field(
        2,
        ge=1,
        le=MAX_EPOCHS,
        description="epochs an op must stay below prune_threshold before it is removed",
    )
    select_epoch: Literal["last", "best_val"] = Field(
        "last",
        description="the cell returned: the last epoch's, or best_val: the one derived at the "
        "epoch whose supernet had the lowest validation loss (early stopping: a supernet that "
        "overfits its weight half drifts to parameter-free ops, see select_best_val_epoch)",
    )
    greedy_decisions: bool = Field(
        False,
        description="SGAS-style: an edge whose strongest op has twice the weight of each other "
        "is decided at once (its other ops are removed)",
    )

    @property
    def returns_earlier_epoch(self) -> bool:
        return self.select_epoch != "last"

    @field_validator("entropy_weight", "beta_decay", "aux_skip")
    @classmethod
    def _weight(cls, v: float, info) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError(
                f"search.{info.field_name} must be a finite weight >= 0 (0 turns it off), got {v}"
            )
        return v

    @field_validator("prune_threshold")
    @classmethod
    def _threshold(cls, v: float | None) -> float | None:
        if v is not None and not (0 < v < 1):
            raise ValueError(
                f"search.prune_threshold must lie strictly between 0 and 1 (an op's share of "
                f"its edge's weight, e.g. 0.05), got {v}; leave it unset to turn pruning off"
            )
        return v
