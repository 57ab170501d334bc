"""The ``lineage`` strategy: one network trained once and improved on the way, never replaced by
a challenger that is not better beyond the noise of its evaluation.

The incumbent starts as ``search.start_from`` (for the macro space ``macro:resnet_tiny``) with
the train section's recipe, and trains in segments. Before each of its segments a challenger
branches off it with one change:

* an architecture change made by a function-preserving transformation (deepen a stage, grow its
  kernels, widen it: `scinas.spaces.macro_morph`), so the challenger starts from everything the
  incumbent learnt (network morphisms, Elsken et al. 2018/2019);
* or a change of the training recipe: the learning rate (×2, ×½), the optimizer (SGD with
  momentum, AdamW), the weight decay (×4, ×¼), the batch size (×2, ×½), label smoothing (0, 0.1)
  and the augmentation family (none, default, natural, rotation), as population-based training
  explores (Jaderberg et al. 2017). Changes that regularise less (no augmentation, less weight
  decay or label smoothing) are left out unless ``search.weaken``: they win at a segment's
  horizon and lose over the long training that follows (`branch.weakens`); a switch from SGD
  to an adaptive optimizer, which gains early too, must win by twice the margin
  (`branch.favoured_early`).

A challenger is tried only once the incumbent's own gain over its last segment is within one
standard error of none (``search.wait_for_plateau``): while it still gains, a segment of its
training buys more than a challenger's, whose compute is lost unless it wins, and a challenger
judged then is judged at a horizon where what leads early need not lead at the end.

Challengers change the recipe and the architecture in turn (the recipe first), so that a small
patience still tries both; changes of the rate, the optimizer and the augmentation come before
the recipe's others (in a seeded random order). Both then train for the same compute (under a
time budget the same seconds, the challenger's steps ending when the incumbent's segment time
has passed, since a small network's step time does not scale with its FLOPs; otherwise the
challenger's steps scaled by its FLOPs and batch size against the incumbent's) and are scored,
at their weights averaged over the segment's last steps (a snapshot at a constant rate swings too
much), on up to ``search.decision_val`` samples of the validation split, more than the per-epoch
scoring's ``data.max_val`` keeps where the data has them (a decision scores twice a segment, a
trainer every epoch). The challenger replaces the incumbent only when its advantage, paired over
those samples, exceeds ``search.noise_z`` times its standard error;
the log records the advantage, the noise and the verdict of every decision. Where the split is
too small for right or wrong to resolve a point, decisions pair a proper score instead
(``search.scores``).
Scores at chance decide nothing: the incumbent first trains until its validation score is above
that of a constant prediction (the same paired test), and that many steps, at least, are each
segment's length (fidelity in steps, not epochs). Where even a network right on every validation
sample would not pass that test (a split of a handful of samples), nothing is searched: the
start trains from scratch for the whole budget, as it would alone.

Challengers that are not accepted cost compute the incumbent does not get: after
``search.patience`` of them in a row the search stops, so that where nothing at this budget is
better beyond noise, the lineage ends close to its start trained for the whole budget.

The final network is the incumbent with its recipe (``recipe.json`` in the run directory), and
its training goes on from its weights for the rest of the budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import torch

from ..checkpoint import Checkpointer
from ..data import Split
from ..fit import build_network, subset, train_augment
from ..flops import count_flops
from ..precision import Mixed
from ..run_context import SearchContext
from ..signals import STOP, Interrupted
from ..train import make_optimizer, model_output, predict
from . import lineage_log as log
from . import lineage_state
from .base import STRATEGIES, SearchResult, SearchStrategy
from .branch import (
    EARLY_MARGIN,
    Branch,
    Diverged,
    Progress,
    Recipe,
    WeightAverage,
    favoured_early,
    judge,
    next_moves,
    opt_args,
    out_of_reach,
    paired,
    proper_scoring,
    recipe_moves,
)
from .lineage_settings import LineageSettings
from .lineage_state import start as _start
from .symmetry_step import find_symmetries

SEGMENTS = 12  # a search's time is planned as about this many segments (half of them challengers)
FLOOR_FIRST = 10  # steps before the start's first look at chance
FLOOR_MAX = 640  # without a time budget, the most steps the start takes to rise above chance
PLATEAU_WAIT = 4  # without a time budget, the most segments in a row waiting for a plateau
PRICED_MAX = 4  # a challenger priced in seconds takes at most this many times its FLOPs' steps
PLATEAU_Z = 1.0  # a plateau needs evidence: a segment's gain within one standard error of none


class LineageStrategy(SearchStrategy):
    name = "lineage"
    kind = "lineage"
    description = (
        "train one network once; challengers (morphisms, recipe changes) replace it only when "
        "better beyond measured noise"
    )
    Settings = LineageSettings

    @classmethod
    def check_search(cls, s, space) -> None:
        super().check_search(s, space)
        if not s.morph and not s.recipe:
            raise ValueError(
                "search.morph and search.recipe are both false: the lineage has nothing to try"
            )

    def preflight(self, ctx: SearchContext) -> None:
        _start(ctx)  # an unknown or foreign start architecture is refused before anything runs

    def search(self, ctx: SearchContext) -> SearchResult:
        return Lineage(ctx).run()


STRATEGIES.register("lineage", LineageStrategy)


def decision_split(data, n: int | None, seed: int) -> Split:
    """The validation samples decisions pair over: a stratified ``n`` of the whole split (all of
    it where it has no more), before data.max_val's cap; ``n`` None: the capped split."""
    if n is None:
        return data.val
    whole = data.val_whole if data.val_whole is not None else data.val
    if len(whole) <= n:
        return whole
    return Split(*subset(whole.x, whole.y, n, seed + 3))  # data.max_val's seed: equal n, equal


class Lineage:
    """One lineage search (`LineageStrategy`)."""

    def __init__(self, ctx: SearchContext):
        from ..spaces import SPACES

        self.ctx, self.cfg, self.s = ctx, ctx.cfg, ctx.cfg.search
        self.space = SPACES.get(self.s.space)
        data = ctx.data
        self.x, self.y = subset(
            data.train.x, data.train.y, self.cfg.train.max_samples, self.cfg.seed
        )
        self.val_split = decision_split(data, self.s.decision_val, self.cfg.seed)
        self.val = ctx.place.batches(self.val_split.x, self.val_split.y, 256)
        self.hw = tuple(data.input_shape[1:])
        self.events: list[dict] = []
        self.rng = np.random.default_rng(self.cfg.seed + 977)
        self.task = ctx.task
        self.pm = ctx.task.primary_metric
        n = len(self.val_split)
        self.proper = proper_scoring(self.s.scores, self.task, n, self.s.noise_z)
        self.best = self.task.best_proper_score if self.proper else self.task.best_sample_score
        self.units = " (proper score)" if self.proper else ""
        self._costs: dict = {}  # (architecture, batch size) -> compute of one step
        # architecture -> its autocast and gradient scaler (auto's choice), kept across segments
        self._mixed: dict = {}
        self.probed = False

    # ------------------------------------------------------------------ the pieces

    def log_event(self, event: dict) -> None:
        self.events.append(event)
        if self.ctx.run is not None:
            self.ctx.run.log_event(event)

    def build(self, arch) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed)
        d = self.ctx.data
        return self.ctx.place.module(
            build_network(arch, self.cfg.train, d.input_shape, d.num_outputs)
        )

    def cost(self, arch, recipe: Recipe) -> float:
        """The compute of one step: FLOPs of a forward pass times the batch size."""
        key = (str(arch), recipe.batch_size)
        if key not in self._costs:
            with torch.device("meta"):
                net = build_network(
                    arch, self.cfg.train, self.ctx.data.input_shape, self.ctx.data.num_outputs
                )
            self._costs[key] = (
                count_flops(net, tuple(self.ctx.data.input_shape)) * recipe.batch_size
            )
        return self._costs[key]

    def train(self, b: Branch, steps: int, seed: int, seconds: float | None = None) -> None:
        """``steps`` optimiser steps of branch ``b`` at its recipe's constant rate, or as many
        as ``seconds`` allow (at least one, at most PRICED_MAX times ``steps``); the batches and
        augmentation are seeded by ``seed`` (a resumed lineage replays them exactly). Sets the
        branch's measured seconds per step."""
        r = b.recipe
        gen = torch.Generator().manual_seed(seed)
        t = self.cfg.train
        augment = train_augment(t.model_copy(update={"augment": r.augment}), self.hw, gen)
        bs = min(r.batch_size, len(self.x))
        batches = self.ctx.place.batches(self.x, self.y, bs, shuffle=True, seed=seed)
        smooth = {"smoothing": r.label_smoothing} if r.label_smoothing else {}
        key = str(b.arch)
        if key not in self._mixed:  # one scaler a network: fp16's scale is not relearnt each time
            self._mixed[key] = Mixed(self.ctx.network_precision(b.net), self.ctx.device.type)
        mixed = self._mixed[key]
        b.net.train()
        done, began = 0, time.perf_counter()
        if seconds is not None:
            steps = PRICED_MAX * steps
        while done < steps:
            for xb, yb in batches:
                if STOP:
                    raise Interrupted(f"stopped in the lineage search after {b.steps} steps")
                if augment is not None:
                    xb = augment(xb)
                with mixed.autocast():  # precision=auto|bf16|fp16, as the final training
                    out = model_output(b.net, xb)
                    loss = self.task.loss(out, self.task.encode_targets(yb), **smooth)
                if not torch.isfinite(loss):
                    raise Diverged
                b.optimizer.zero_grad(set_to_none=True)
                mixed.backward(loss)
                mixed.unscale(b.optimizer)
                torch.nn.utils.clip_grad_norm_(b.net.parameters(), t.grad_clip)
                mixed.step(b.optimizer)
                if b.average is not None:
                    b.average.update()
                done += 1
                b.steps += 1
                spent = time.perf_counter() - began
                if done >= steps or (seconds is not None and spent >= seconds):
                    steps = done
                    break
        b.pace = (time.perf_counter() - began) / done

    def score(self, net: torch.nn.Module, proper: bool | None = None) -> tuple[torch.Tensor, dict]:
        """Per-sample validation scores (higher is better; ``proper``: those decisions pair,
        by default) and the split's metrics."""
        outputs, targets = predict(net, self.val)
        outputs, targets = outputs.cpu(), targets.cpu()
        scores = self.task.sample_scores(
            outputs, targets, self.proper if proper is None else proper
        )
        return scores, self.task.metrics(outputs, targets)

    def chance_scores(self) -> torch.Tensor:
        """The metric's per-sample scores of a constant prediction (`Task.constant_scores`)."""
        return self.task.constant_scores(self.y.cpu(), self.val_split.y.cpu())

    # ------------------------------------------------------------------ moves

    def moves(self, b: Branch) -> list[tuple[str, object]]:
        """Every one-change challenger of ``b``: (description, morphism or recipe)."""
        out: list[tuple[str, object]] = []
        if self.s.morph and getattr(self.space, "morphs", None) is not None:
            limit = self.s.max_cost * self.start_cost
            out += [
                (m.name, m)
                for m in self.space.morphs(b.arch, self.s, self.hw)
                if self.cost(m.target, b.recipe) <= limit * b.recipe.batch_size / self.start_bs
            ]
        if self.s.recipe:
            dims = [d for d in self.s.recipe_dims if not (d == "augment" and self.probed)]
            out += recipe_moves(
                b.recipe,
                dims,
                self.cfg.train,
                len(self.x),
                self.task,
                self.hw,
                weaken=self.s.weaken,
            )
        return out

    def challenger(self, b: Branch, move, seed: int) -> Branch:
        if isinstance(move, Recipe):
            c = b.fork()
            if move.optimizer != b.recipe.optimizer:  # a new optimiser starts without state
                c.optimizer = make_optimizer(c.net.parameters(), **opt_args(move))
            else:
                for g in c.optimizer.param_groups:
                    g.update(lr=move.lr, weight_decay=move.weight_decay)
            c.recipe = move
            return c
        net = move.apply(b.net, seed=seed)
        opt = make_optimizer(net.parameters(), **opt_args(b.recipe))
        return Branch(move.target, net, b.recipe, opt, b.steps)

    # ------------------------------------------------------------------ the search

    def run(self) -> SearchResult:
        ctx, s, t0 = self.ctx, self.s, time.perf_counter()
        ckpt = Checkpointer(ctx.run, "search", ctx.reporter)
        state = ckpt.load() if ctx.resume and ckpt.enabled else None
        if ctx.resume and ckpt.enabled and state is None:  # no round had finished: start again
            ckpt.truncate_logs({"metrics.jsonl": 0})
        spent = 0.0 if state is None else state["seconds"]
        deadline = None if s.time_budget is None else t0 + s.time_budget - spent
        arch = _start(ctx)
        recipe = Recipe.of(self.cfg.train)
        self.start_cost, self.start_bs = self.cost(arch, recipe), recipe.batch_size
        what = {(True, True): "architecture and recipe", (False, True): "recipe"}
        ctx.reporter.log(
            f"search: lineage from {arch} ({what.get((s.morph, s.recipe), 'architecture')}), "
            f"challengers accepted above {s.noise_z:g} standard errors of "
            + (self.task.proper_name if self.proper else self.pm)
            + f" paired over {len(self.val_split)} validation samples"
        )
        if state is not None:
            inc, p = lineage_state.restore(self, state, ckpt.folder)
            ctx.reporter.log(f"lineage: resuming after round {p.round} of a checkpoint")
        elif reach := out_of_reach(self.chance_scores(), self.task.best_sample_score, s.noise_z):
            log.undecidable(self, *reach)
            log.result(self, arch, recipe, {}, 0, 0, 0)  # no winner.pt: the start from scratch
            return SearchResult(arch, self.events, seconds=time.perf_counter() - t0, recipe={})
        else:
            inc, p = self._floor(arch, recipe, t0, deadline)
            if p.above and s.symmetries and s.recipe:
                find_symmetries(self, inc, p)
            if p.above:
                lineage_state.save(self, ckpt, inc, p, spent + time.perf_counter() - t0)
        self.probed = p.views is not None  # the symmetries decided the augmentation
        accepted, rejected, tried, seg, streak = p.accepted, p.rejected, p.tried, p.seg, p.streak
        inc_scores, inc_metrics, step_seconds = p.scores, p.metrics, p.step_seconds
        k = p.round
        while p.above:
            if STOP:
                raise Interrupted("stopped in the lineage search")
            if accepted + rejected >= s.budget:
                break
            if s.patience is not None and streak >= s.patience:
                log.stop(self, "patience", f"{streak} challengers in a row not better beyond noise "
                           "(search.patience)", rejected_in_a_row=streak)  # fmt: skip
                break
            round_start = time.perf_counter()
            explore = not self._waiting(p, deadline)
            need = (2.2 if explore else 1.1) * seg * step_seconds
            if deadline is not None and round_start + need > deadline:
                break
            seed = self.cfg.seed * 7919 + 104729 * (k + 1)
            before = inc_scores
            if not explore:  # the incumbent alone: its segment is worth more than a challenger's
                inc_scores, inc_metrics = self._segment(inc, seg, seed)
                gaining = log.gain(self, k + 1, seg, inc_scores, before, inc_metrics,
                                   round_start, PLATEAU_Z)  # fmt: skip
                k += 1
                p = replace(p, round=k, scores=inc_scores, metrics=inc_metrics)
                p.gaining, p.waited = gaining, p.waited + 1
                lineage_state.save(self, ckpt, inc, p, spent + time.perf_counter() - t0)
                continue
            if reach := out_of_reach(inc_scores, self.best, s.noise_z):
                adv, se = reach  # even a challenger right on every sample could not win
                log.stop(self, "ceiling", f"a challenger best on all {len(inc_scores)} validation "
                           f"samples would gain {adv:+.4f} (noise {se:.4f}): none can be judged "
                           "(a larger split, data.val_fraction or search.decision_val, would "
                           "let one be)",
                           best_advantage=adv, noise=se)  # fmt: skip
                break
            every = self.moves(inc)
            if every and all(name in tried for name, _ in every):
                tried.clear()
            if not (options := next_moves(inc, every, tried)):
                break
            name, move = options[int(self.rng.integers(len(options)))]
            tried.add(name)
            ch = self.challenger(inc, move, seed=self.cfg.seed + k)
            ratio = self.cost(inc.arch, inc.recipe) / self.cost(ch.arch, ch.recipe)
            ch_steps = max(1, round(seg * ratio))
            # under a time budget the challenger gets the incumbent's seconds, not its FLOPs:
            # small networks' step times do not scale with their FLOPs
            seconds = None if deadline is None else seg * (inc.pace or step_seconds)
            try:
                ch_scores, ch_metrics = self._segment(ch, ch_steps, seed, seconds)
            except Diverged:
                ch_scores, ch_metrics = None, None
            ch_steps = ch.steps - inc.steps
            inc_scores, inc_metrics = self._segment(inc, seg, seed)
            z = s.noise_z * (EARLY_MARGIN if favoured_early(inc.recipe, move) else 1.0)
            adv, se = (-math.inf, math.nan) if ch_scores is None else paired(ch_scores, inc_scores)
            win, verdict = judge(adv, se, z)
            k += 1
            priced = "flops" if seconds is None else "seconds"
            log.decision(self, k, name, seg, ch_steps, inc_metrics, ch_metrics, adv, se,
                         verdict, z, round_start, priced)  # fmt: skip
            if win:
                inc, inc_scores, inc_metrics = ch, ch_scores, ch_metrics
                accepted += 1
                tried.clear()
                streak = 0
            else:
                rejected += 1
                streak += 1
            gaining = judge(*paired(inc_scores, before), PLATEAU_Z)[0]
            p = replace(p, round=k, accepted=accepted, rejected=rejected, tried=tried,
                        scores=inc_scores, metrics=inc_metrics, streak=streak, gaining=gaining,
                        waited=0)  # fmt: skip
            lineage_state.save(self, ckpt, inc, p, spent + time.perf_counter() - t0)
        changes = inc.recipe.changes(self.cfg.train)
        undecided = not self.probed or not p.learnt
        if undecided and self.cfg.train.augment == "auto" and inc.recipe.augment == "default":
            del changes["augment"]  # never judged: the final training's auto looks as it trains
        if p.views and not self.cfg.train.tta:  # the symmetries found, as test-time views
            changes["tta"] = list(p.views)
        log.result(self, inc.arch, inc.recipe, changes, accepted, rejected, inc.steps)
        lineage_state.keep(self, inc)
        return SearchResult(
            genotype=inc.arch,
            history=self.events,
            val_metrics=inc_metrics,
            seconds=time.perf_counter() - t0,
            recipe=changes,
        )

    def _floor(
        self, arch, recipe: Recipe, t0: float, deadline: float | None
    ) -> tuple[Branch, Progress]:
        """Train the start until it scores above a constant prediction, looking after
        FLOOR_FIRST steps and then each time the steps have doubled; plan the segments."""
        s = self.s
        net = self.build(arch)
        inc = Branch(arch, net, recipe, make_optimizer(net.parameters(), **opt_args(recipe)))
        chance = self.chance_scores()
        floor_steps, started, chunk = 0, time.perf_counter(), FLOOR_FIRST
        while True:
            self.train(inc, chunk, seed=self.cfg.seed * 7919 + floor_steps)
            floor_steps += chunk
            scores, metrics = self.score(inc.net, proper=False)  # above chance on the metric
            adv, se = paired(scores, chance)
            above = adv > s.noise_z * se and adv > 0
            if above or (deadline is not None and time.perf_counter() > t0 + 0.5 * s.time_budget):
                break
            if deadline is None and floor_steps >= FLOOR_MAX:
                break
            chunk = floor_steps
        step_seconds = (time.perf_counter() - started) / floor_steps
        if self.proper:  # the scores decisions pair, from here on
            scores, metrics = self.score(inc.net)
        self.log_event({"event": "lineage_floor", "steps": floor_steps, "above_chance": bool(above),
                        "scores": "proper" if self.proper else "metric",
                        "val_samples": len(self.val_split), "advantage": adv, "noise": se,
                        "val": metrics})  # fmt: skip
        self.ctx.reporter.log(
            f"lineage: the start scores {metrics[self.pm]:.4f} after {floor_steps} steps, "
            + (
                f"above chance by {adv:.4f} (noise {se:.4f})"
                if above
                else f"not above chance ({adv:.4f}, noise {se:.4f}): no challenger is judged"
            )
        )
        seg = s.segment_steps
        if seg is None:
            seg = floor_steps
            if deadline is not None:
                left = deadline - time.perf_counter()
                seg = max(floor_steps, int(left / SEGMENTS / step_seconds))
        return inc, Progress(0, 0, 0, set(), seg, step_seconds, scores, metrics, above)

    def _segment(
        self, b: Branch, steps: int, seed: int, seconds: float | None = None
    ) -> tuple[torch.Tensor, dict]:
        """``steps`` steps of ``b`` (or those of ``seconds``: `train`), scored at its weights
        averaged over the segment."""
        b.average = WeightAverage(b.net, steps)
        try:
            self.train(b, steps, seed, seconds)
            return self.score(b.average.net)
        finally:
            b.average = None

    def _waiting(self, p: Progress, deadline: float | None) -> bool:
        """Whether the incumbent trains alone this round: its last segment still gained more
        than PLATEAU_Z standard errors (``search.wait_for_plateau``). Without a time budget,
        whose end bounds the search, at most PLATEAU_WAIT segments in a row."""
        if not self.s.wait_for_plateau or not p.gaining:
            return False
        return deadline is not None or p.waited < PLATEAU_WAIT
