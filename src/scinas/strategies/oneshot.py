"""One-shot (weight-sharing) search: what DARTS, GDAS and rsws share.

The supernet's weights train in the one trainer (`scinas.train.Trainer`, the final network's
too): per step an optional architecture step on a batch of the architecture half of the training
data, then a weight step on a batch of the weight half (SGD with cosine schedule, gradient
clipping). `SupernetHooks` is the search's side of that loop. Strategies differ only in their
hooks: how the supernet samples its ops (`configure`,
`begin_epoch`, `before_weight_step`), the architecture step (`arch_step`), how the supernet is
scored on the validation split (`evaluate_supernet`) and what it returns (`derive`).

Any search space with a supernet plugs in here, through `scinas.spaces.SearchSpace`
(``build_supernet``, ``arch_record``), chosen by ``search.space``.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from .. import parallel
from ..bounds import MAX_EPOCHS, MAX_STEPS
from ..budget import Plan, budget_plan, describe, plan_phase
from ..checkpoint import LOGS, Checkpointer
from ..data.augment import make_augment
from ..data.split import stratified_split
from ..lr_finder import auto_search, log_event, relog, search_stand_ins, with_search
from ..precision import maybe_compile, new_scaler
from ..rates import AUTO, LearningRate, is_auto
from ..run_context import SearchContext
from ..spaces import SPACES
from ..train import Trainer, check_finite, evaluate, recalibrate_bn
from .base import SearchResult, SearchStrategy, StrategySettings
from .decided import is_decided, stable_since, undecided_advice
from .diagnostics import diagnostics, warn_collapse
from .pruning import Pruner, describe_event, ops_left
from .regularisers import ArchPenalty, aux_skip_weight

BN_TAIL = 10  # batches behind a supernet's BatchNorm statistics when it is scored


def build_supernet(ctx: SearchContext) -> nn.Module:
    """The supernet of the context's search space, sized for its data."""
    s = ctx.cfg.search
    return SPACES.get(s.space).build_supernet(
        s, ctx.data.input_shape, ctx.data.num_outputs, ctx.device
    )


def search_augment(cfg, height: int, width: int, generator: torch.Generator):
    """The search batches' augmentation hook (`scinas.data.augment.make_augment`).

    ``search.augment=default`` is the retraining's choice (``train.augment``, with its
    ``crop_padding`` and ``hflip``) without cutout, as the DARTS paper searched CIFAR-10 with
    crops and flips and kept cutout for the final training. It matters: a supernet trained on a
    few thousand unaugmented images overfits its weight half, and its alphas then drift to skip
    connections (NAS-Bench-201, README "Robust one-shot search")."""
    s, t = cfg.search, cfg.train
    name = t.augment if s.augment == "default" else s.augment
    return make_augment(name, height, width, generator, crop_padding=t.crop_padding, hflip=t.hflip)


def search_halves(ctx: SearchContext, seed: int):
    """DARTS' split of the training data: weights train on one half, the alphas on the other."""
    s, train = ctx.cfg.search, ctx.data.train
    x, y = train.x, train.y
    if s.max_samples is not None and s.max_samples < len(x):
        _, keep = stratified_split(y.numpy(), s.max_samples / len(x), seed)
        keep = torch.as_tensor(keep)
        x, y = x[keep], y[keep]
    w_idx, a_idx = stratified_split(y.numpy(), 1.0 - s.train_portion, seed + 1)
    w_idx, a_idx = torch.as_tensor(w_idx), torch.as_tensor(a_idx)
    return (x[w_idx], y[w_idx]), (x[a_idx], y[a_idx])


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


class OneShotStrategy(SearchStrategy):
    """Train a supernet with shared weights; subclasses choose sampling, arch step, derivation."""

    name = "oneshot"
    kind = "one-shot"
    Settings = ArchSettings
    updates_arch = True
    has_alphas = True  # False: nothing to log in arch_weights.jsonl (rsws)
    bn_batches = None  # training batches for the BatchNorm recalibration in `metrics`
    # True when every op sees every training batch (a continuous mixture): the BatchNorm
    # statistics are then averaged over each epoch's last BN_TAIL steps at no cost, instead of
    # recomputed before scoring (which cost ~15% of a digits search epoch)
    bn_from_training = False

    @classmethod
    def check_search(cls, s, space) -> None:
        super().check_search(s, space)
        needs = "learns architecture weights" if cls.has_alphas else "shares weights"
        if not space.has_supernet or (cls.has_alphas and not space.has_alphas):
            able = [
                n
                for n in SPACES
                if SPACES.get(n).has_supernet and (SPACES.get(n).has_alphas or not cls.has_alphas)
            ]
            raise ValueError(
                f"strategy {cls.name} {needs} in a supernet, and the {space.name} space has "
                f"none: use a black-box strategy (random, evolution, tpe, reinforce) there, or "
                f"space {' or '.join(able)}"
            )

    def preflight(self, ctx: SearchContext) -> None:
        if ctx.cfg.search.time_budget is not None and "search" not in ctx.plans:
            # a budget too small to train anything fails here, before anything is written
            ctx.plans["search"] = self.plan_budget(ctx)

    # ---- hooks
    def configure(self, model, ctx: SearchContext) -> None:
        """Set the supernet's sampling mode and build whatever the arch step needs."""

    def begin_epoch(self, model, epoch: int, ctx: SearchContext) -> None:
        """Per-epoch schedule (e.g. the GDAS temperature)."""

    def arch_step(self, model, xt, yt, xv, yv, lr, w_optimizer) -> float | None:
        """One architecture update; returns its loss."""
        return None

    def before_weight_step(self, model) -> None:
        """Choose the path the weight step trains (rsws samples one)."""

    def evaluate_supernet(self, model, ctx: SearchContext, val_batches) -> dict:
        """The supernet's validation metrics (DARTS: the continuous mixture)."""
        return self.metrics(model, ctx, val_batches)

    def metrics(self, model, ctx: SearchContext, batches) -> dict:
        """Metrics of the supernet as it is now configured (mixture or one path), its BatchNorm
        statistics first recomputed on training batches (`scinas.train.recalibrate_bn`), or as
        averaged over the epoch's last steps (`bn_from_training`)."""
        if self.bn_batches is not None:
            recalibrate_bn(model, self.bn_batches)
        return evaluate(model, ctx.task, batches)

    # ---- what every strategy with alphas shares: regularisers, DARTS-' skip, pruning
    penalty: ArchPenalty | None = None
    pruner: Pruner | None = None

    def arch_penalty(self, model, ctx: SearchContext, **extra) -> ArchPenalty | None:
        """The regularisers of the architecture loss the settings ask for (None: none), kept as
        ``self.penalty`` for the per-epoch schedule and log."""
        self.penalty = ArchPenalty.from_settings(model, ctx.cfg.search, **extra)
        return self.penalty

    def robust_setup(self, model, ctx: SearchContext) -> None:
        self.pruner = Pruner.from_settings(ctx.cfg.search) if self.has_alphas else None

    def robust_epoch(self, model, epoch: int, ctx: SearchContext) -> None:
        s = ctx.cfg.search
        if self.penalty is not None:
            self.penalty.set_epoch(epoch)
        if getattr(s, "aux_skip", 0.0):
            model.set_aux_skip(aux_skip_weight(s.aux_skip, epoch, s.epochs))

    def derive(self, model, ctx: SearchContext, val_batches, last_val: dict | None = None):
        """The architecture to return and the supernet's validation metrics for it
        (``last_val``: those of the last epoch, taken on the same weights, when there is one)."""
        val = last_val if last_val is not None else self.evaluate_supernet(model, ctx, val_batches)
        return model.genotype(), val

    def describe(self, ctx: SearchContext) -> str:
        return self.name

    def state_dict(self) -> dict:
        """Strategy state a checkpoint needs beyond the model and weight optimiser (the pruning
        masks are the model's buffers; the pruner's counters are here)."""
        architect = getattr(self, "architect", None)
        out = {"arch_optimizer": architect.optimizer.state_dict()} if architect else {}
        if architect and architect.follow:  # its peak rate, halved by the divergence guard
            out["arch_lr"] = architect.lr
        if architect and architect.scaler.is_enabled():  # precision=fp16
            out["arch_scaler"] = architect.scaler.state_dict()
        if self.pruner is not None:
            out["pruner"] = self.pruner.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        if "arch_optimizer" in state:
            self.architect.optimizer.load_state_dict(state["arch_optimizer"])
        if "arch_lr" in state:
            self.architect.lr = state["arch_lr"]
        if "arch_scaler" in state:
            self.architect.scaler.load_state_dict(state["arch_scaler"])
        if "pruner" in state and self.pruner is not None:
            self.pruner.load_state_dict(state["pruner"])

    def select_best_val(self, history: list[dict], ctx: SearchContext, arch, val: dict):
        """search.select_epoch=best_val: the cell and supernet metrics of the epoch chosen by
        `select_best_val_epoch`, logged as a ``select_epoch`` event; ``arch``/``val`` (the
        last epoch's) when that is the last epoch or none qualifies."""
        s = ctx.cfg.search
        best = select_best_val_epoch(history, s.warmup_epochs)
        if best is None or best is history[-1]:
            return arch, val
        last = history[-1]
        event = {
            "event": "select_epoch",
            "epoch": best["epoch"],
            "val_loss": best["val"]["loss"],
            "last_epoch": last["epoch"],
            "last_val_loss": last["val"]["loss"],
            "genotype": best["genotype"],
            "message": (
                f"search.select_epoch=best_val: the cell derived at epoch {best['epoch']}, whose "
                f"supernet had the lowest validation loss ({best['val']['loss']:.4f}; the last "
                f"epoch's {last['val']['loss']:.4f})"
            ),
        }
        log_event(ctx, event)
        return SPACES.get(s.space).from_dict(best["genotype"]), best["val"]

    # ---- the trainer's side
    def trainer(
        self, ctx: SearchContext, model, halves, augment, *, generators=None, checkpointer=None
    ) -> Trainer:
        """The `scinas.train.Trainer` of the supernet's weights: per step a batch of each half of
        the training data (``halves``: weights, architecture), the architecture step first."""
        s, place, seed = ctx.cfg.search, ctx.place, ctx.cfg.seed
        (xw, yw), (xa, ya) = halves
        val_batches = place.batches(ctx.data.val.x, ctx.data.val.y, s.batch_size)
        hooks = SupernetHooks(self, ctx, model, val_batches, augment)
        if getattr(self, "architect", None) is not None:  # the architecture step's fp16 scaler
            self.architect.scaler = new_scaler(ctx.cfg.precision, ctx.device.type)
        return Trainer(
            model,
            ctx.task,
            hooks,
            {
                "weights": place.batches(xw, yw, s.batch_size, shuffle=True, seed=seed + 11),
                "arch": place.batches(xa, ya, s.batch_size, shuffle=True, seed=seed + 12),
            },
            epochs=s.epochs,
            lr=s.lr,
            lr_min=s.lr_min,
            momentum=s.momentum,
            weight_decay=s.weight_decay,
            grad_clip=s.grad_clip,
            steps_per_epoch=s.steps_per_epoch,
            params=model.weight_parameters(),
            generators=generators,
            checkpointer=checkpointer,
            track=ctx.reporter.track,
            bn_tail=BN_TAIL if self.bn_from_training else 0,
            phase="search",
            label="search",
            lr_key="search.lr",
            precision=ctx.cfg.precision,
            on_event=lambda event: log_event(ctx, event),  # the divergence guard's
        )

    def report_decidedness(self, history: list[dict], ctx: SearchContext) -> None:
        """Say so (log, metrics.jsonl) when the search ends with alphas that hardly moved."""
        last = history[-1].get("diagnostics") if history else None
        if not (self.has_alphas and self.updates_arch and last and "margin" in last):
            return
        s = ctx.cfg.search
        if is_decided(last["margin"]):
            return
        stable = stable_since([h.get("genotype") for h in history])
        advice = undecided_advice(last["margin"], s.epochs, getattr(s, "arch_lr", None), stable)
        ctx.reporter.log(f"warning: {advice}")
        if ctx.run is not None:
            ctx.run.log_event(
                {
                    "event": "undecided",
                    "margin": last["margin"],
                    "stable_since": stable,
                    "message": advice,
                }
            )

    def probe_trainer(self, ctx: SearchContext) -> Trainer:
        """The trainer of a throwaway supernet (seeded as the search's, a fresh strategy: this
        one's state stays untouched), in its first epoch: what a time-budget plan times and a
        learning-rate range test (`scinas.lr_finder`) trains."""
        cfg = ctx.cfg
        probe = type(self)()
        torch.manual_seed(cfg.seed)
        model = maybe_compile(ctx.place.module(build_supernet(ctx)), cfg.compile)
        probe.configure(model, ctx)
        _, H, W = ctx.data.input_shape
        augment = search_augment(cfg, H, W, torch.Generator().manual_seed(0))
        trainer = probe.trainer(ctx, model, search_halves(ctx, cfg.seed), augment)
        trainer.hooks.begin_epoch(0, None)
        trainer.hooks.update_arch = self.updates_arch  # warm-up epochs are the cheaper ones
        return trainer

    def arch_steps(self, ctx: SearchContext) -> int:
        """How many architecture steps the search will take (after the warm-up epochs), under
        its time-budget plan when it has one."""
        s = ctx.cfg.search
        (xw, _), (xa, _) = search_halves(ctx, ctx.cfg.seed)
        full = min(math.ceil(len(xw) / s.batch_size), math.ceil(len(xa) / s.batch_size))
        epochs, steps = s.epochs, min(full, s.steps_per_epoch or full)
        if s.time_budget is not None and (p := ctx.plans.get("search")) is not None:
            epochs, steps = p.epochs, p.steps_per_epoch
        return max(0, epochs - s.warmup_epochs) * steps

    def plan_budget(self, ctx: SearchContext) -> Plan:
        """Epochs and steps per epoch that fill ``search.time_budget``, from search steps timed on
        a throwaway supernet (`scinas.budget.plan_phase`)."""
        ctx = with_search(ctx, search_stand_ins(ctx.cfg.search))  # no rate changes a step's time
        s, cfg, place = ctx.cfg.search, ctx.cfg, ctx.place
        (xw, yw), (xa, ya) = search_halves(ctx, cfg.seed)

        def build():
            trainer = self.probe_trainer(ctx)
            model = trainer.model
            first = place.first_batch(xw, yw, s.batch_size)
            batch = (first, place.first_batch(xa, ya, s.batch_size))
            # a validation pass follows a BatchNorm recalibration on 10 batches (see metrics)
            recalibrate = None
            if not self.bn_from_training:
                recalibrate = lambda: recalibrate_bn(model, [first] * BN_TAIL)  # noqa: E731
            return model, lambda: trainer.train_step(batch, "timing a search step")[0], recalibrate

        full = min(math.ceil(len(xw) / s.batch_size), math.ceil(len(xa) / s.batch_size))
        return plan_phase(
            ctx, build, budget=s.time_budget, full_epoch_steps=full, key="search.time_budget"
        )

    # ---- the search
    def search(self, ctx: SearchContext) -> SearchResult:
        t_start = time.perf_counter()
        # learning rates: found on the data where auto (the range test's seconds come off a
        # time budget), the fixed defaults where unset
        ctx = auto_search(self, ctx)
        if ctx.cfg.search.time_budget is not None:
            p = budget_plan(ctx, ctx.run, "search", lambda: self.plan_budget(ctx))
            ctx.reporter.log(describe(p, "search"))
            sc = ctx.cfg.search.model_copy(
                update={"epochs": p.epochs, "steps_per_epoch": p.steps_per_epoch}
            )
            ctx = replace(ctx, cfg=ctx.cfg.model_copy(update={"search": sc}))
        s, cfg = ctx.cfg.search, ctx.cfg
        torch.manual_seed(cfg.seed)
        model = maybe_compile(ctx.place.module(build_supernet(ctx)), cfg.compile)
        (xw, yw), (xa, ya) = halves = search_halves(ctx, cfg.seed)
        # the first 10 batches of the weight half, in order: BatchNorm recalibration (metrics)
        n_bn = BN_TAIL * s.batch_size
        self.bn_batches = (
            None if self.bn_from_training else ctx.place.batches(xw[:n_bn], yw[:n_bn], s.batch_size)
        )
        self.configure(model, ctx)
        self.robust_setup(model, ctx)
        ckpt = Checkpointer(ctx.run, "search", ctx.reporter)
        aug_generator = torch.Generator().manual_seed(cfg.seed + 13)
        _, H, W = ctx.data.input_shape
        augment = search_augment(cfg, H, W, aug_generator)
        trainer = self.trainer(
            ctx, model, halves, augment, generators={"augment": aug_generator}, checkpointer=ckpt
        )
        if ctx.resume:
            if trainer.resume():
                ctx.reporter.log(
                    f"resuming the search at epoch {trainer.start_epoch + 1}, "
                    f"step {trainer.start_step + 1}"
                )
            elif ckpt.enabled:  # killed before the first checkpoint
                ckpt.truncate_logs({name: 0 for name in LOGS})
                relog(ctx, "search")  # the learning rates chosen before it, kept
        space = SPACES.get(s.space)
        ctx.reporter.log(
            f"search: {self.describe(ctx)}, {s.space} space, {s.epochs} epochs, supernet C={s.C} "
            f"layers={s.layers}, {len(model.op_names)} ops, {len(xw)}+{len(xa)} images "
            "(weights+arch)" + space.supernet_note(s, model, ctx.data.input_shape, ctx.device)
        )
        history = trainer.run()
        self.report_decidedness(history, ctx)
        last_val = history[-1]["val"] if history else None
        arch, val_metrics = self.derive(model, ctx, trainer.hooks.val_batches, last_val)
        if self.has_alphas and getattr(s, "select_epoch", "last") == "best_val":
            arch, val_metrics = self.select_best_val(history, ctx, arch, val_metrics)
        if getattr(s, "aux_skip", 0.0):
            # DARTS-' auxiliary skip is a search-time aid: the supernet kept as a model (derive
            # supernet) and the one rebuilt from supernet.pt are without it
            model.set_aux_skip(0.0)
        return SearchResult(
            genotype=arch,
            history=history,
            model=model,
            val_metrics=val_metrics,
            seconds=time.perf_counter() - t_start,
        )


def select_best_val_epoch(history: list[dict], warmup_epochs: int = 0) -> dict | None:
    """The search epoch record (of ``history``) whose supernet scored the lowest validation
    loss, among those after the warm-up (whose cells come from untouched alphas) with a cell
    and a finite loss; the later one on a tie; None when there is none.

    Early stopping on the held-out split: the architecture half trains the alphas and the
    weight half the weights, so the validation split alone shows the supernet overfitting.
    On NAS-Bench-201 with 2,500+2,500 CIFAR images, plain DARTS, beta-DARTS, DARTS- and DrNAS
    drifted to skip connections once their weights overfitted (training loss under ~1), 20-40
    epochs into 50; the cell of the lowest validation loss was far better than the last one
    (beta-DARTS 90.42 against 77.40 over 4 seeds) but missed the best epoch in 1 seed of 4, so
    this is not the default (README, "Robust one-shot search")."""
    good = [
        h
        for h in history
        if h.get("genotype") is not None
        and h["epoch"] > warmup_epochs
        and math.isfinite(h["val"]["loss"])
    ]
    if not good:
        return None
    return min(reversed(good), key=lambda h: h["val"]["loss"])


class SupernetHooks:
    """A one-shot strategy's side of the trainer (`scinas.train.TrainHooks`): per step the
    architecture step on the architecture half's batch, then the path the weight step trains;
    per epoch the strategy's schedule, and at its end the supernet's score and the architecture
    record, logged."""

    def __init__(self, strategy: OneShotStrategy, ctx: SearchContext, model, val_batches, augment):
        self.strategy, self.ctx, self.model = strategy, ctx, model
        self.val_batches, self.augment = val_batches, augment
        self.space = SPACES.get(ctx.cfg.search.space)
        self.update_arch = False
        self.arch_losses: list[float] = []

    def begin_epoch(self, epoch: int, partial: dict | None) -> None:
        st = self.strategy
        self.update_arch = st.updates_arch and epoch >= self.ctx.cfg.search.warmup_epochs
        st.begin_epoch(self.model, epoch, self.ctx)
        st.robust_epoch(self.model, epoch, self.ctx)
        self.arch_losses = partial["arch"] if partial is not None else []
        if partial is not None and st.penalty is not None:  # resumed after the epoch's last step
            st.penalty.last = dict(partial.get("penalty", {}))

    def loss(self, batch, optimizer, where):
        s, task, model = self.ctx.cfg.search, self.ctx.task, self.model
        (xt, yt), (xv, yv) = batch  # weight half, architecture half
        if self.augment is not None:
            xt, xv = self.augment(xt), self.augment(xv)
        # DDP (scinas.parallel): this process's share of each augmented global batch
        (xt, yt), (xv, yv) = parallel.shard(xt, yt), parallel.shard(xv, yv)
        if self.update_arch:
            for a in model.arch_parameters():
                a.requires_grad_(True)
            lr = optimizer.param_groups[0]["lr"]
            arch_loss = self.strategy.arch_step(model, xt, yt, xv, yv, lr, optimizer)
            if arch_loss is not None:
                check_finite(torch.tensor(arch_loss), where, "search.arch_lr", s.arch_lr)
                self.arch_losses.append(arch_loss)
        # Weight step; the alphas are constants here (no grads, smaller graph).
        for a in model.arch_parameters():
            a.requires_grad_(False)
        self.strategy.before_weight_step(model)
        out = model(xt)
        return parallel.scale_loss(task.loss(out, task.encode_targets(yt)), len(xt)), out, yt

    def scale_lr(self, factor: float) -> None:
        """The divergence guard, after an architecture loss diverged: scale the alphas' rate."""
        architect = getattr(self.strategy, "architect", None)
        if architect is not None:
            architect.lr *= factor  # the peak that search.arch_lr_schedule=cosine scales
            for group in architect.optimizer.param_groups:
                group["lr"] *= factor

    def _thaw_alphas(self) -> None:
        for a in self.model.arch_parameters():
            a.requires_grad_(True)

    def partial(self) -> dict:
        self._thaw_alphas()
        penalty = self.strategy.penalty
        return {"arch": self.arch_losses, "penalty": dict(penalty.last) if penalty else {}}

    def end_epoch(self, epoch: int, train: dict, lr: float, started: float) -> dict:
        st, ctx, model = self.strategy, self.ctx, self.model
        s, task = ctx.cfg.search, ctx.task
        self._thaw_alphas()
        val = st.evaluate_supernet(model, ctx, self.val_batches)
        record = self.space.arch_record(model) if st.has_alphas else {"genotype": None}
        losses = self.arch_losses
        event = {
            "event": "search_epoch",
            "strategy": st.name,
            "epoch": epoch + 1,
            "lr": lr,
            "train": train,
            "val": val,
            "arch_loss": sum(losses) / len(losses) if losses else None,
            "genotype": record["genotype"],
            "seconds": time.perf_counter() - started,
        }
        decided = ""
        if st.has_alphas:
            event["diagnostics"] = diag = diagnostics(record)
            left, total = ops_left(model)
            event["ops_left"], event["ops_total"] = left, total
            shares = next(iter(diag["cells"].values()))
            decided = (
                f" | margin {diag['margin']:.4f} entropy {diag['mean_entropy']:.3f} "
                f"skip/pool/none {shares['skip']:.0%}/{shares['pool']:.0%}/{shares['none']:.0%}"
                + (f" | ops {left}/{total}" if left < total else "")
            )
        if st.penalty is not None and st.penalty.last:
            event["penalty"] = dict(st.penalty.last)
        if hasattr(model, "tau") and model.sampling == "gumbel":
            event["tau"] = model.tau
        if ctx.run is not None:
            ctx.run.log_event(event)
            if st.has_alphas:
                ctx.run.log_arch_weights(epoch + 1, record)
        pm = task.primary_metric
        ctx.reporter.log(
            f"search epoch {epoch + 1}/{s.epochs}: train loss {train['loss']:.4f} "
            f"{pm} {train[pm]:.4f} | val loss {val['loss']:.4f} "
            f"{pm} {val[pm]:.4f} | {event['seconds']:.1f}s{decided}"
        )
        if st.pruner is not None and self.update_arch and epoch + 1 < s.epochs:
            # after the epoch's record: the cell logged is the one its weights derived. Not after
            # the last epoch: a removal then saves no compute, and would make the final cell
            # (derived from the masked supernet) differ from the last one logged
            for ev in st.pruner.update(model, epoch + 1):
                if ctx.run is not None:
                    ctx.run.log_event(ev)
                ctx.reporter.log(describe_event(ev))
        if st.has_alphas and self.update_arch:  # warm-up epochs derive from untouched alphas
            warn_collapse(event["diagnostics"], epoch + 1, ctx.reporter)
        return event

    def state_dict(self) -> dict:
        return self.strategy.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.strategy.load_state_dict(state)
