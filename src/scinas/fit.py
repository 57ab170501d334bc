"""Train the discrete network of an architecture: the final retraining, a black-box candidate's
low-fidelity evaluation, and the timing that plans a time budget all go through `fit`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .budget import Plan, plan_phase
from .data.augment import make_augment
from .data.split import stratified_split
from .flops import count_parameters
from .spaces import space_of
from .train import EpochStats, Trainer, network_trainer

if TYPE_CHECKING:
    from .strategies.base import SearchContext


def build_network(arch, t, input_shape, num_outputs) -> torch.nn.Module:
    """The discrete network of an architecture of any space, sized by the train section ``t``."""
    return space_of(arch).build_network(arch, t, tuple(input_shape), num_outputs)


def subset(x, y, n: int | None, seed: int):
    if n is not None and n < len(x):
        _, keep = stratified_split(y.numpy(), n / len(x), seed)
        keep = torch.as_tensor(keep)
        return x[keep], y[keep]
    return x, y


def network_and_augment(s: SearchContext, genotype, t, aug_seed: int):
    """The freshly initialised network of ``genotype`` (seeded, placed) and its training
    augmentation."""
    data = s.data
    torch.manual_seed(s.cfg.seed)
    net = s.place.module(build_network(genotype, t, data.input_shape, data.num_outputs))
    H, W = data.input_shape[1:]
    aug_generator = torch.Generator().manual_seed(aug_seed)
    augment = make_augment(
        t.augment,
        H,
        W,
        aug_generator,
        cutout_length=min(t.cutout, min(H, W) // 2),
        crop_padding=t.crop_padding,
        hflip=t.hflip,
    )
    return net, augment, aug_generator


def trainer_for(
    s: SearchContext,
    genotype,
    t,
    x,
    y,
    *,
    aug_seed: int,
    on_epoch=None,
    track=None,
    checkpointer=None,
) -> Trainer:
    """The trainer of ``genotype``'s fresh network on (x, y) with the settings of ``t`` (a
    TrainConfig), validating on the val split each epoch: what `fit` runs and
    `plan_training` times."""
    net, augment, aug_generator = network_and_augment(s, genotype, t, aug_seed)
    return network_trainer(
        net,
        s.task,
        s.place.batches(x, y, t.batch_size, shuffle=True, seed=s.cfg.seed + 31),
        s.place.batches(s.data.val.x, s.data.val.y, 256),
        epochs=t.epochs,
        lr=t.lr,
        lr_min=t.lr_min,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        grad_clip=t.grad_clip,
        auxiliary_weight=t.auxiliary_weight if t.auxiliary else 0.0,
        drop_path_prob=t.drop_path_prob,
        augment=augment,
        on_epoch=on_epoch,
        track=track,
        checkpointer=checkpointer,
        generators={"augment": aug_generator},
        steps_per_epoch=t.steps_per_epoch,
    )


def fit(
    s: SearchContext, genotype, t, x, y, *, on_epoch=None, track=None, checkpointer=None
) -> tuple[torch.nn.Module, list[EpochStats]]:
    """Build the network of ``genotype`` at the sizes of ``t`` (a TrainConfig) and train it from
    scratch on (x, y), validating on the val split each epoch. Returns (net, history). With a
    checkpointer, each epoch is checkpointed and ``s.resume`` continues from the newest one."""
    trainer = trainer_for(
        s,
        genotype,
        t,
        x,
        y,
        aug_seed=s.cfg.seed + 21,
        on_epoch=on_epoch,
        track=track,
        checkpointer=checkpointer,
    )
    if s.resume:
        trainer.resume()
    return trainer.model, [EpochStats(**h) for h in trainer.run()]


def plan_training(s: SearchContext, genotype, t, n_train: int) -> Plan:
    """Epochs and steps per epoch that fill ``t.time_budget``, from training steps of
    ``genotype``'s network timed on a throwaway copy (`scinas.budget.plan_phase`)."""
    train = s.data.train

    def build():
        trainer = trainer_for(s, genotype, t, train.x, train.y, aug_seed=0)
        batch = (s.place.first_batch(train.x, train.y, t.batch_size),)
        return trainer.model, lambda: trainer.train_step(batch, "timing a training step")[0], None

    full = math.ceil(n_train / min(t.batch_size, n_train))
    return plan_phase(
        s, build, budget=t.time_budget, full_epoch_steps=full, key="train.time_budget"
    )


def low_fidelity_objective(s: SearchContext):
    """The score of a black-box candidate: its network (at the supernet's sizes, search.C and
    search.layers) trained ``search.eval_epochs`` epochs on ``search.eval_fraction`` of the
    training split (stratified, the same images for every candidate), scored by the task's
    primary metric on the validation split."""
    sc, t = s.cfg.search, s.cfg.train
    proxy = t.model_copy(
        update={
            "C": sc.C,
            "layers": sc.layers,
            "reductions": sc.reductions,
            "epochs": sc.eval_epochs,
            "batch_size": sc.batch_size,
            "auxiliary": False,
            "drop_path_prob": 0.0,
        }
    )
    train = s.data.train
    n = int(round(len(train) * sc.eval_fraction))
    if sc.max_samples is not None:
        n = min(n, sc.max_samples)
    x, y = subset(train.x, train.y, n, s.cfg.seed)
    pm = s.task.primary_metric

    def objective(arch):
        net, history = fit(s, arch, proxy, x, y)
        val = history[-1].val
        return val[pm], {"val": val, "params": count_parameters(net)}

    return objective
