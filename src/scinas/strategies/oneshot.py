"""One-shot (weight-sharing) search: the training loop DARTS, GDAS and rsws share.

Per step: an optional architecture step on a batch of the architecture half of the training data,
then a weight step on a batch of the weight half (SGD with cosine schedule, gradient clipping).
Strategies differ only in the hooks: how the supernet samples its ops (`configure`,
`begin_epoch`, `before_weight_step`), the architecture step (`arch_step`), how the supernet is
scored on the validation split (`evaluate_supernet`) and what it returns (`derive`).

Any search space with a supernet plugs in here, through `scinas.spaces.SearchSpace`
(``build_supernet``, ``arch_record``), chosen by ``search.space``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace

import torch
from pydantic import Field
from torch import nn

from ..budget import Plan, budget_plan, describe, eval_seconds, first_batch, plan, time_call
from ..checkpoint import LOGS, Checkpointer, rng_state, set_rng_state
from ..data.augment import make_augment
from ..data.split import stratified_split
from ..diagnostics import diagnostics, warn_collapse
from ..signals import STOP, Interrupted
from ..spaces import SPACES
from ..train import (
    Batches,
    average_bn,
    check_finite,
    cosine_sgd,
    evaluate,
    recalibrate_bn,
    stop_average_bn,
)
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

    # ---- one step: an architecture step (optional), then a weight step
    def step(self, model, ctx, train, val, lr, w_optimizer, *, update_arch, augment, where):
        """Returns the weight step's outputs (detached) and the arch step's loss (or None)."""
        s, task = ctx.cfg.search, ctx.task
        (xt, yt), (xv, yv) = train, val
        if augment is not None:
            xt, xv = augment(xt), augment(xv)
        arch_loss = None
        if update_arch:
            for a in model.arch_parameters():
                a.requires_grad_(True)
            arch_loss = self.arch_step(model, xt, yt, xv, yv, lr, w_optimizer)
            if arch_loss is not None:
                check_finite(torch.tensor(arch_loss), where, "search.arch_lr", s.arch_lr)
        # Weight step; the alphas are constants here (no grads, smaller graph).
        for a in model.arch_parameters():
            a.requires_grad_(False)
        self.before_weight_step(model)
        out = model(xt)
        loss = task.loss(out, task.encode_targets(yt))
        check_finite(loss, where, "search.lr", lr)
        w_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.weight_parameters(), s.grad_clip)
        w_optimizer.step()
        return out.detach(), arch_loss

    def plan_budget(self, ctx: SearchContext) -> Plan:
        """Epochs and steps per epoch that fill ``search.time_budget``, from steps timed on a
        throwaway supernet (the global RNG is left as it was)."""
        s, cfg = ctx.cfg.search, ctx.cfg
        probe = type(self)()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = build_supernet(ctx).to(ctx.device)
            if ctx.channels_last:
                model = model.to(memory_format=torch.channels_last)
            probe.configure(model, ctx)
            probe.begin_epoch(model, 0, ctx)
            w_optimizer, _ = cosine_sgd(
                model.weight_parameters(), s.lr, s.lr_min, s.momentum, s.weight_decay, 1
            )
            (xw, yw), (xa, ya) = search_halves(ctx, cfg.seed)
            first = first_batch(ctx, xw, yw, s.batch_size)
            second = first_batch(ctx, xa, ya, s.batch_size)
            _, H, W = ctx.data.input_shape
            augment = make_augment(s.augment, H, W, torch.Generator().manual_seed(0))
            model.train()
            step_seconds = time_call(
                lambda: self._sync(
                    probe.step(
                        model,
                        ctx,
                        first,
                        second,
                        s.lr,
                        w_optimizer,
                        update_arch=self.updates_arch,
                        augment=augment,
                        where="timing a search step",
                    )[0]
                )
            )
            # a validation pass, after the BatchNorm recalibration on 10 batches (see metrics)
            val_seconds = eval_seconds(ctx, model)
            if not self.bn_from_training:
                val_seconds += time_call(
                    lambda: recalibrate_bn(model, [first] * BN_TAIL), repeats=1, warmup=0
                )
        full = min(math.ceil(len(xw) / s.batch_size), math.ceil(len(xa) / s.batch_size))
        return plan(s.time_budget, step_seconds, val_seconds, full, "search.time_budget")

    @staticmethod
    def _sync(out: torch.Tensor) -> float:
        return float(out.float().sum())  # waits for the device

    # ---- the loop
    def search(self, ctx: SearchContext) -> SearchResult:
        t_start = time.perf_counter()
        if ctx.cfg.search.time_budget is not None:
            p = budget_plan(ctx, ctx.run, "search", lambda: self.plan_budget(ctx))
            ctx.reporter.log(describe(p, "search"))
            sc = ctx.cfg.search.model_copy(
                update={"epochs": p.epochs, "steps_per_epoch": p.steps_per_epoch}
            )
            ctx = replace(ctx, cfg=ctx.cfg.model_copy(update={"search": sc}))
        s, cfg, task = ctx.cfg.search, ctx.cfg, ctx.task
        torch.manual_seed(cfg.seed)
        model = build_supernet(ctx).to(ctx.device)
        if ctx.channels_last:
            model = model.to(memory_format=torch.channels_last)
        mean = torch.tensor(ctx.data.mean, dtype=torch.float32)
        std = torch.tensor(ctx.data.std, dtype=torch.float32)
        (xw, yw), (xa, ya) = search_halves(ctx, cfg.seed)

        def batches(x, y, shuffle, seed):
            gen = torch.Generator().manual_seed(seed) if shuffle else None
            return Batches(
                x,
                y,
                mean,
                std,
                s.batch_size,
                ctx.device,
                ctx.channels_last,
                shuffle=shuffle,
                generator=gen,
            )

        w_batches = batches(xw, yw, True, cfg.seed + 11)
        # the first 10 batches of the weight half, in order: BatchNorm recalibration (metrics)
        n_bn = BN_TAIL * s.batch_size
        self.bn_batches = None if self.bn_from_training else batches(xw[:n_bn], yw[:n_bn], False, 0)
        a_batches = batches(xa, ya, True, cfg.seed + 12)
        val_batches = batches(ctx.data.val.x, ctx.data.val.y, False, 0)
        n_steps = min(len(w_batches), len(a_batches), s.steps_per_epoch or len(w_batches))
        w_optimizer, scheduler = cosine_sgd(
            model.weight_parameters(),
            s.lr,
            s.lr_min,
            s.momentum,
            s.weight_decay,
            s.epochs * n_steps,
        )
        self.configure(model, ctx)
        ckpt = Checkpointer(ctx.run, "search", ctx.reporter)
        aug_generator = torch.Generator().manual_seed(cfg.seed + 13)
        _, H, W = ctx.data.input_shape
        augment = make_augment(s.augment, H, W, aug_generator)
        generators = {
            "weights": w_batches.generator,
            "arch": a_batches.generator,
            "augment": aug_generator,
        }
        history: list[dict] = []
        start_epoch, start_step, partial = 0, 0, None
        state = ckpt.load() if ctx.resume else None
        if ctx.resume and state is None and ckpt.enabled:
            ckpt.truncate_logs({name: 0 for name in LOGS})  # killed before the first checkpoint
        if state is not None:
            model.load_state_dict(state["model"])
            w_optimizer.load_state_dict(state["w_optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            self.load_state_dict(state["strategy"])
            history, start_epoch, start_step = state["history"], state["epoch"], state["step"]
            set_rng_state(state["rng"], generators)
            if start_step:
                w_batches.resume_at(state["orders"]["weights"], start_step)
                a_batches.resume_at(state["orders"]["arch"], start_step)
                partial = state["partial"]
            ctx.reporter.log(
                f"resuming the search at epoch {start_epoch + 1}, step {start_step + 1}"
            )

        def snapshot(epoch: int, step: int, partial=None) -> None:
            ckpt.save(
                {
                    "model": model.state_dict(),
                    "w_optimizer": w_optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "strategy": self.state_dict(),
                    "history": history,
                    "epoch": epoch,
                    "step": step,
                    "rng": rng_state(generators),
                    "orders": {"weights": w_batches.order, "arch": a_batches.order}
                    if step
                    else None,
                    "partial": partial,
                }
            )

        space = SPACES.get(s.space)
        ctx.reporter.log(
            f"search: {self.describe(ctx)}, {s.space} space, {s.epochs} epochs, supernet C={s.C} "
            f"layers={s.layers}, {len(model.op_names)} ops, {len(xw)}+{len(xa)} images "
            "(weights+arch)" + space.supernet_note(s, model, ctx.data.input_shape, ctx.device)
        )
        for epoch in range(start_epoch, s.epochs):
            t0 = time.perf_counter()
            lr = w_optimizer.param_groups[0]["lr"]
            update_arch = self.updates_arch and epoch >= s.warmup_epochs
            self.begin_epoch(model, epoch, ctx)
            model.train()
            outs, tgts, arch_losses = [], [], []
            if partial is not None:  # resumed mid-epoch
                outs, tgts, arch_losses = [partial["outs"]], [partial["tgts"]], partial["arch"]
                lr = partial["lr"]  # the epoch's (the schedule steps per batch)
                partial = None
            first = start_step if epoch == start_epoch else 0
            steps = itertools.islice(zip(w_batches, a_batches, strict=False), n_steps - first)
            steps = ctx.reporter.track(steps, n_steps - first, f"search {epoch + 1}/{s.epochs}")
            tail = max(0, n_steps - BN_TAIL)
            for step, ((xt, yt), (xv, yv)) in enumerate(steps, start=first):
                if self.bn_from_training and step >= tail:
                    average_bn(model, reset=step == tail)
                out, arch_loss = self.step(
                    model,
                    ctx,
                    (xt, yt),
                    (xv, yv),
                    w_optimizer.param_groups[0]["lr"],
                    w_optimizer,
                    update_arch=update_arch,
                    augment=augment,
                    where=f"search epoch {epoch + 1}, step {step + 1}",
                )
                scheduler.step()
                if arch_loss is not None:
                    arch_losses.append(arch_loss)
                outs.append(out.detach().float().cpu())
                tgts.append(yt.cpu())
                if STOP and ckpt.enabled:
                    for a in model.arch_parameters():
                        a.requires_grad_(True)
                    snapshot(
                        epoch,
                        step + 1,
                        {
                            "outs": torch.cat(outs),
                            "tgts": torch.cat(tgts),
                            "arch": arch_losses,
                            "lr": lr,
                        },
                    )
                    raise Interrupted(f"stopped in search epoch {epoch + 1}, step {step + 1}")
            for a in model.arch_parameters():
                a.requires_grad_(True)
            if self.bn_from_training:
                stop_average_bn(model)
            train_metrics = task.metrics(torch.cat(outs), torch.cat(tgts))
            val_metrics = self.evaluate_supernet(model, ctx, val_batches)
            record = space.arch_record(model) if self.has_alphas else {"genotype": None}
            event = {
                "event": "search_epoch",
                "strategy": self.name,
                "epoch": epoch + 1,
                "lr": lr,
                "train": train_metrics,
                "val": val_metrics,
                "arch_loss": sum(arch_losses) / len(arch_losses) if arch_losses else None,
                "genotype": record["genotype"],
                "seconds": time.perf_counter() - t0,
            }
            if self.has_alphas:
                event["diagnostics"] = diagnostics(record)
            if hasattr(model, "tau") and model.sampling == "gumbel":
                event["tau"] = model.tau
            history.append(event)
            if ctx.run is not None:
                ctx.run.log_event(event)
                if self.has_alphas:
                    ctx.run.log_arch_weights(epoch + 1, record)
            pm = task.primary_metric
            ctx.reporter.log(
                f"search epoch {epoch + 1}/{s.epochs}: train loss {train_metrics['loss']:.4f} "
                f"{pm} {train_metrics[pm]:.4f} | val loss {val_metrics['loss']:.4f} "
                f"{pm} {val_metrics[pm]:.4f} | {event['seconds']:.1f}s"
            )
            if self.has_alphas and update_arch:  # warm-up epochs derive from untouched alphas
                warn_collapse(event["diagnostics"], epoch + 1, ctx.reporter)
            snapshot(epoch + 1, 0)
            if STOP and ckpt.enabled:
                raise Interrupted(f"stopped after search epoch {epoch + 1}")
        last_val = history[-1]["val"] if history else None
        arch, val_metrics = self.derive(model, ctx, val_batches, last_val)
        return SearchResult(
            genotype=arch,
            history=history,
            model=model,
            val_metrics=val_metrics,
            seconds=time.perf_counter() - t_start,
        )
