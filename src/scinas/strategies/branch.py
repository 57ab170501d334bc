"""A lineage's branches (`scinas.strategies.lineage`): the recipe a network trains with, a
network in training with its weight average, the one-change recipe moves, the paired
statistic that judges a challenger against the incumbent, and where a lineage stands after a
round."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch

from ..data.augment_series import SERIES_EFFECTS, series_effect
from ..evaluation import paired  # noqa: F401  (the lineage's noise rule)
from ..train import make_optimizer

AUGMENTS = ("none", "default", "natural", "rotation")
ADAMW_LR, ADAMW_WD = 2e-3, 0.05  # a rate and decay in AdamW's usual range for small networks
# tried before the other moves: at small budgets the rate and the augmentation move results most
FIRST_DIMS = frozenset({"lr", "optimizer", "augment"})
EARLY_MARGIN = 2.0  # a change favoured early (`favoured_early`) wins by twice the margin
RESOLUTION = 0.01  # the smallest advantage a decision should be able to accept: one point
AVERAGE_OVER = 3.0  # a branch is scored at its weights averaged over about 1/3 of a segment

RECIPE_DIMS = ("lr", "optimizer", "weight_decay", "batch_size", "label_smoothing", "augment")
RecipeDim = Literal["lr", "optimizer", "weight_decay", "batch_size", "label_smoothing", "augment"]


@dataclass(frozen=True)
class Recipe:
    """What a network trains with (the train section's fields of the same names)."""

    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    label_smoothing: float
    augment: str

    @classmethod
    def of(cls, t) -> Recipe:
        return cls(
            t.optimizer,
            float(t.lr),
            t.momentum,
            t.weight_decay,
            t.batch_size,
            t.label_smoothing,
            "default" if t.augment == "auto" else t.augment,  # the lineage probes itself
        )

    def changes(self, t) -> dict:
        """The train-section fields this recipe changes."""
        return {k: v for k, v in asdict(self).items() if getattr(t, k) != v}


@dataclass
class Branch:
    """A network in training: its architecture, weights, optimiser and recipe."""

    arch: object
    net: torch.nn.Module
    recipe: Recipe
    optimizer: torch.optim.Optimizer
    steps: int = 0  # optimiser steps taken in the lineage
    average: WeightAverage | None = None  # this segment's average of the weights, when scored
    pace: float | None = None  # seconds per step of its last training

    def fork(self) -> Branch:
        net = copy.deepcopy(self.net)
        opt = make_optimizer(net.parameters(), **opt_args(self.recipe))
        opt.load_state_dict(self.optimizer.state_dict())
        return Branch(self.arch, net, self.recipe, opt, self.steps)


class WeightAverage:
    """An exponential moving average of a network's weights and buffers over one segment.

    At a constant learning rate a snapshot's validation score swings from step to step (on
    Fashion-MNIST at lr 0.1: 0.19, 0.46, 0.65, 0.59 in consecutive segments), so a challenger
    scored at a lucky moment would win on noise no per-sample test sees. Branches are scored at
    their average over the segment's last steps instead (Polyak averaging; SWA, Izmailov et al.
    2018), which also stands for the annealed network the final training makes.
    """

    def __init__(self, net: torch.nn.Module, steps: int):
        self.net = copy.deepcopy(net)
        self.rate = min(1.0, AVERAGE_OVER / max(1, steps))  # weight of each new step
        self._ema = [t for t in self.net.state_dict().values() if t.is_floating_point()]
        self._src = [t for t in net.state_dict().values() if t.is_floating_point()]
        self._int = [
            (a, b)
            for a, b in zip(self.net.state_dict().values(), net.state_dict().values(), strict=True)
            if not a.is_floating_point()
        ]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._ema, self._src, self.rate)
        for a, b in self._int:  # step counters follow the network
            a.copy_(b)


def opt_args(r: Recipe) -> dict:
    return {"name": r.optimizer, "lr": r.lr, "momentum": r.momentum, "weight_decay": r.weight_decay}


def weakens(r: Recipe, move: Recipe) -> bool:
    """Whether ``move`` regularises less than ``r``: no augmentation, less weight decay (same
    optimizer), less label smoothing. Such a change wins at a segment's horizon, where fitting
    the training data faster shows, and loses over a long training, where overfitting does
    (short-horizon bias, Wu et al. 2018): on the CIFAR-10 subset at 600 s, "augment none" won a
    round by 3 standard errors and the run then tested 0.63 against 0.70 for its start."""
    return (
        (move.augment == "none" and r.augment != "none")
        or (move.optimizer == r.optimizer and move.weight_decay < r.weight_decay)
        or move.label_smoothing < r.label_smoothing
    )


def favoured_early(r: Recipe, move) -> bool:
    """Whether ``move`` switches from SGD to an adaptive optimizer. Adaptive methods gain early
    and generalise worse over a long training (Wilson et al. 2017): on Fashion-MNIST at 120 s
    "optimizer sgd -> adamw" won a round by 2.4 standard errors and its run then tested 0.856
    against 0.880 for `hpo` on the same seed, which kept SGD. Such a change must win by
    `EARLY_MARGIN` times the usual margin."""
    return isinstance(move, Recipe) and r.optimizer == "sgd" and move.optimizer != "sgd"


def judge(adv: float, se: float, z: float) -> tuple[bool, str]:
    """A challenger's verdict from its paired advantage ``adv`` and standard error ``se``:
    accepted above ``z`` standard errors, worse below ``-z`` of them, else within noise (a
    tie with no noise too)."""
    if not math.isfinite(adv):
        return False, "diverged"
    if adv > z * se and adv > 0:
        return True, "accepted"
    return False, "worse" if adv < -z * se else "within noise"


def proper_scoring(kind: str, task, n_val: int, z: float) -> bool:
    """Whether decisions pair a proper scoring rule rather than the metric's own per-sample
    scores (``search.scores``). ``auto``: where those are right or wrong (bounded), m samples
    turned right and none wrong give an advantage m/n against a noise of about sqrt(m)/n, so
    the smallest they can accept is z^2/n; proper where that is above RESOLUTION."""
    if kind != "auto":
        return kind == "proper"
    return task.best_sample_score is not None and z * z / max(n_val, 1) > RESOLUTION


def out_of_reach(scores: torch.Tensor, best: float | None, z: float) -> tuple[float, float] | None:
    """The paired advantage and noise of a challenger scoring ``best`` on every sample over
    ``scores``, when even that would not be accepted at ``z`` (the incumbent is at or near the
    split's ceiling: no challenger can be judged); None when one could, or scores are
    unbounded (``best`` None)."""
    if best is None:
        return None
    adv, se = paired(torch.full_like(scores, best), scores)
    return None if judge(adv, se, z)[0] else (adv, se)


def recipe_moves(
    r: Recipe, dims, t, n: int, task, hw: tuple, weaken: bool = True
) -> list[tuple[str, Recipe]]:
    """Every one-change recipe of ``r`` along ``dims``: (description, recipe). ``t`` is the
    train section (the SGD settings to return to), ``n`` the training samples; ``weaken``
    false leaves out the changes that regularise less (`weakens`)."""
    out = _recipe_moves(r, set(dims), t, n, task, hw)
    return out if weaken else [(name, m) for name, m in out if not weakens(r, m)]


def _recipe_moves(r: Recipe, dims: set, t, n: int, task, hw: tuple) -> list[tuple[str, Recipe]]:
    out: list[tuple[str, Recipe]] = []
    if "lr" in dims:
        for f in (2.0, 0.5):
            out.append((f"lr {r.lr:g} -> {r.lr * f:g}", replace(r, lr=r.lr * f)))
    if "optimizer" in dims:
        if r.optimizer == "sgd":
            other = replace(r, optimizer="adamw", lr=ADAMW_LR, weight_decay=ADAMW_WD)
        else:
            sgd_lr = float(t.lr) if t.optimizer == "sgd" else 0.025
            sgd_wd = t.weight_decay if t.optimizer == "sgd" else 3e-4
            other = replace(r, optimizer="sgd", lr=sgd_lr, weight_decay=sgd_wd)
        out.append((f"optimizer {r.optimizer} -> {other.optimizer}", other))
    if "weight_decay" in dims:
        for f in (4.0, 0.25):
            wd = r.weight_decay * f if r.weight_decay else 1e-4
            out.append((f"weight decay {r.weight_decay:g} -> {wd:g}", replace(r, weight_decay=wd)))
    if "batch_size" in dims:
        for bs in (r.batch_size * 2, r.batch_size // 2):
            if 16 <= bs <= max(16, n // 4):
                out.append((f"batch size {r.batch_size} -> {bs}", replace(r, batch_size=bs)))
    if "label_smoothing" in dims and task.smooths_labels:
        ls = 0.1 if r.label_smoothing == 0 else 0.0
        name = f"label smoothing {r.label_smoothing:g} -> {ls:g}"
        out.append((name, replace(r, label_smoothing=ls)))
    if "augment" in dims and hw != (1, 1):
        series = len(hw) == 1  # a move must change what trains: on series default is none
        now = series_effect(r.augment) if series else r.augment
        out += [
            (f"augment {r.augment} -> {a}", replace(r, augment=a))
            for a in (SERIES_EFFECTS if series else AUGMENTS)
            if a != now
        ]
    return out


def next_moves(b: Branch, every: list, tried: set) -> list:
    """The moves of ``every`` (name, move) the next challenger is drawn from: those not in
    ``tried``, of the kind (architecture or recipe) tried less often since the last acceptance
    (the recipe on a tie), so that a small ``search.patience`` still tries both; then those of
    the lowest `tier`."""
    options = [(n, m) for n, m in every if n not in tried]
    recipe = {n for n, m in every if isinstance(m, Recipe)}
    want = len(tried & recipe) <= len(tried - recipe)
    options = [o for o in options if isinstance(o[1], Recipe) == want] or options
    first = min((tier(b, m) for _, m in options), default=0)
    return [(n, m) for n, m in options if tier(b, m) == first]


def tier(b: Branch, move) -> int:
    """0 for a change of the rate, optimizer or augmentation (tried first), else 1."""
    if isinstance(move, Recipe):
        changed = {k for k in RECIPE_DIMS if getattr(move, k) != getattr(b.recipe, k)}
        return 0 if changed & FIRST_DIMS else 1
    return 1


@dataclass
class Progress:
    """Where a lineage stands after a round (what its checkpoint keeps besides the network)."""

    round: int
    accepted: int
    rejected: int
    tried: set
    seg: int
    step_seconds: float
    scores: torch.Tensor  # the incumbent's per-sample validation scores
    metrics: dict
    above: bool = True
    streak: int = 0  # challengers in a row not accepted
    views: list | None = None  # the data's symmetries found (`scinas.symmetry`); None: not probed
    learnt: bool = True  # the probe's network had learnt enough to judge the views
    gaining: bool = True  # the incumbent's last segment still gained (or none was judged)
    waited: int = 0  # segments in a row the incumbent trained alone, waiting for its plateau


class Diverged(Exception):
    """A challenger's loss was not finite: it loses."""
