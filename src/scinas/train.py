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

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .checkpoint import Checkpointer, rng_state, set_rng_state
from .errors import TrainingDiverged
from .placement import Batches
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


def check_finite(loss: torch.Tensor, where: str, lr_key: str, lr: float) -> None:
    """Stop with advice when the loss is NaN/inf or has exploded (a diverging learning rate)."""
    value = loss.item()
    if not math.isfinite(value) or value > 1e4:
        raise TrainingDiverged(
            f"the loss became {value:.3g} ({where}): training diverged. Lower the learning rate "
            f"{lr_key} (now {lr:g}), e.g. --set {lr_key}={lr / 4:g}, or lower the gradient clip."
        )


def cosine_sgd(params, lr, lr_min, momentum, weight_decay, steps):
    """SGD with a cosine schedule from ``lr`` to ``lr_min`` over ``steps`` optimiser steps.

    Stepped per batch, not per epoch as DARTS did: the same curve for long runs, and a run of
    one or two epochs (a small time budget) still anneals."""
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
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
    ):
        self.model, self.task, self.hooks, self.sources = model, task, hooks, sources
        self.epochs, self.grad_clip, self.bn_tail = epochs, grad_clip, bn_tail
        self.checkpointer, self.track = checkpointer, track
        self.phase, self.label, self.lr_key = phase, label, lr_key
        self.full_steps = min(len(b) for b in sources.values())
        self.n_steps = min(self.full_steps, steps_per_epoch or self.full_steps)
        self.params = list(model.parameters() if params is None else params)
        self.optimizer, self.scheduler = cosine_sgd(
            self.params, lr, lr_min, momentum, weight_decay, epochs * self.n_steps
        )
        self.generators = {n: b.generator for n, b in sources.items() if b.generator is not None}
        self.generators.update(generators or {})
        self.history: list[dict] = []
        self.start_epoch, self.start_step, self.partial = 0, 0, None

    @property
    def checkpointing(self) -> bool:
        return self.checkpointer is not None and self.checkpointer.enabled

    def resume(self) -> bool:
        """Load the newest checkpoint (and cut the logs back to it); False when there is none."""
        state = self.checkpointer.load() if self.checkpointer is not None else None
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.hooks.load_state_dict(state["hooks"])
        self.history = state["history"]
        self.start_epoch, self.start_step = state["epoch"], state["step"]
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
                "hooks": self.hooks.state_dict(),
                "history": self.history,
                "epoch": epoch,
                "step": step,
                "rng": rng_state(self.generators),
                "orders": {n: b.order for n, b in self.sources.items()} if step else None,
                "partial": partial,
            }
        )

    def train_step(self, batch: tuple, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One weight update on ``batch`` (one (x, y) per source); returns the main output
        (detached) and the targets. The schedule is not stepped (`run` does)."""
        loss, out, target = self.hooks.loss(batch, self.optimizer, where)
        check_finite(loss, where, self.lr_key, self.optimizer.param_groups[0]["lr"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return out.detach(), target

    def run(self) -> list[dict]:
        """Train the remaining epochs; returns every epoch's history record."""
        model, hooks = self.model, self.hooks
        for epoch in range(self.start_epoch, self.epochs):
            started = time.perf_counter()
            model.train()
            lr = self.optimizer.param_groups[0]["lr"]  # the epoch's first step's
            partial, self.partial = self.partial, None
            hooks.begin_epoch(epoch, partial)
            outs, tgts = [], []
            if partial is not None:  # resumed mid-epoch
                outs, tgts, lr = [partial["outs"]], [partial["tgts"]], partial["lr"]
            first = self.start_step if epoch == self.start_epoch else 0
            batches = zip(*self.sources.values(), strict=False)  # the shortest source ends it
            steps = itertools.islice(batches, max(0, self.n_steps - first))
            if self.track is not None:
                label = f"{self.label} {epoch + 1}/{self.epochs}"
                steps = self.track(steps, self.n_steps - first, label)
            tail = max(0, self.n_steps - self.bn_tail)
            for step, batch in enumerate(steps, start=first):
                if self.bn_tail and step >= tail:
                    average_bn(model, reset=step == tail)
                where = f"{self.phase} epoch {epoch + 1}, step {step + 1}"
                out, target = self.train_step(batch, where)
                self.scheduler.step()
                outs.append(out.float().cpu())
                tgts.append(target.cpu())
                if STOP and self.checkpointing:
                    sofar = {"outs": torch.cat(outs), "tgts": torch.cat(tgts), "lr": lr}
                    self.save(epoch, step + 1, {**sofar, **hooks.partial()})
                    raise Interrupted(f"stopped in {self.phase} epoch {epoch + 1}, step {step + 1}")
            if self.bn_tail:
                stop_average_bn(model)
            train = self.task.metrics(torch.cat(outs), torch.cat(tgts))
            self.history.append(hooks.end_epoch(epoch, train, lr, started))
            self.save(epoch + 1, 0)
            if STOP and self.checkpointing:
                raise Interrupted(f"stopped after {self.phase} epoch {epoch + 1}")
        return self.history


@dataclass
class EpochStats:
    epoch: int
    train: dict
    val: dict
    lr: float
    seconds: float


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
    ):
        self.model, self.task, self.val_batches = model, task, val_batches
        self.epochs, self.auxiliary_weight = epochs, auxiliary_weight
        self.drop_path_prob, self.augment, self.on_epoch = drop_path_prob, augment, on_epoch

    def begin_epoch(self, epoch: int, partial: dict | None) -> None:
        if hasattr(self.model, "drop_path_prob"):
            self.model.drop_path_prob = self.drop_path_prob * epoch / self.epochs

    def loss(self, batch, optimizer, where):
        ((xb, yb),) = batch
        if self.augment is not None:
            xb = self.augment(xb)
        out = self.model(xb)
        out, aux = out if isinstance(out, tuple) else (out, None)
        target = self.task.encode_targets(yb)
        loss = self.task.loss(out, target)
        if aux is not None and self.auxiliary_weight > 0:
            loss = loss + self.auxiliary_weight * self.task.loss(aux, target)
        return loss, out, yb

    def partial(self) -> dict:
        return {}

    def end_epoch(self, epoch: int, train: dict, lr: float, started: float) -> dict:
        val = evaluate(self.model, self.task, self.val_batches)
        stats = EpochStats(epoch + 1, train, val, lr, time.perf_counter() - started)
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
