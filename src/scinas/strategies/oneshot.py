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
from pydantic import Field
from torch import nn

from ..budget import Plan, budget_plan, describe, plan_phase
from ..checkpoint import LOGS, Checkpointer
from ..data.augment import make_augment
from ..data.split import stratified_split
from ..diagnostics import diagnostics, warn_collapse
from ..spaces import SPACES
from ..train import Trainer, check_finite, evaluate, recalibrate_bn
from .base import SearchContext, SearchResult, SearchStrategy, StrategySettings

BN_TAIL = 10  # batches behind a supernet's BatchNorm statistics when it is scored


def build_supernet(ctx: SearchContext) -> nn.Module:
    """The supernet of the context's search space, sized for its data."""
    s = ctx.cfg.search
    return SPACES.get(s.space).build_supernet(
        s, ctx.data.input_shape, ctx.data.num_outputs, ctx.device
    )


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


class OneShotSettings(StrategySettings):
    """What every one-shot strategy trains its supernet weights with."""

    epochs: int = Field(50, ge=1, description="search epochs")
    lr: float = Field(0.025, gt=0, description="weight learning rate (SGD, cosine schedule)")
    lr_min: float = Field(0.001, ge=0, description="learning rate at the end of the schedule")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0, description="gradient-norm clip of the weights")
    train_portion: float = Field(
        0.5, gt=0, lt=1, description="share of the training split for the weights"
    )
    warmup_epochs: int = Field(
        0, ge=0, description="epochs of weight-only training before the architecture moves"
    )
    steps_per_epoch: int | None = Field(
        None, ge=1, description="cap on steps per epoch (None: the whole split)"
    )


class ArchSettings(OneShotSettings):
    """One-shot strategies that learn architecture weights (alphas) by gradient."""

    arch_lr: float = Field(3e-4, gt=0, description="alpha learning rate (Adam)")
    arch_weight_decay: float = Field(1e-3, ge=0, description="alpha weight decay")


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

    def derive(self, model, ctx: SearchContext, val_batches, last_val: dict | None = None):
        """The architecture to return and the supernet's validation metrics for it
        (``last_val``: those of the last epoch, taken on the same weights, when there is one)."""
        val = last_val if last_val is not None else self.evaluate_supernet(model, ctx, val_batches)
        return model.genotype(), val

    def describe(self, ctx: SearchContext) -> str:
        return self.name

    def state_dict(self) -> dict:
        """Strategy state a checkpoint needs beyond the model and weight optimiser."""
        architect = getattr(self, "architect", None)
        return {"arch_optimizer": architect.optimizer.state_dict()} if architect else {}

    def load_state_dict(self, state: dict) -> None:
        if "arch_optimizer" in state:
            self.architect.optimizer.load_state_dict(state["arch_optimizer"])

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
        )

    def plan_budget(self, ctx: SearchContext) -> Plan:
        """Epochs and steps per epoch that fill ``search.time_budget``, from search steps timed on
        a throwaway supernet (`scinas.budget.plan_phase`)."""
        s, cfg, place = ctx.cfg.search, ctx.cfg, ctx.place
        halves = search_halves(ctx, cfg.seed)
        (xw, yw), (xa, ya) = halves

        def build():
            probe = type(self)()  # a fresh strategy: this one's state stays untouched
            torch.manual_seed(cfg.seed)
            model = place.module(build_supernet(ctx))
            probe.configure(model, ctx)
            _, H, W = ctx.data.input_shape
            augment = make_augment(s.augment, H, W, torch.Generator().manual_seed(0))
            trainer = probe.trainer(ctx, model, halves, augment)
            trainer.hooks.begin_epoch(0, None)
            trainer.hooks.update_arch = self.updates_arch  # warm-up epochs are the cheaper ones
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
        if ctx.cfg.search.time_budget is not None:
            p = budget_plan(ctx, ctx.run, "search", lambda: self.plan_budget(ctx))
            ctx.reporter.log(describe(p, "search"))
            sc = ctx.cfg.search.model_copy(
                update={"epochs": p.epochs, "steps_per_epoch": p.steps_per_epoch}
            )
            ctx = replace(ctx, cfg=ctx.cfg.model_copy(update={"search": sc}))
        s, cfg = ctx.cfg.search, ctx.cfg
        torch.manual_seed(cfg.seed)
        model = ctx.place.module(build_supernet(ctx))
        (xw, yw), (xa, ya) = halves = search_halves(ctx, cfg.seed)
        # the first 10 batches of the weight half, in order: BatchNorm recalibration (metrics)
        n_bn = BN_TAIL * s.batch_size
        self.bn_batches = (
            None if self.bn_from_training else ctx.place.batches(xw[:n_bn], yw[:n_bn], s.batch_size)
        )
        self.configure(model, ctx)
        ckpt = Checkpointer(ctx.run, "search", ctx.reporter)
        aug_generator = torch.Generator().manual_seed(cfg.seed + 13)
        _, H, W = ctx.data.input_shape
        augment = make_augment(s.augment, H, W, aug_generator)
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
        space = SPACES.get(s.space)
        ctx.reporter.log(
            f"search: {self.describe(ctx)}, {s.space} space, {s.epochs} epochs, supernet C={s.C} "
            f"layers={s.layers}, {len(model.op_names)} ops, {len(xw)}+{len(xa)} images "
            "(weights+arch)" + space.supernet_note(s, model, ctx.data.input_shape, ctx.device)
        )
        history = trainer.run()
        last_val = history[-1]["val"] if history else None
        arch, val_metrics = self.derive(model, ctx, trainer.hooks.val_batches, last_val)
        return SearchResult(
            genotype=arch,
            history=history,
            model=model,
            val_metrics=val_metrics,
            seconds=time.perf_counter() - t_start,
        )


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
        self.arch_losses = partial["arch"] if partial is not None else []

    def loss(self, batch, optimizer, where):
        s, task, model = self.ctx.cfg.search, self.ctx.task, self.model
        (xt, yt), (xv, yv) = batch  # weight half, architecture half
        if self.augment is not None:
            xt, xv = self.augment(xt), self.augment(xv)
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
        return task.loss(out, task.encode_targets(yt)), out, yt

    def _thaw_alphas(self) -> None:
        for a in self.model.arch_parameters():
            a.requires_grad_(True)

    def partial(self) -> dict:
        self._thaw_alphas()
        return {"arch": self.arch_losses}

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
        if st.has_alphas:
            event["diagnostics"] = diagnostics(record)
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
            f"{pm} {val[pm]:.4f} | {event['seconds']:.1f}s"
        )
        if st.has_alphas and self.update_arch:  # warm-up epochs derive from untouched alphas
            warn_collapse(event["diagnostics"], epoch + 1, ctx.reporter)
        return event

    def state_dict(self) -> dict:
        return self.strategy.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.strategy.load_state_dict(state)
