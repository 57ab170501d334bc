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

import torch
from torch import nn

from ..budget import Plan, budget_plan, describe, plan_phase
from ..checkpoint import LOGS, Checkpointer
from ..data.split import stratified_split
from ..fit import train_augment
from ..lr_finder import log_event, relog
from ..precision import maybe_compile, new_scaler
from ..run_context import SearchContext
from ..spaces import SPACES
from ..train import Trainer, evaluate, recalibrate_bn
from .base import STRATEGIES, SearchResult, SearchStrategy
from .decided import is_decided, stable_since, undecided_advice
from .oneshot_settings import ArchSettings, OneShotSettings  # noqa: F401
from .pruning import Pruner
from .regularisers import ArchPenalty, aux_skip_weight
from .search_rates import auto_search, search_stand_ins, with_search
from .supernet_hooks import SupernetHooks, select_best_val_epoch  # noqa: F401

BN_TAIL = 10  # batches behind a supernet's BatchNorm statistics when it is scored


def build_supernet(ctx: SearchContext) -> nn.Module:
    """The supernet of the context's search space, sized for its data."""
    s = ctx.cfg.search
    return SPACES.get(s.space).build_supernet(
        s, ctx.data.input_shape, ctx.data.num_outputs, ctx.device
    )


def search_augment(cfg, input_hw, generator: torch.Generator):
    """The search batches' augmentation hook for inputs of ``input_hw`` ((H, W) images, (L,)
    series): the training's (`scinas.fit.train_augment`) under ``search.augment``.

    ``search.augment=default`` is the retraining's choice (``train.augment``, with its
    ``crop_padding`` and ``hflip``) without cutout, as the DARTS paper searched CIFAR-10 with
    crops and flips and kept cutout for the final training. It matters: a supernet trained on a
    few thousand unaugmented images overfits its weight half, and its alphas then drift to skip
    connections (NAS-Bench-201: docs, concepts, "Robust one-shot search")."""
    s, t = cfg.search, cfg.train
    name = t.augment if s.augment == "default" else s.augment
    return train_augment(t.model_copy(update={"augment": name, "cutout": 0}), input_hw, generator)


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
    architect = None  # the architecture optimiser's holder, set by strategies that have one

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
            black_box = [n for n in STRATEGIES if STRATEGIES.get(n).kind == "black-box"]
            raise ValueError(
                f"strategy {cls.name} {needs} in a supernet, and the {space.name} space has "
                f"none: use a black-box strategy ({', '.join(black_box)}) there, or "
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
        own = s.own
        if isinstance(own, ArchSettings) and own.aux_skip:
            model.set_aux_skip(aux_skip_weight(own.aux_skip, epoch, s.epochs))

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
        architect = self.architect
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
        if self.architect is not None:  # the architecture step's fp16 scaler
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
            precision=ctx.network_precision(model),
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
        own = s.own
        arch_lr = own.arch_lr if isinstance(own, ArchSettings) else None
        advice = undecided_advice(last["margin"], s.epochs, arch_lr, stable)
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
        augment = search_augment(cfg, ctx.data.input_shape[1:], torch.Generator().manual_seed(0))
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
        augment = search_augment(cfg, ctx.data.input_shape[1:], aug_generator)
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
        own = s.own
        arch_settings = isinstance(own, ArchSettings)
        if self.has_alphas and arch_settings and own.select_epoch == "best_val":
            arch, val_metrics = self.select_best_val(history, ctx, arch, val_metrics)
        if arch_settings and own.aux_skip:
            # DARTS-' auxiliary skip is a search-time aid: the supernet kept as a model (derive
            # supernet) and the one rebuilt from supernet.pt are without it
            model.set_aux_skip(0.0)
        return SearchResult(
            genotype=arch,
            history=history,
            model=model,
            val_metrics=val_metrics,
            seconds=time.perf_counter() - t_start,
            ending="supernet" if s.keeps_supernet else "retrain",
        )
