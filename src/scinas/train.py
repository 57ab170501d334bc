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

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from . import parallel
from .checkpoint import Checkpointer, load_fitting, rng_state, set_rng_state
from .deadline import DeadlinePlanning

# the trainer's parts stay importable from here, as before they were split off
from .divergence import MAX_ROLLBACKS, DivergenceGuard, LossGuard, check_finite, diverged  # noqa: F401
from .errors import TrainingDiverged
from .evaluation import (  # noqa: F401
    average_bn,
    batchnorms,
    evaluate,
    model_output,
    predict,
    recalibrate_bn,
    stop_average_bn,
)
from .optim import OPTIMIZERS, cosine_sgd, make_optimizer  # noqa: F401
from .placement import Batches
from .precision import Mixed
from .signals import STOP, Interrupted
from .tasks import Task


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


class Trainer(DivergenceGuard, DeadlinePlanning):
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
        self.finish_views = lambda: 0  # the test-time views that testing will average, so far
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
        load_fitting(self.model, state["model"], self.checkpointer.folder)
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
        # the global batch's loss and size under DDP (and before the first step, a constant
        # output's loss: the divergence guard's floor)
        n = torch.full_like(loss.detach().float(), float(len(target)))
        parts = [loss.detach().float(), n]
        if self.guard.start is None:
            with torch.no_grad():
                zero = torch.zeros_like(out, dtype=torch.float32)
                parts.append(self.task.loss(zero, self.task.encode_targets(target)).float() * n)
        value, size, *floor = parallel.total(torch.stack(parts)).tolist()
        if floor:
            self.guard.floor = floor[0] / size
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
        auto_augment=None,
    ):
        self.model, self.task, self.val_batches = model, task, val_batches
        self.auto_augment = auto_augment  # train.augment=auto (`scinas.symmetry.AutoAugment`)
        self.epochs, self.auxiliary_weight, self.on_epoch = epochs, auxiliary_weight, on_epoch
        self.drop_path_prob, self.augment, self.smoothing = drop_path_prob, augment, label_smoothing

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
        smooth = {"smoothing": self.smoothing} if self.smoothing else {}
        loss = self.task.loss(out, target, **smooth)
        if aux is not None and self.auxiliary_weight > 0:
            loss = loss + self.auxiliary_weight * self.task.loss(aux, target, **smooth)
        return parallel.scale_loss(loss, len(xb)), out, yb

    def partial(self) -> dict:
        return {}

    def end_epoch(self, epoch: int, train: dict, lr: float, started: float) -> dict:
        out = predict(self.model, self.val_batches)  # once, for the metrics and auto's probe
        val, auto = self.task.metrics(*out), self.auto_augment
        if auto and auto.end_epoch(self.model, epoch + 1, self.epochs, out):
            self.augment = auto.hook()
        stats = EpochStats(epoch + 1, train, val, lr, time.perf_counter() - started, self.epochs)
        if self.on_epoch is not None:
            self.on_epoch(stats)
        return vars(stats)

    def state_dict(self) -> dict:
        return {"auto_augment": self.auto_augment.state_dict()} if self.auto_augment else {}

    def load_state_dict(self, state: dict) -> None:
        """The drop-path ramp follows the epoch, augmentation its generator and auto's choice."""
        if self.auto_augment and "auto_augment" in state:
            self.auto_augment.load_state_dict(state["auto_augment"])
            self.augment = self.auto_augment.hook()


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
    auto_augment=None,
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
        auto_augment=auto_augment,
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
