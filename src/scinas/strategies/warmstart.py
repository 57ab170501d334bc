"""Scoring architectures with zero-cost proxies inside a black-box search (`scinas.proxies`):
the pool the `zero-cost` strategy trains the best of, and the warm start of every other
black-box strategy (``search.warm_start=PROXY``: score ``search.warm_start_pool`` random
architectures and enqueue the best ``search.warm_start_top`` into the optuna study, so they are
the first trials and the strategy's sampler carries on from their results).

The proxies' compute is counted: the number of architectures scored and the seconds spent go to
``metrics.jsonl`` (a ``zero_cost`` event), the log and the search history. Scoring happens once,
when the study is new; a resumed study keeps the trials it had enqueued. This module does not
import `scinas.strategies.blackbox`, which calls it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence

import numpy as np
import optuna
import torch

from ..fit import build_network
from ..proxies import check_proxies, score_network, top_architectures
from ..spaces import DecisionSpace


class ProxyScorer:
    """Scores architectures of a search with the proxies of a combination on a fixed batch of
    the training data; counts the architectures scored and the seconds spent."""

    def __init__(self, ctx, names: Sequence[str], batch_size: int):
        self.ctx, self.names = ctx, tuple(names)
        s, data = ctx.cfg.search, ctx.data
        self.t = ctx.cfg.train.model_copy(
            update={"C": s.C, "layers": s.layers, "reductions": s.reductions, "auxiliary": False}
        )
        self.build = lambda arch: ctx.place.module(
            build_network(arch, self.t, data.input_shape, data.num_outputs)
        )
        x, y = ctx.place.first_batch(data.train.x, data.train.y, batch_size)
        self.x, self.y = x, ctx.task.encode_targets(y)
        self.scored, self.seconds = 0, 0.0

    def check(self, arch, setting: str) -> None:
        torch.manual_seed(self.ctx.cfg.seed)
        check_proxies(self.names, self.build(arch), self.x, setting)

    def __call__(self, arch) -> dict[str, float]:
        t0 = time.perf_counter()
        torch.manual_seed(self.ctx.cfg.seed)
        out = score_network(
            self.build(arch),
            self.x,
            self.y,
            self.ctx.task.loss,
            self.names,
            self.ctx.data.input_shape,
        )
        self.seconds += time.perf_counter() - t0
        self.scored += 1
        return out


def proxy_plan(s) -> tuple[tuple[str, ...], int, int] | None:
    """(proxy names, pool size, how many to enqueue) of a search section, None without one."""
    return s.own.proxy_plan()


def sample_pool(space: DecisionSpace, n: int, seed: int) -> list[dict]:
    """``n`` distinct random decision dicts (every one when the space has at most ``n``)."""
    total = math.prod(len(ch) for _, ch in space.decisions)
    names = [name for name, _ in space.decisions]
    if total <= n:
        combos = itertools.product(*(ch for _, ch in space.decisions))
        return [dict(zip(names, c, strict=True)) for c in combos]
    rng = np.random.RandomState(seed)
    seen, out = set(), []
    while len(out) < n:
        params = {name: ch[rng.randint(len(ch))] for name, ch in space.decisions}
        key = tuple(params[k] for k in names)
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out


def preflight(ctx, space: DecisionSpace) -> None:
    """Refuse a proxy the task's networks cannot feed (before anything is written)."""
    plan = proxy_plan(ctx.cfg.search)
    if plan is None:
        return
    names = plan[0]
    setting = "search.proxy" if hasattr(ctx.cfg.search, "pool") else "search.warm_start"
    params = sample_pool(space, 1, ctx.cfg.seed)[0]
    ProxyScorer(ctx, names, ctx.cfg.search.proxy_batch).check(space.decode(params), setting)


def enqueue_pool(
    study: optuna.Study, space: DecisionSpace, scorer, names, params: list[dict], top: int
) -> dict:
    """Score the architectures of ``params`` (decision dicts), enqueue the best ``top``; returns
    the record of the proxies' compute (and what was enqueued)."""
    archs = [space.decode(p) for p in params]
    index = {id(a): i for i, a in enumerate(archs)}
    best = top_architectures(scorer, archs, names, top)
    for arch, _, _ in best:
        study.enqueue_trial(params[index[id(arch)]], skip_if_exists=False)
    return {
        "event": "zero_cost",
        "proxy": "+".join(names),
        "scored": scorer.scored,
        "seconds": scorer.seconds,
        "enqueued": [{"arch": a.to_dict(), "rank_score": c, "scores": sc} for a, c, sc in best],
    }


def warm_start(study: optuna.Study, space: DecisionSpace, ctx) -> dict | None:
    """Enqueue the proxy's best architectures into a new study (the `zero-cost` strategy's
    candidates, or another strategy's warm start); logs and returns the compute record."""
    s = ctx.cfg.search
    plan = proxy_plan(s)
    if plan is None:
        return None
    if study.trials:  # scored when the study began; a resumed run's log gets the record again
        done = study.user_attrs.get("zero_cost")
        if done and ctx.resume and ctx.run is not None:
            ctx.run.log_event({"event": "zero_cost", **done})
        return None
    names, pool, top = plan
    scorer = ProxyScorer(ctx, names, s.proxy_batch)
    params = sample_pool(space, pool, ctx.cfg.seed)
    record = enqueue_pool(study, space, scorer, names, params, top)
    study.set_user_attr("zero_cost", {k: record[k] for k in ("proxy", "scored", "seconds")})
    if ctx.run is not None:
        ctx.run.log_event(record)
    ctx.reporter.log(
        f"zero-cost: {record['proxy']} scored {record['scored']} architectures in "
        f"{record['seconds']:.1f}s ({record['seconds'] / max(1, record['scored']):.2f}s each); "
        f"the best {len(record['enqueued'])} go first"
    )
    return record
