"""Learning rates found on the user's data: ``search.lr=auto`` and ``train.lr=auto``.

Before a phase starts, a learning-rate range test (Smith, "Cyclical learning rates", 2017) trains
a throwaway copy of the phase's own model (same seed, same batches, same hooks; the supernet with
its architecture weights held uniform) for `RANGE_STEPS` steps while the learning rate grows
exponentially from `LR_START` to `LR_END`, and records each step's loss. The curve is smoothed
(an exponential moving average, `SMOOTHING`, bias-corrected) and the test stops early once the
loss has exploded (4x its smoothed minimum, or the divergence guard's rule).

**The rule**: the learning rate is a tenth of the one at the smoothed loss's minimum. At the
minimum the loss is about to turn up, i.e. that rate is at the edge of stability for a few steps
of training, and the cosine schedule starts at its peak, so the peak must sit well inside the
stable range; the moving average also lags the raw curve by about 4 steps (half a decade at 8
steps per decade), which the factor 10 covers. The other common choice, the steepest descent of
the curve, is a derivative of a noisy curve of a few dozen points and so noisier than its
minimum.

**When the loss never falls**: the smoothed minimum must be below the starting loss (the mean of
the steps at rates up to `QUIET_LR`, which barely train) by at least `MIN_FALL` of it and by
twice the noise of that difference (from those steps' batch-to-batch spread); otherwise no
learning rate trains this model on these data, and the phase stops with one `UserError` (exit
code 2) naming what to check (labels that do not follow the inputs, constant inputs, a far too
small network, or give the learning rate as a number). The run directory then holds what it had
plus the range test's record (``lr_range.json``, a ``lr_range_test`` line in ``metrics.jsonl``)
to look at; resuming it runs the test again (a failed test is not reused), so start again with
a number, or ``--overwrite``.

**The architecture learning rate** (one-shot strategies with architecture weights, set with
``search.lr=auto`` unless ``search.arch_lr`` is given as a number): Adam moves each alpha by at most
about its learning rate per step, so over ``n`` architecture steps an alpha can travel about
``arch_lr * n``. DARTS' own 3e-4 over its 50 CIFAR-10 epochs (~19,500 steps) allows ~5.9; a
3-epoch digits search (~60 steps) allowed 0.02, and its alphas never moved. The rule
keeps the travel at `ARCH_TRAVEL` (about half of DARTS'): ``arch_lr = ARCH_TRAVEL / n``, never
below DARTS' 3e-4 (long searches keep the paper's setting) nor above `ARCH_LR_MAX`. With noisy
gradients Adam's steps are a fraction of the rate, so 3.0 leaves room to separate the strongest op
of an edge by the ~0.7 in alpha that a margin of 0.10 over uniform needs with 8 ops.

The range test costs about `RANGE_STEPS` training steps of the phase; it counts in the phase's
seconds and, under a time budget, comes off that budget before the epochs are planned.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from .errors import TrainingDiverged, UserError
from .rates import is_auto

LR_START, LR_END = 1e-4, 10.0
RANGE_STEPS = 40  # 8 per decade from 1e-4 to 10
SMOOTHING = 0.8  # EMA weight of the running loss (about 5 steps)
EXPLODED = 4.0  # the test stops once the smoothed loss is this many times its minimum
MIN_FALL = 0.03  # the smoothed loss must fall at least this share below the starting loss
QUIET_LR = 1e-3  # steps at rates up to this barely train: their spread is the batches' noise
PICK_FACTOR = 10.0  # the chosen rate: the one at the smoothed minimum over this
ARCH_TRAVEL = 3.0  # how far (in alpha units) an architecture weight may travel over the search
ARCH_LR_MIN, ARCH_LR_MAX = 3e-4, 0.1
SEARCH_LR_MIN_SHARE = 0.001 / 0.025  # the fixed defaults' ratio: with lr=auto lr_min is lr/25
RANGE_FILE = "lr_range.json"


@dataclass
class RangeTest:
    """One range test: the curve and what it chose (``lr`` None: the loss never fell)."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    lr: float | None
    lr_at_min: float | None
    start_loss: float
    min_loss: float
    stopped: str
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average (the first value is the first loss)."""
    out, avg = [], 0.0
    for i, v in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def choose(lrs: list[float], losses: list[float], stopped: str = "") -> RangeTest:
    """Apply the rule of this module to a recorded curve (finite losses only)."""
    sm = smooth(losses)
    quiet = [v for r, v in zip(lrs, losses, strict=True) if r <= QUIET_LR]  # barely training
    quiet = quiet if len(quiet) >= 3 else losses[:3]
    start = statistics.fmean(quiet) if quiet else math.nan
    spread = statistics.pstdev(quiet) if len(quiet) >= 2 else 0.0
    # the noise of (start - smoothed): a mean of the quiet losses against an EMA of iid noise
    noise = spread * math.sqrt(1 / max(1, len(quiet)) + (1 - SMOOTHING) / (1 + SMOOTHING))
    if not sm:
        return RangeTest(lrs, losses, sm, None, None, start, math.nan, stopped)
    k = min(range(len(sm)), key=sm.__getitem__)
    fell = sm[k] < start - max(MIN_FALL * abs(start), 2 * noise)
    lr = lrs[k] / PICK_FACTOR if fell else None
    return RangeTest(lrs, losses, sm, lr, lrs[k] if fell else None, start, sm[k], stopped)


def range_test(
    step: Callable[[float], float],
    steps: int | None = None,
    lr_start: float = LR_START,
    lr_end: float = LR_END,
) -> RangeTest:
    """Run ``step(lr) -> loss`` (one optimiser step at ``lr``) at ``steps`` (`RANGE_STEPS`)
    exponentially growing rates and choose one (`choose`). A step that raises
    `TrainingDiverged`, a non-finite loss or a smoothed loss `EXPLODED` times its minimum ends
    the test."""
    t0 = time.perf_counter()
    steps = steps or RANGE_STEPS
    factor = (lr_end / lr_start) ** (1 / max(1, steps - 1))
    lrs, losses, stopped = [], [], f"reached {lr_end:g}"
    best = math.inf
    for i in range(steps):
        lr = lr_start * factor**i
        try:
            loss = step(lr)
        except TrainingDiverged:
            stopped = f"the loss diverged at {lr:.3g}"
            break
        if not math.isfinite(loss):
            stopped = f"the loss became {loss} at {lr:.3g}"
            break
        lrs.append(lr)
        losses.append(loss)
        current = smooth(losses)[-1]
        best = min(best, current)
        if i >= 3 and current > EXPLODED * best:
            stopped = f"the loss exploded at {lr:.3g}"
            break
    result = choose(lrs, losses, stopped)
    result.seconds = time.perf_counter() - t0
    return result


def arch_lr_for(arch_steps: int) -> float:
    """The architecture learning rate that lets an alpha travel `ARCH_TRAVEL` over
    ``arch_steps`` Adam steps, within [`ARCH_LR_MIN`, `ARCH_LR_MAX`]."""
    return min(ARCH_LR_MAX, max(ARCH_LR_MIN, ARCH_TRAVEL / max(1, arch_steps)))


def trainer_range_test(trainer, where: str) -> RangeTest:
    """The range test of a `scinas.train.Trainer` (a throwaway one): its own batches (cycled),
    hooks and weight step, the learning rate set before each step."""
    sources = trainer.sources.values()
    batches = itertools.chain.from_iterable(zip(*sources, strict=False) for _ in itertools.count())
    trainer.hooks.begin_epoch(0, None)
    trainer.model.train()

    def step(lr: float) -> float:
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        trainer.train_step(next(batches), where)
        return trainer.last_loss

    return range_test(step)


def no_fall_message(key: str, rt: RangeTest, data_name: str) -> str:
    return (
        f"{key}=auto: the learning-rate range test found no rate at which the loss falls on "
        f"{data_name} (from {rt.start_loss:.4g}, lowest {rt.min_loss:.4g} over "
        f"{len(rt.lrs)} steps at rates {LR_START:g} to {rt.lrs[-1] if rt.lrs else LR_START:.3g}; "
        f"{rt.stopped}). Check that the labels follow the inputs (not shuffled against them), "
        f"that the inputs are not constant, and the network size; or give {key} as a number."
    )


# ---- the run directory's record
def recorded(ctx, phase: str) -> dict | None:
    """A range test this run already made for ``phase`` (when resuming), else None."""
    from .rundir import read_json

    run = ctx.run
    if not ctx.resume or run is None or not run.file(RANGE_FILE).is_file():
        return None
    done = read_json(run.file(RANGE_FILE)).get(phase)
    if done and "lr" not in done and done.get("arch_lr") is not None:
        return done  # search.arch_lr=auto alone: no range test, the travel rule's choice
    return done if done and done.get("lr") is not None else None  # a failed test runs again


def relog(ctx, phase: str) -> None:
    """Log ``phase``'s recorded choice again: a run killed before its first checkpoint starts
    its logs afresh on resume, and a recorded choice is not made (nor logged) twice."""
    from .rundir import read_json

    run = ctx.run
    if run is None or not run.file(RANGE_FILE).is_file():
        return
    entry = read_json(run.file(RANGE_FILE)).get(phase)
    if entry:
        run.log_event({"event": "lr_range_test", "phase": phase, **entry})


def record(ctx, phase: str, key: str, rt: RangeTest, chosen: dict) -> None:
    """Keep the test in ``lr_range.json`` and ``metrics.jsonl``, and say what it chose."""
    from .rundir import read_json

    entry = {"key": key, **chosen, "test": rt.to_dict() if rt is not None else None}
    run = ctx.run
    if run is not None:
        path = run.file(RANGE_FILE)
        tests = read_json(path) if path.is_file() else {}
        tests[phase] = entry
        run.write_json(RANGE_FILE, tests)
        run.log_event({"event": "lr_range_test", "phase": phase, **entry})
    what = ", ".join(f"{k} {v:.3g}" for k, v in chosen.items() if isinstance(v, float))
    if rt is None:
        ctx.reporter.log(f"{key}=auto: {what} (alphas may travel {ARCH_TRAVEL:g})")
    elif rt.lr is not None:
        ctx.reporter.log(
            f"{key}=auto: range test of {len(rt.lrs)} steps ({rt.seconds:.1f}s, {rt.stopped}): "
            f"loss lowest at lr {rt.lr_at_min:.3g}, chosen {what}"
        )


def log_event(ctx, event: dict) -> None:
    """A trainer event (the divergence guard's) into the log and ``metrics.jsonl``."""
    ctx.reporter.log(event.get("message", str(event)))
    if ctx.run is not None:
        ctx.run.log_event({k: v for k, v in event.items() if k != "message"})


def _replan(ctx, phase: str, key: str, budget: float, spent: float) -> None:
    """The phase's time-budget plan with the range test's seconds taken off (same timings)."""
    p = ctx.plans.get(phase)
    if p is not None:
        ctx.plans[phase] = p.with_budget(max(0.0, budget - spent), key)


# ---- the phases
def auto_train(ctx, make_trainer: Callable, t, key: str = "train.lr", phase: str = "train"):
    """The train section with ``lr`` found by a range test on the trainer ``make_trainer(t)``
    builds (a throwaway one), when it is ``auto``; ``t`` itself otherwise."""
    if not is_auto(t.lr):
        return t
    done = recorded(ctx, phase)
    if done is not None:
        return t.model_copy(update={"lr": done["lr"]})
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        trainer = make_trainer(t.model_copy(update={"lr": 0.025}))
        rt = trainer_range_test(trainer, f"{key} range test")
    del trainer
    if rt.lr is None:
        record(ctx, phase, key, rt, {"lr": None})
        raise UserError(no_fall_message(key, rt, ctx.data.name))
    rt.seconds = spent = time.perf_counter() - t0
    if t.time_budget is not None:
        _replan(ctx, phase, "train.time_budget", t.time_budget, spent)
        t = t.model_copy(update={"time_budget": max(1e-9, t.time_budget - spent)})
    record(ctx, phase, key, rt, {"lr": rt.lr})
    return t.model_copy(update={"lr": rt.lr})
