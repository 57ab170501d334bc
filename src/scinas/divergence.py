"""The trainer's divergence guard: when a loss counts as diverged (`LossGuard`), and the rollback
of an epoch to its start at half the learning rate (`DivergenceGuard`, a part of `Trainer`)."""

from __future__ import annotations

import collections
import copy
import math
import statistics

import torch

from .checkpoint import rng_state, set_rng_state
from .errors import TrainingDiverged
from .evaluation import stop_average_bn


def diverged(value: float, where: str, lr_key: str, lr: float) -> TrainingDiverged:
    """The error of a loss that diverged, advising a lower learning rate; ``lr_key`` names it."""
    e = TrainingDiverged(
        f"the loss became {value:.3g} ({where}): training diverged. Lower the learning rate "
        f"{lr_key} (now {lr:g}), e.g. --set {lr_key}={lr / 4:g}, or lower the gradient clip."
    )
    e.lr_key, e.loss, e.where = lr_key, value, where
    return e


def check_finite(loss: torch.Tensor, where: str, lr_key: str, lr: float) -> None:
    """Stop with advice when the loss is NaN/inf or has exploded (a diverging learning rate)."""
    value = loss.item()
    if not math.isfinite(value) or value > ABSURD_LOSS:
        raise diverged(value, where, lr_key, lr)


ABSURD_LOSS = 1e4  # a loss above this has diverged whatever the task (targets are standardised)
EXPLODE_FACTOR = 10.0  # a loss this many times the running median has exploded...
GUARD_WINDOW = 50  # ...the median of the last this many steps' losses...
GUARD_START = 1  # ...and above the phase's starting loss (its first step's: before any update)
START_FACTOR = 2.0  # ...times this
MAX_ROLLBACKS = 6  # the learning rate halves at most this often (1/64) before the phase stops
SMALL_BATCH = 0.5  # a batch under this share of the largest seen is not tested for explosion


class LossGuard:
    """When a training loss counts as diverged (`DivergenceGuard` in `Trainer`).

    NaN or inf, above `ABSURD_LOSS`, or exploded on two full batches in a row: above
    `EXPLODE_FACTOR` times the median of the last `GUARD_WINDOW` steps' losses *and* above
    `START_FACTOR` times the loss the phase started at (its first step's, taken before any
    update: an untrained network's, about chance level). The second condition keeps a late
    noisy batch of a well-trained network (median 0.02, one batch at 0.3) from counting: a
    diverging SGD run climbs far above where it started, which a healthy one never does. Its
    factor leaves room for a batch that is confidently wrong on a few samples, which costs more
    than chance: on GunPoint (two classes, start log 2 = 0.69, batches of 16 of 45 series),
    resnet1d at epoch 37 met batches at 0.93 and 0.75 against a median of 0.07, and again at
    0.75-0.78 at every halved rate: 6 rollbacks, then a failed seed, though nothing diverged.
    The first condition catches a divergence early: at 30x the digits learning rate the second
    step's loss was 1504 against 2.9 at the first.

    A small batch (under `SMALL_BATCH` of the largest seen: an epoch's ragged last one) is only
    tested for NaN/inf and `ABSURD_LOSS`, and stays out of the window: the mean over a few
    samples, under BatchNorm's statistics of those few, is too noisy to compare. A 50-epoch DARTS
    search on 2,500 CIFAR images overfitted to a median of 0.04, and the 4 images of every
    epoch's last batch then scored 2.8, above the starting 2.32, at every rate the guard tried:
    6 rollbacks, then a stop, though nothing diverged (a true explosion shows on the next full
    batch too).

    For the same reason one exploded batch is only a suspect: the phase has diverged when the
    next full batch explodes too. A network that fits 60 training series perfectly (median
    0.0002) met one batch of 16 at 1.06 every epoch, above the starting 0.69, at every halved
    rate: 6 rollbacks, then a stop, where a diverging rate climbs on from step to step."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.recent = collections.deque(state.get("recent", []), maxlen=GUARD_WINDOW)
        self.start: float | None = state.get("start")
        self.largest: float = state.get("largest", 0.0)
        self.suspect: float | None = state.get("suspect")  # the last full batch exploded
        # a constant output's loss on the first batch: the start is at least that, so that a
        # network that starts trained (a search's winner going on, loss 0.0003) is not taken
        # to diverge at a noisy batch of 0.3 (set by the trainer before the first step)
        self.floor: float | None = None

    def problem(self, value: float, size: float | None = None) -> str | None:
        """Why ``value``, a step's loss over ``size`` samples (None: a full batch), counts as
        diverged, or None (then it joins the running window, unless the batch is small or the
        loss a first exploded one: a suspect)."""
        if not math.isfinite(value):
            return "is not finite"
        if value > ABSURD_LOSS:
            return f"is above {ABSURD_LOSS:g}"
        if size is not None:
            self.largest = max(self.largest, size)
            if size < SMALL_BATCH * self.largest:
                return None
        if len(self.recent) >= GUARD_START and self.start is not None:
            median = statistics.median(self.recent)
            if value > EXPLODE_FACTOR * median and value > START_FACTOR * self.start:
                if self.suspect is None:  # one batch may be an outlier: see the next
                    self.suspect = value
                    return None
                return (
                    f"is over {EXPLODE_FACTOR:g}x the running median {median:.3g} and above "
                    f"{START_FACTOR:g}x the starting loss {self.start:.3g}, as the batch before "
                    "it was "
                    f"({self.suspect:.3g})"
                )
        self.suspect = None
        self.recent.append(value)
        if self.start is None and len(self.recent) >= GUARD_START:
            self.start = max(statistics.median(self.recent), self.floor or 0.0)
        return None

    def state_dict(self) -> dict:
        return {
            "recent": list(self.recent),
            "start": self.start,
            "largest": self.largest,
            "suspect": self.suspect,
        }


def _cpu_copy(obj):
    """A deep copy of a (nested) state with every tensor copied to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


class DivergenceGuard:
    """`Trainer`'s rollback: each epoch starts from a snapshot it can return to."""

    def snapshot(self, epoch: int, first: int) -> dict:
        """What rolling back to the start of this epoch (or the resumed step ``first``) needs."""
        return {
            "epoch": epoch,
            "first": first,
            "model": _cpu_copy(self.model.state_dict()),
            "optimizer": _cpu_copy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "hooks": _cpu_copy(self.hooks.state_dict()),
            "scaler": _cpu_copy(self.mixed.state_dict()),
            "rng": rng_state(self.generators),
            "resume": {n: getattr(b, "_resume", None) for n, b in self.sources.items()},
            "partial": self.partial,
            "guard": self.guard.state_dict(),
            "history": len(self.history),
        }

    def roll_back(self, snap: dict, e: TrainingDiverged) -> None:
        """Restore ``snap``, halve the learning rates, record the event (or stop: too often)."""
        if e.loss is None:
            raise e
        if self.rollbacks >= MAX_ROLLBACKS:
            raise TrainingDiverged(
                f"{e} The divergence guard had already rolled back and halved it "
                f"{MAX_ROLLBACKS} times."
            ) from None
        self.rollbacks += 1
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.scheduler.load_state_dict(snap["scheduler"])
        self.hooks.load_state_dict(snap["hooks"])
        self.mixed.load_state_dict(snap["scaler"])
        set_rng_state(snap["rng"], self.generators)
        for name, resume in snap["resume"].items():
            if resume is not None:
                self.sources[name].resume_at(*resume)
        self.partial = snap["partial"]
        self.guard = LossGuard(snap["guard"])
        self.history = self.history[: snap["history"]]
        if self.bn_tail:
            stop_average_bn(self.model)
        lr_before = self.optimizer.param_groups[0]["lr"]  # where the epoch starts again
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        self.scheduler.base_lrs = [lr * 0.5 for lr in self.scheduler.base_lrs]
        self.scheduler.eta_min *= 0.5
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        arch = e.lr_key != self.lr_key
        if arch and hasattr(self.hooks, "scale_lr"):
            self.hooks.scale_lr(0.5)
        event = {
            "event": "divergence",
            "phase": self.phase,
            "epoch": snap["epoch"] + 1,
            "at": e.where,
            "loss": e.loss if math.isfinite(e.loss) else str(e.loss),
            "reason": e.reason or "the architecture loss diverged",
            "lr_key": e.lr_key,
            "lr_before": lr_before,
            "lr_after": self.optimizer.param_groups[0]["lr"],
            "rollback": self.rollbacks,
            "message": (
                f"divergence guard: the loss {e.reason or 'diverged'} "
                f"({e.loss:.3g}); rolled back to the start of {self.phase} epoch "
                f"{snap['epoch'] + 1}, learning rate halved"
                + (f", {e.lr_key} too" if arch else "")
                + f" (rollback {self.rollbacks} of at most {MAX_ROLLBACKS})"
            ),
        }
        if self.on_event is not None:
            self.on_event(event)
