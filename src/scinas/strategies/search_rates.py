"""The one-shot search's learning rates: ``auto`` resolved before the search (a range test on a
throwaway supernet for ``search.lr``, `arch_lr_for` for ``search.arch_lr``), numbers standing in
where a step is only timed."""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from ..errors import UserError
from ..lr_finder import (
    ARCH_LR_MAX,
    SEARCH_LR_MIN_SHARE,
    _replan,
    arch_lr_for,
    no_fall_message,
    record,
    recorded,
    trainer_range_test,
)
from ..rates import is_auto
from .oneshot_settings import ArchSettings, OneShotSettings


def search_stand_ins(s):
    """The search section with numbers where ``auto`` stands and the fixed defaults where a
    learning rate is unset (what timing a step, which no rate changes, and a fixed run use)."""
    own, update = s.own, {}
    if isinstance(own, OneShotSettings) and is_auto(own.lr):
        update["lr"] = 0.025
    if isinstance(own, ArchSettings) and is_auto(own.arch_lr):
        update["arch_lr"] = 3e-4
    if isinstance(own, OneShotSettings) and own.lr_min is None:  # lr=auto sets it to lr/25
        update["lr_min"] = 0.001
    return s.model_copy(update=update) if update else s


def with_search(ctx, s):
    return replace(ctx, cfg=ctx.cfg.model_copy(update={"search": s}))


def auto_search(strategy, ctx):
    """The context with ``search.lr``, ``lr_min`` and ``arch_lr`` resolved: ``lr`` found by a
    range test on a throwaway supernet where it is ``auto``, ``arch_lr`` by `arch_lr_for` where it
    is ``auto`` (or unset with ``lr=auto``), the fixed defaults where unset."""
    s = ctx.cfg.search
    own = s.own
    lr_auto = isinstance(own, OneShotSettings) and is_auto(own.lr)
    arch_auto = isinstance(own, ArchSettings) and is_auto(own.arch_lr)
    arch_auto = arch_auto and strategy.has_alphas and strategy.updates_arch
    if not (lr_auto or arch_auto):
        return with_search(ctx, search_stand_ins(s))
    done = recorded(ctx, "search")
    if done is not None:
        chosen = {k: done[k] for k in ("lr", "lr_min", "arch_lr") if k in done}
        return with_search(ctx, search_stand_ins(s.model_copy(update=chosen)))
    numeric = with_search(ctx, search_stand_ins(s))
    chosen: dict = {}
    rt = None
    if lr_auto:
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            trainer = strategy.probe_trainer(numeric)
            trainer.hooks.update_arch = False  # the weights' rate, on uniform architecture weights
            rt = trainer_range_test(trainer, "search.lr range test")
        del trainer
        if rt.lr is None:
            record(ctx, "search", "search.lr", rt, {"lr": None})
            raise UserError(no_fall_message("search.lr", rt, ctx.data.name))
        rt.seconds = spent = time.perf_counter() - t0
        chosen["lr"] = rt.lr
        if s.lr_min is None:
            chosen["lr_min"] = rt.lr * SEARCH_LR_MIN_SHARE
        if s.time_budget is not None:
            _replan(ctx, "search", "search.time_budget", s.time_budget, spent)
    if arch_auto:
        chosen["arch_lr"] = arch_lr_for(strategy.arch_steps(numeric))
        if own.arch_lr_schedule == "cosine":
            # the rate then falls with the weights' cosine, whose mean is (1 + lr_min/lr)/2 of
            # its peak: raise the peak so the alphas may travel ARCH_TRAVEL all the same
            ns = numeric.cfg.search
            lr, lr_min = chosen.get("lr", ns.lr), chosen.get("lr_min", ns.lr_min) or 0.0
            mean = (1.0 + lr_min / lr) / 2.0
            chosen["arch_lr"] = min(ARCH_LR_MAX, chosen["arch_lr"] / mean)
    record(ctx, "search", "search.lr" if lr_auto else "search.arch_lr", rt, chosen)
    return with_search(ctx, search_stand_ins(s.model_copy(update=chosen)))
