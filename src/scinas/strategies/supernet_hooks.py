"""A one-shot strategy's side of the trainer: per step the architecture step, then the weight
step's loss; per epoch the supernet's score and its architecture record."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from .. import parallel
from ..run_context import SearchContext
from ..spaces import SPACES
from ..train import check_finite
from .diagnostics import diagnostics, warn_collapse
from .pruning import describe_event, ops_left

if TYPE_CHECKING:
    from .oneshot import OneShotStrategy


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
    this is not the default (docs, concepts, "Robust one-shot search")."""
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
        architect = self.strategy.architect
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
