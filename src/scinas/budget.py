"""Wall-clock budgets: turn "train for N seconds" into epochs and steps per epoch.

A budgeted phase (``search.time_budget`` for one-shot strategies, ``train.time_budget``) first
times a few optimisation steps of its own model on a batch of its own data, plus one evaluation
batch, on a throwaway copy; then it plans ``epochs`` and ``steps_per_epoch`` so that training and
the per-epoch validation fill the budget. The run itself is then an ordinary fixed-length run
(same cosine schedule, same checkpoints, bit-identical on resume), which a wall-clock stop could
not give. The plan is kept in the run directory (``budget.json``) and reused when resuming.

Budgets are estimates: the first steps after the timed ones run as fast as those, but a busy
machine makes the phase overrun or underrun; ``results.json`` keeps the real seconds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import parallel
from .bounds import MAX_EPOCHS
from .errors import UserError
from .train import model_output

MIN_STEPS = 10  # fewer optimisation steps than this is not training anything
BUDGET_FILE = "budget.json"
# a budget no setting can give (above bounds.MAX_SECONDS): a plan made for its timings alone
TIMINGS_ONLY = 1e9


@dataclass(frozen=True)
class Plan:
    budget: float  # seconds asked for
    step_seconds: float  # one optimisation step, measured
    eval_seconds: float  # one validation pass, estimated from one measured batch
    epochs: int
    steps_per_epoch: int  # at most the split's own batches
    full_epoch_steps: int  # the split's batches per epoch

    @property
    def seconds(self) -> float:
        """What the plan expects to spend."""
        return self.epochs * (self.steps_per_epoch * self.step_seconds + self.eval_seconds)

    def to_dict(self) -> dict:
        return {**asdict(self), "expected_seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def with_budget(self, budget: float, key: str) -> Plan:
        """The plan of another budget from the same timings (e.g. less the range test's
        seconds, `scinas.lr_finder`)."""
        return plan(budget, self.step_seconds, self.eval_seconds, self.full_epoch_steps, key)


def timings(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` after ``warmup`` untimed calls."""
    return statistics.median(timings(fn, repeats, warmup))


def plan(
    budget: float,
    step_seconds: float,
    eval_seconds: float,
    full_epoch_steps: int,
    key: str,
) -> Plan:
    """Epochs and steps per epoch that fill ``budget`` seconds.

    Of the plans of E epochs of S steps (S at most the split's batches) with
    E·(S·step + validation) within the budget, the one with the most steps, and of those the one
    with the fewest validations: a budget of 1.9 full epochs gives 2 epochs of ~0.95. Raises a
    `UserError` naming ``key`` when fewer than `MIN_STEPS` steps fit."""
    best = (0, 0)  # (total steps, steps per epoch)
    for steps in range(1, full_epoch_steps + 1):
        epochs = math.floor(budget / (steps * step_seconds + eval_seconds))
        best = max(best, (epochs * steps, steps))
    total, steps = best
    if total < MIN_STEPS:
        need = min(
            math.ceil(MIN_STEPS / s) * (s * step_seconds + eval_seconds)
            for s in range(1, min(full_epoch_steps, MIN_STEPS) + 1)
        )
        raise UserError(
            f"{key}={budget:g} seconds is too small to train anything here: one step takes "
            f"{step_seconds:.2f} s and a validation pass {eval_seconds:.2f} s, so it buys "
            f"{total} steps. Give at least {math.ceil(need)} seconds ({MIN_STEPS} steps), or "
            f"leave {key} unset."
        )
    if total // steps > MAX_EPOCHS and budget != TIMINGS_ONLY:  # a typo: 1e12 for 1e3
        raise UserError(
            f"{key}={budget:g} seconds plans {total // steps} epochs of {steps} steps here (one "
            f"step takes {step_seconds:.2g} s), above scinas' bound of {MAX_EPOCHS} epochs. "
            f"Give a smaller {key}, or leave it unset."
        )
    return Plan(budget, step_seconds, eval_seconds, total // steps, steps, full_epoch_steps)


def eval_seconds(place, val, model: nn.Module, batch_size: int = 256) -> float:
    """A validation pass over the split ``val``, estimated from one timed batch."""
    xb, _ = place.first_batch(val.x, val.y, batch_size)
    model.eval()
    with torch.no_grad():
        seconds = time_call(lambda: float(model_output(model, xb).float().sum()))
    model.train()
    return seconds * len(val) / len(xb)


def plan_phase(
    ctx,
    build: Callable[[], tuple[nn.Module, Callable[[], torch.Tensor], Callable[[], object] | None]],
    *,
    budget: float,
    full_epoch_steps: int,
    key: str,
) -> Plan:
    """The plan of a budgeted phase (the search or the final training), from its own step timed
    on a throwaway model.

    ``build()`` makes the model and returns it with its training step on a fixed batch (returning
    the step's output) and what a validation pass does before scoring, if anything (a sampled
    supernet's BatchNorm recalibration), else None. It runs with the global RNG forked, so the
    run draws the same numbers as without a budget. Under DDP every process times the sharded
    step together (a fixed number of calls each) and process 0's plan is everyone's."""
    with torch.random.fork_rng(devices=[]):
        model, step, before_eval = build()
        model.train()
        step_seconds = time_call(lambda: float(step().float().sum()))  # the sum waits for it
        val_seconds = eval_seconds(ctx.place, ctx.data.val, model)
        if before_eval is not None:
            val_seconds += time_call(before_eval, repeats=1, warmup=0)
    return parallel.on_leader(
        lambda: plan(budget, step_seconds, val_seconds, full_epoch_steps, key)
    )


def load_plan(run, phase: str) -> Plan | None:
    """The plan a run directory recorded for ``phase`` ("search" or "train"), if any."""
    from .rundir import read_json

    if run is None or not run.file(BUDGET_FILE).is_file():
        return None
    entry = read_json(run.file(BUDGET_FILE)).get(phase)
    return Plan.from_dict(entry) if entry else None


def save_plan(run, phase: str, p: Plan) -> None:
    from .rundir import read_json

    if run is None:
        return
    path = run.file(BUDGET_FILE)
    plans = read_json(path) if path.is_file() else {}
    plans[phase] = p.to_dict()
    run.write_json(BUDGET_FILE, plans)


def budget_plan(ctx, run, phase: str, make: Callable[[], Plan]) -> Plan:
    """The plan of ``phase``: the run directory's when resuming, else the one the checks before
    the run made (``ctx.plans``), else ``make()``; recorded in the run directory ``run``.
    Under DDP, process 0's (it alone has the run directory)."""
    if parallel.active():
        return parallel.on_leader(lambda: budget_plan(ctx, run, phase, make))
    p = load_plan(run, phase) if ctx.resume else None
    if p is None:
        p = ctx.plans.get(phase) or make()
        save_plan(run, phase, p)
    return p


def describe(p: Plan, what: str) -> str:
    share = f"{p.steps_per_epoch}/{p.full_epoch_steps} steps"
    return (
        f"{what} budget {p.budget:.0f}s: {p.step_seconds * 1000:.0f} ms per step, "
        f"{p.eval_seconds:.1f}s per validation -> {p.epochs} epochs of {share}"
    )
