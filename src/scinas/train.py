"""The one trainer of scinas, and what it evaluates with.

`Trainer` runs the SGD loop that both phases share: the supernet's weights during a one-shot
search and the final (discrete) network: epochs of (possibly capped) steps over one or more
seeded batch sources, a cosine learning rate stepped per batch, gradient clipping, epoch-level
metrics over the whole epoch's outputs, checkpoints with exact resume, and SIGINT/SIGTERM stops.
What differs between the phases is supplied by `TrainHooks`: `NetworkHooks` here (drop-path
schedule, auxiliary loss, augmentation) and the one-shot strategies' hooks in
`scinas.strategies.oneshot` (the architecture step before the weight step, path sampling, the
supernet score and architecture record at each epoch's end).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from . import parallel
from .checkpoint import Checkpointer, rng_state, set_rng_state
from .errors import TrainingDiverged
from .placement import Batches
from .precision import Mixed
from .signals import STOP, Interrupted
from .tasks import Task


def model_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The main output of a supernet (tensor) or a discrete network ((output, aux) tuple)."""
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def predict(model: nn.Module, batches: Batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw outputs and targets of a whole split, concatenated on the CPU."""
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    for xb, yb in batches:
        outputs.append(model_output(model, xb).float().cpu())
        targets.append(yb.cpu())
    model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def average_bn(model: nn.Module, reset: bool) -> None:
    """From now on, BatchNorm running statistics are the plain mean over the coming train-mode
    batches (``reset``: forget the earlier ones) instead of an exponential average. Torch keeps
    the count in ``num_batches_tracked``, so a checkpoint taken midway resumes the same mean."""
    for m in batchnorms(model):
        if reset:
            m.reset_running_stats()
        m.momentum = None


def stop_average_bn(model: nn.Module, momentum: float = 0.1) -> None:
    """Back to an exponential average (torch's default momentum)."""
    for m in batchnorms(model):
        m.momentum = momentum


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches, max_batches: int = 10) -> None:
    """Recompute BatchNorm running statistics as the plain mean over up to ``max_batches``
    training batches (train-mode forward, no gradients).

    A supernet's running statistics mix every step's sampled path or changing op weights, and
    after a short search they are still near their initial values: evaluated as they are, a
    supernet at 0.76 training accuracy scored chance (0.10) on digits and 0.87 after this. Single
    Path One-Shot (Guo et al., 2020) recomputes them per evaluated subnet for the same reason."""
    bns = batchnorms(model)
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    average_bn(model, reset=True)
    was_training = model.training
    model.train()
    for xb, _ in itertools.islice(iter(batches), max_batches):
        model(xb)
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


def evaluate(model: nn.Module, task: Task, batches: Batches) -> dict:
    """Task metrics over the whole split (never a mean of per-batch metrics)."""
    outputs, targets = predict(model, batches)
    return task.metrics(outputs, targets)


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
MAX_ROLLBACKS = 6  # the learning rate halves at most this often (1/64) before the phase stops
SMALL_BATCH = 0.5  # a batch under this share of the largest seen is not tested for explosion


class LossGuard:
    """When a training loss counts as diverged (`DivergenceGuard` in `Trainer`).

    NaN or inf, above `ABSURD_LOSS`, or exploded: above `EXPLODE_FACTOR` times the median of the
    last `GUARD_WINDOW` steps' losses *and* above the loss the phase started at (its first step's,
    taken before any update: an untrained network's, about chance level). The second condition
    keeps a late noisy batch of a well-trained network (median 0.02, one batch at 0.3) from
    counting: a diverging SGD run climbs far above where it started, which a healthy one never
    does. The first condition catches it early: at 30x the digits learning rate the second
    step's loss was 1504 against 2.9 at the first.

    A small batch (under `SMALL_BATCH` of the largest seen: an epoch's ragged last one) is only
    tested for NaN/inf and `ABSURD_LOSS`, and stays out of the window: the mean over a few
    samples, under BatchNorm's statistics of those few, is too noisy to compare. A 50-epoch DARTS
    search on 2,500 CIFAR images overfitted to a median of 0.04, and the 4 images of every
    epoch's last batch then scored 2.8, above the starting 2.32, at every rate the guard tried:
    6 rollbacks, then a stop, though nothing diverged (a true explosion shows on the next full
    batch too)."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.recent = collections.deque(state.get("recent", []), maxlen=GUARD_WINDOW)
        self.start: float | None = state.get("start")
        self.largest: float = state.get("largest", 0.0)

    def problem(self, value: float, size: float | None = None) -> str | None:
        """Why ``value``, a step's loss over ``size`` samples (None: a full batch), counts as
        diverged, or None (then it joins the running window, unless the batch is small)."""
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
            if value > EXPLODE_FACTOR * median and value > self.start:
                return (
                    f"is over {EXPLODE_FACTOR:g}x the running median {median:.3g} and above the "
                    f"starting loss {self.start:.3g}"
                )
        self.recent.append(value)
        if self.start is None and len(self.recent) >= GUARD_START:
            self.start = statistics.median(self.recent)
        return None

    def state_dict(self) -> dict:
        return {"recent": list(self.recent), "start": self.start, "largest": self.largest}


def _cpu_copy(obj):
    """A deep copy of a (nested) state with every tensor copied to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(params, name: str, lr: float, momentum: float, weight_decay: float):
    """The weight optimiser ``name`` (`OPTIMIZERS`): SGD with momentum, or AdamW with
    ``momentum`` as its first beta and decoupled weight decay."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def cosine_sgd(params, lr, lr_min, momentum, weight_decay, steps, optimizer: str = "sgd"):
    """The optimiser (SGD by default) with a cosine schedule from ``lr`` to ``lr_min`` over
    ``steps`` optimiser steps.

    Stepped per batch, not per epoch as DARTS did: the same curve for long runs, and a run of
    one or two epochs (a small time budget) still anneals."""
    optimizer = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps), eta_min=lr_min)
    return optimizer, scheduler


class TrainHooks(Protocol):
    """What a phase supplies to the `Trainer`; the trainer owns the loop, the weight update, the
    schedule, the checkpoints and the stops."""

    def begin_epoch(self, epoch: int, partial: dict | None) -> None:
        """Per-epoch schedules (drop-path, the Gumbel temperature). ``partial``: the mid-epoch
        checkpoint's epoch so far when resuming into this epoch (see `partial`), else None."""

    def loss(
        self, batch: tuple, optimizer: torch.optim.Optimizer, where: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss of the weight step, main output, targets as the dataset has them) of one step.
        ``batch`` holds one (x, y) per batch source; whatever must come before the weight step
        (an architecture step on the second source, a sampled path) happens here."""

    def partial(self) -> dict:
        """What a mid-epoch checkpoint keeps of this epoch beyond its outputs and targets."""

    def end_epoch(self, epoch: int, train: dict, lr: float, started: float) -> dict:
        """Validate and log the epoch (``train``: its training metrics, ``lr``: its first step's
        learning rate, ``started``: its `time.perf_counter`); returns its history record, plain
        data since it is checkpointed."""

    def state_dict(self) -> dict:
        """Hook state a checkpoint needs beyond the model and the weight optimiser."""

    def load_state_dict(self, state: dict) -> None: ...


class Trainer:
    """SGD with a per-step cosine schedule over epochs of steps, with exact resume.

    Each step takes one batch from every source (``sources``: e.g. the weight and architecture
    halves of a search, zipped), asks the hooks for the loss, then clips the gradients of
    ``params`` and steps. An epoch has the sources' batches (the shortest's), at most
    ``steps_per_epoch``; each epoch reshuffles. Training metrics are over all of an epoch's
    outputs (train mode, as augmented), never a mean of per-batch metrics.

    ``bn_tail``: BatchNorm running statistics become the plain mean over each epoch's last
    ``bn_tail`` steps (`average_bn`): for a supernet whose every op sees every batch, they are
    then those of the weights at the epoch's end, at no cost.

    With a `scinas.checkpoint.Checkpointer`, every epoch ends with a checkpoint, and SIGINT or
    SIGTERM (`scinas.signals.STOP`) with one after the current step, then `Interrupted`.
    `resume` continues from the newest one bit-identically on CPU: ``generators`` must name every
    generator the hooks draw from (the sources' own are added here).

    Divergence guard: each epoch starts by keeping its state in memory (weights, optimiser,
    schedule, hook state such as the architecture optimiser, every RNG; copied to the CPU). When
    a step's loss diverges (`LossGuard`: NaN/inf, or exploded) the epoch is rolled back to that
    state, every learning rate of the schedule is halved (the architecture one too when it was
    the architecture loss; hooks with ``scale_lr``) and the epoch runs again on the same batches;
    ``on_event`` receives a ``divergence`` record. After `MAX_ROLLBACKS` halvings the phase stops
    with `TrainingDiverged` as before.

    With a ``deadline``, the epochs left are re-planned after each epoch from the measured ones
    (`fit_to_deadline`); ``on_event`` receives a ``budget_replan`` record when their count changes.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        hooks: TrainHooks,
        sources: dict[str, Batches],
        *,
        epochs: int,
        lr: float,
        lr_min: float,
        momentum: float,
        weight_decay: float,
        grad_clip: float,
        steps_per_epoch: int | None = None,
        params: Iterable[nn.Parameter] | None = None,
        generators: dict[str, torch.Generator] | None = None,
        checkpointer: Checkpointer | None = None,
        track: Callable | None = None,
        bn_tail: int = 0,
        phase: str = "training",
        label: str = "train",
        lr_key: str = "train.lr",
        on_event: Callable[[dict], None] | None = None,
        precision: str = "fp32",
        optimizer: str = "sgd",
    ):
        self.model, self.task, self.hooks, self.sources = model, task, hooks, sources
        self.on_event = on_event
        self.guard, self.rollbacks, self.steps_done = LossGuard(), 0, 0
        self.epochs, self.grad_clip, self.bn_tail = epochs, grad_clip, bn_tail
        self.checkpointer, self.track = checkpointer, track
        self.phase, self.label, self.lr_key = phase, label, lr_key
        self.full_steps = min(len(b) for b in sources.values())
        self.n_steps = min(self.full_steps, steps_per_epoch or self.full_steps)
        self.params = list(model.parameters() if params is None else params)
        self.optimizer, self.scheduler = cosine_sgd(
            self.params, lr, lr_min, momentum, weight_decay, epochs * self.n_steps, optimizer
        )
        self.generators = {n: b.generator for n, b in sources.items() if b.generator is not None}
        self.generators.update(generators or {})
        self.history: list[dict] = []
        self.start_epoch, self.start_step, self.partial = 0, 0, None
        # a `time.perf_counter` instant after which no step starts: the epoch in progress is
        # validated as it stands and training ends (`scinas compare`'s one budget per method;
        # the cosine schedule is then cut short where the plan was too optimistic)
        self.deadline: float | None = None
        self.out_of_time = False
        # the work after training that a deadline keeps time for, in validation passes (the
        # test split's, `scinas compare`), and its seconds as measured from the epochs so far
        self.finish_passes, self.finish_seconds = 0.0, 0.0
        self.epoch_ends: list[float] = []  # perf_counter instants, for `fit_to_deadline`
        # (seconds in the step loop, steps, seconds validating) of each epoch since then, for
        # `fit_to_deadline`
        self.epoch_loops: list[tuple[float, int, float]] = []
        self._loop: tuple[float, int, float] = (0.0, 0, 0.0)
        # the steps of the last epoch when a deadline planned it partial (None: a whole one)
        self.last_steps: int | None = None
        # autocast and, for fp16, the gradient scaler (scinas.precision)
        self.mixed = Mixed(precision, self.params[0].device.type if self.params else "cpu")

    @property
    def checkpointing(self) -> bool:
        return self.checkpointer is not None and self.checkpointer.enabled

    def resume(self) -> bool:
        """Load the newest checkpoint (and cut the logs back to it); False when there is none."""
        state = self.checkpointer.load() if self.checkpointer is not None else None
        state = parallel.from_rank0(state)  # DDP: process 0 reads it for all
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.mixed.load_state_dict(state.get("scaler"))
        self.hooks.load_state_dict(state["hooks"])
        self.history = state["history"]
        self.start_epoch, self.start_step = state["epoch"], state["step"]
        self.guard = LossGuard(state.get("guard"))
        self.rollbacks = state.get("rollbacks", 0)
        # the epochs as re-planned to a deadline (`fit_to_deadline`), whose cosine the scheduler's
        # state already holds: the resumed run ends where the schedule reaches its floor
        self.epochs = state.get("epochs", self.epochs)
        self.last_steps = state.get("last_steps")
        if hasattr(self.hooks, "epochs"):
            self.hooks.epochs = self.epochs
        set_rng_state(state["rng"], self.generators)
        if self.start_step:
            self.partial = state["partial"]
            # stopped after an epoch's last step, its order is spent: the next pass draws anew
            if self.start_step < self.n_steps:
                for name, b in self.sources.items():
                    b.resume_at(state["orders"][name], self.start_step)
        return True

    def save(self, epoch: int, step: int, partial: dict | None = None) -> None:
        """Checkpoint the state after ``step`` steps of ``epoch`` (0: the epoch is done)."""
        if self.checkpointer is None:
            return
        self.checkpointer.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.mixed.state_dict(),
                "hooks": self.hooks.state_dict(),
                "history": self.history,
                "epoch": epoch,
                "step": step,
                "rng": rng_state(self.generators),
                "orders": {n: b.order for n, b in self.sources.items()} if step else None,
                "partial": partial,
                "guard": self.guard.state_dict(),
                "rollbacks": self.rollbacks,
                "epochs": self.epochs,  # a deadline may have re-planned them
                "last_steps": self.last_steps,  # and made the last epoch a partial one
            }
        )

    def train_step(self, batch: tuple, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One weight update on ``batch`` (one (x, y) per source); returns the main output
        (detached) and the targets. The schedule is not stepped (`run` does)."""
        with self.mixed.autocast():  # the forward passes (precision=bf16/fp16)
            loss, out, target = self.hooks.loss(batch, self.optimizer, where)
        # the global batch's loss and size under DDP
        n = torch.full_like(loss.detach().float(), float(len(target)))
        value, size = parallel.total(torch.stack([loss.detach().float(), n])).tolist()
        self.last_loss = value
        if (why := self.guard.problem(value, size)) is not None:
            e = diverged(value, where, self.lr_key, self.optimizer.param_groups[0]["lr"])
            e.reason = why
            raise e
        self.optimizer.zero_grad(set_to_none=True)
        self.mixed.backward(loss)
        parallel.all_reduce_grads(self.params)  # DDP: the global batch's gradients
        self.mixed.unscale(self.optimizer)
        nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.mixed.step(self.optimizer)
        return out.detach(), target

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
        if not hasattr(e, "loss"):
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
        arch = getattr(e, "lr_key", self.lr_key) != self.lr_key
        if arch and hasattr(self.hooks, "scale_lr"):
            self.hooks.scale_lr(0.5)
        event = {
            "event": "divergence",
            "phase": self.phase,
            "epoch": snap["epoch"] + 1,
            "at": getattr(e, "where", ""),
            "loss": e.loss if math.isfinite(e.loss) else str(e.loss),
            "reason": getattr(e, "reason", "the architecture loss diverged"),
            "lr_key": getattr(e, "lr_key", self.lr_key),
            "lr_before": lr_before,
            "lr_after": self.optimizer.param_groups[0]["lr"],
            "rollback": self.rollbacks,
            "message": (
                f"divergence guard: the loss {getattr(e, 'reason', 'diverged')} "
                f"({e.loss:.3g}); rolled back to the start of {self.phase} epoch "
                f"{snap['epoch'] + 1}, learning rate halved"
                + (f", {e.lr_key} too" if arch else "")
                + f" (rollback {self.rollbacks} of at most {MAX_ROLLBACKS})"
            ),
        }
        if self.on_event is not None:
            self.on_event(event)

    def run(self) -> list[dict]:
        """Train the remaining epochs; returns every epoch's history record.

        The divergence guard keeps the snapshots of this epoch's start and the previous one's:
        a loss that diverges on the first step after a snapshot shows the snapshot itself is bad
        (the previous epoch ended diverged without a step saying so), so the run goes back one
        epoch further, whose record is then superseded by the rerun's."""
        # a stop request waits for the next step only where that step checkpoints
        with STOP.listening() if self.checkpointing else contextlib.nullcontext():
            return self._run()

    def _run(self) -> list[dict]:
        epoch, first = self.start_epoch, self.start_step
        snaps: list[dict] = []
        self.epoch_ends, self.epoch_loops = [time.perf_counter()], []
        while epoch < self.epochs and not (self.out_of_time and self.history):
            if self.deadline is not None and self.history and self.past_deadline():
                break  # no epoch starts after the deadline once one has run
            snaps = [*snaps[-1:], self.snapshot(epoch, first)]
            self.steps_done = 0
            try:
                self.run_epoch(epoch, first)
            except TrainingDiverged as e:
                back = snaps[-1] if self.steps_done or len(snaps) < 2 else snaps[-2]
                self.roll_back(back, e)
                snaps = snaps[: snaps.index(back)]  # retaken at the top, at the halved rate
                epoch, first = back["epoch"], back["first"]
                continue
            epoch, first = epoch + 1, 0
            self.epoch_ends.append(time.perf_counter())
            self.epoch_loops.append(self._loop)
            if self.deadline is not None and epoch < self.epochs:
                self.fit_to_deadline(epoch)
        if self.deadline is not None and self.history:
            self.end_plan(epoch)
        return self.history

    def steps_in(self, epoch: int) -> int:
        """The steps epoch ``epoch`` (0-based) takes: all of them but in a partial last one."""
        last = epoch == self.epochs - 1 and self.last_steps is not None
        return min(self.n_steps, self.last_steps) if last else self.n_steps

    def planned_steps(self) -> int:
        """The optimiser steps of the whole plan, where the cosine schedule reaches its floor."""
        # closed form: a plan of 10^11 epochs costs no more to count than one of 10
        if self.epochs <= 0:
            return 0
        return (self.epochs - 1) * self.n_steps + self.steps_in(self.epochs - 1)

    def fit_to_deadline(self, done: int) -> None:
        """Re-plan the epochs after the ``done`` first so that the last one ends at ``deadline``,
        from what the epochs of this call took, wall to wall (validation and checkpoint
        included; the first one alone until a second has run, as it carries the warm-up). The
        plan made before training timed a few steps on a throwaway copy, which was 14-45% off
        for ResNets on a 2-core CPU (they used 72-83% of a compare's budget before this).

        The new plan is as many whole epochs as fit, then a partial last one of the steps that
        fit in what is left, once its validation (the epoch's time outside its step loop) is
        paid. Whole epochs alone left up to an epoch unused: 35 s of a 600 s compare run whose
        epochs took 43 s (94% of its budget used). The cosine schedule is stretched or shrunk to
        reach its floor at the new last step.

        A plan that ends less than a quarter of an epoch before the deadline, or within a tenth
        of one after it, is kept, and early on, while 2% of the time left is more than that,
        within 2% of it: a percent of noise in the epoch times over a hundred epochs left does
        not move the plan back and forth (it did, between 107 and 108 epochs of 3.15 s, before
        this tolerance)."""
        ends, loops = self.epoch_ends, self.epoch_loops
        window = slice(1, None) if len(ends) > 2 else slice(0, 1)
        per = (ends[-1] - ends[1]) / (len(ends) - 2) if len(ends) > 2 else ends[1] - ends[0]
        timed = loops[window]
        seconds, steps = sum(x[0] for x in timed), sum(x[1] for x in timed)
        step = seconds / steps if steps else per / self.n_steps  # no loop timed: all steps
        validating = sum(x[2] for x in timed) / len(timed) if timed else 0.0
        # DDP: process 0's clock decides, so that every process plans the same epochs
        per, step, validating, left = parallel.from_rank0(
            (per, step, validating, self.deadline - time.perf_counter())
        )
        if per <= 0 or step <= 0:
            return
        overhead = max(0.0, per - self.n_steps * step)  # validation, checkpoint, hooks
        # testing after training costs about ``finish_passes`` validation passes, as timed in
        # the epochs (not the whole overhead: the guard's snapshot and the checkpoint of a
        # ResNet-10 doubled it); the steps stop that much earlier (the one-batch timing before
        # the run was 1.9x off for it)
        self.finish_seconds = self.finish_passes * validating
        left -= self.finish_seconds

        def seconds_for(epoch: int) -> float:
            n = self.steps_in(epoch)
            return per if n == self.n_steps else overhead + n * step

        # every epoch left but the last is whole (closed form, whatever the planned count)
        planned = max(0, self.epochs - done - 1) * per + seconds_for(self.epochs - 1)
        unused = left - (planned if self.epochs > done else 0.0)  # < 0: overrun
        slack = 0.02 * max(0.0, left)
        if -max(0.1 * per, slack) <= unused < max(0.25 * per, slack):
            return
        whole = max(0, math.floor(left / per))
        partial = math.floor((left - whole * per - overhead) / step)  # steps of a last epoch
        epochs = done + whole + (partial >= 1)
        last = min(partial, self.n_steps - 1) if partial >= 1 else None
        if (epochs, last) == (self.epochs, self.last_steps):
            return
        before, before_last = self.epochs, self.last_steps
        self.epochs, self.last_steps = epochs, last
        if hasattr(self.hooks, "epochs"):
            self.hooks.epochs = epochs
        self.scheduler.T_max = max(1, self.planned_steps())
        # an event when the count changes, and for the plan of the last epoch; a change of the
        # partial epoch's steps alone before that is not news (epochs of 0.2 s on a loaded
        # machine moved it after most epochs)
        news = epochs != before or (last is None) != (before_last is None) or done >= epochs - 1
        if self.on_event is not None and news:
            of = f", the last one {last} of {self.n_steps} steps" if last else ""
            was = f"{before}" + (f" (the last {before_last} steps)" if before_last else "")
            self.on_event(
                {
                    "event": "budget_replan",
                    "phase": self.phase,
                    "after_epoch": done,
                    "epoch_seconds": per,
                    "step_seconds": step,
                    "epochs_before": before,
                    "epochs": epochs,
                    "last_epoch_steps": last,
                    "steps_per_epoch": self.n_steps,
                    "message": (
                        f"{self.phase}: an epoch takes {per:.2f} s, so {epochs} epochs{of} "
                        f"instead of {was} end at the run's deadline ({left:.0f} s left); "
                        "the learning-rate schedule is fitted to them"
                    ),
                }
            )

    def end_plan(self, done: int) -> None:
        """The run stopped at its deadline after ``done`` epochs: the plan becomes those epochs
        and the last one's record names it. An epoch slower than the measured ones (a loaded
        machine) leaves no time for the epochs planned after it, but its record, written before
        the re-plan that drops them, named them: the history then claimed epochs that never ran."""
        before = self.epochs
        if done < before:  # stopped before the plan's end (the deadline passed mid-plan)
            self.epochs, self.last_steps = done, None
            if hasattr(self.hooks, "epochs"):
                self.hooks.epochs = done
            self.scheduler.T_max = max(1, self.planned_steps())
            if self.on_event is not None:
                self.on_event(
                    {
                        "event": "budget_replan",
                        "phase": self.phase,
                        "after_epoch": done,
                        "epochs_before": before,
                        "epochs": done,
                        "last_epoch_steps": None,
                        "steps_per_epoch": self.n_steps,
                        "message": (
                            f"{self.phase}: the run's time was up after {done} of {before} "
                            "planned epochs (an epoch ran slower than the ones before it)"
                        ),
                    }
                )
        if "epochs" in self.history[-1]:
            self.history[-1]["epochs"] = done

    def past_deadline(self) -> bool:
        """Whether ``deadline`` (less the time kept for testing) has passed (on any process);
        remembered in ``out_of_time``."""
        self.out_of_time = parallel.any_(time.perf_counter() >= self.deadline - self.finish_seconds)
        return self.out_of_time

    def run_epoch(self, epoch: int, first: int) -> None:
        """Train epoch ``epoch`` from step ``first``, validate it, checkpoint it."""
        model, hooks = self.model, self.hooks
        started = time.perf_counter()
        model.train()
        lr = self.optimizer.param_groups[0]["lr"]  # the epoch's first step's
        partial, self.partial = self.partial, None
        hooks.begin_epoch(epoch, partial)
        outs, tgts = [], []
        if partial is not None:  # resumed mid-epoch
            lr = partial["lr"]
            if parallel.rank() == 0:  # DDP: the checkpoint holds every process's outputs
                outs, tgts = [partial["outs"]], [partial["tgts"]]
        checkpointing = parallel.from_rank0(self.checkpointing)  # DDP: process 0 writes them
        batches = zip(*self.sources.values(), strict=False)  # the shortest source ends it
        n = self.steps_in(epoch)  # a partial last epoch planned to a deadline stops early
        steps = itertools.islice(batches, max(0, n - first))
        if self.track is not None:
            label = f"{self.label} {epoch + 1}/{self.epochs}"
            steps = self.track(steps, max(0, n - first), label)
        tail = max(0, n - self.bn_tail)
        loop_start, taken = time.perf_counter(), 0
        for step, batch in enumerate(steps, start=first):
            # (one step of the epoch at least, so that it has training metrics)
            if self.deadline is not None and outs and self.past_deadline():
                break
            if self.bn_tail and step >= tail:
                average_bn(model, reset=step == tail)
            where = f"{self.phase} epoch {epoch + 1}, step {step + 1}"
            out, target = self.train_step(batch, where)
            self.steps_done += 1
            taken += 1
            self.scheduler.step()
            outs.append(out.float().cpu())
            tgts.append(target.cpu())
            if parallel.any_(STOP) and checkpointing:
                sofar = {
                    "outs": parallel.gather(torch.cat(outs)),
                    "tgts": parallel.gather(torch.cat(tgts)),
                    "lr": lr,
                }
                self.save(epoch, step + 1, {**sofar, **hooks.partial()})
                raise Interrupted(f"stopped in {self.phase} epoch {epoch + 1}, step {step + 1}")
        loop_seconds = time.perf_counter() - loop_start
        if self.bn_tail:
            stop_average_bn(model)
        # DDP: over every process's outputs
        outputs, targets = parallel.gather(torch.cat(outs)), parallel.gather(torch.cat(tgts))
        train = self.task.metrics(outputs, targets)
        validating = time.perf_counter()
        self.history.append(hooks.end_epoch(epoch, train, lr, started))
        self._loop = (loop_seconds, taken, time.perf_counter() - validating)
        self.save(epoch + 1, 0)
        if parallel.any_(STOP) and checkpointing:
            raise Interrupted(f"stopped after {self.phase} epoch {epoch + 1}")


@dataclass
class EpochStats:
    epoch: int
    train: dict
    val: dict
    lr: float
    seconds: float
    epochs: int = 0  # the epochs planned when this one ended (a deadline can re-plan them)


class NetworkHooks:
    """The final (discrete) network's side of the trainer: augmentation, the auxiliary head's
    weighted loss, and drop-path ramped linearly over the epochs (as DARTS does)."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        val_batches: Batches,
        *,
        epochs: int,
        auxiliary_weight: float = 0.0,
        drop_path_prob: float = 0.0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        label_smoothing: float = 0.0,
    ):
        self.model, self.task, self.val_batches = model, task, val_batches
        self.label_smoothing = label_smoothing
        self.epochs, self.auxiliary_weight = epochs, auxiliary_weight
        self.drop_path_prob, self.augment, self.on_epoch = drop_path_prob, augment, on_epoch

    def begin_epoch(self, epoch: int, partial: dict | None) -> None:
        if hasattr(self.model, "drop_path_prob"):
            self.model.drop_path_prob = self.drop_path_prob * epoch / self.epochs

    def loss(self, batch, optimizer, where):
        ((xb, yb),) = batch
        if self.augment is not None:
            xb = self.augment(xb)
        xb, yb = parallel.shard(xb, yb)  # DDP: this process's share of the augmented batch
        out = self.model(xb)
        out, aux = out if isinstance(out, tuple) else (out, None)
        target = self.task.encode_targets(yb)
        smooth = {"smoothing": self.label_smoothing} if self.label_smoothing else {}
        loss = self.task.loss(out, target, **smooth)
        if aux is not None and self.auxiliary_weight > 0:
            loss = loss + self.auxiliary_weight * self.task.loss(aux, target, **smooth)
        return parallel.scale_loss(loss, len(xb)), out, yb

    def partial(self) -> dict:
        return {}

    def end_epoch(self, epoch: int, train: dict, lr: float, started: float) -> dict:
        val = evaluate(self.model, self.task, self.val_batches)
        stats = EpochStats(epoch + 1, train, val, lr, time.perf_counter() - started, self.epochs)
        if self.on_epoch is not None:
            self.on_epoch(stats)
        return vars(stats)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the drop-path ramp follows the epoch, augmentation its generator."""


def network_trainer(
    model: nn.Module,
    task: Task,
    train_batches: Batches,
    val_batches: Batches,
    *,
    epochs: int,
    lr: float,
    lr_min: float,
    momentum: float,
    weight_decay: float,
    grad_clip: float,
    auxiliary_weight: float = 0.0,
    drop_path_prob: float = 0.0,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    track: Callable | None = None,
    checkpointer: Checkpointer | None = None,
    generators: dict[str, torch.Generator] | None = None,
    steps_per_epoch: int | None = None,
    precision: str = "fp32",
    optimizer: str = "sgd",
    label_smoothing: float = 0.0,
) -> Trainer:
    """The `Trainer` of a discrete network (see `train_network`)."""
    hooks = NetworkHooks(
        model,
        task,
        val_batches,
        epochs=epochs,
        auxiliary_weight=auxiliary_weight,
        drop_path_prob=drop_path_prob,
        augment=augment,
        on_epoch=on_epoch,
        label_smoothing=label_smoothing,
    )
    return Trainer(
        model,
        task,
        hooks,
        {"batches": train_batches},
        epochs=epochs,
        lr=lr,
        lr_min=lr_min,
        momentum=momentum,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        steps_per_epoch=steps_per_epoch,
        generators=generators,
        checkpointer=checkpointer,
        track=track,
        precision=precision,
        optimizer=optimizer,
    )


def train_network(
    model: nn.Module,
    task: Task,
    train_batches: Batches,
    val_batches: Batches,
    *,
    resume: bool = False,
    **settings,
) -> list[EpochStats]:
    """Train a discrete network with SGD + cosine schedule, auxiliary loss and drop-path.

    Train metrics are computed over all batches' outputs of the epoch (in train mode, with
    augmentation), validation metrics over the whole validation split in eval mode. ``settings``
    are `network_trainer`'s; with its checkpointer, ``resume`` continues from the newest
    checkpoint, bit-identically on CPU provided ``generators`` names the augmentation's.
    """
    trainer = network_trainer(model, task, train_batches, val_batches, **settings)
    if resume:
        trainer.resume()
    return [EpochStats(**h) for h in trainer.run()]
