"""Train the discrete network of an architecture: the final retraining, a black-box candidate's
low-fidelity evaluation, and the timing that plans a time budget all go through `fit`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .budget import Plan, eval_seconds, first_batch, plan, time_call
from .data.augment import make_augment
from .data.split import stratified_split
from .flops import count_parameters
from .spaces import space_of
from .train import Batches, train_network, train_step

if TYPE_CHECKING:
    from .strategies.base import SearchContext

def batches_for(s: SearchContext, x, y, batch_size, shuffle=False, seed=0) -> Batches:
    return Batches(
        x,
        y,
        torch.tensor(s.data.mean),
        torch.tensor(s.data.std),
        batch_size,
        s.device,
        s.channels_last,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )


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
    """The freshly initialised network of ``genotype`` (seeded) and its training augmentation."""
    data = s.data
    torch.manual_seed(s.cfg.seed)
    net = build_network(genotype, t, data.input_shape, data.num_outputs).to(s.device)
    if s.channels_last:
        net = net.to(memory_format=torch.channels_last)
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


def fit(s: SearchContext, genotype, t, x, y, *, on_epoch=None, track=None, checkpointer=None):
    """Build the network of ``genotype`` at the sizes of ``t`` (a TrainConfig) and train it from
    scratch on (x, y), validating on the val split each epoch. Returns (net, history). With a
    checkpointer, each epoch is checkpointed and ``s.resume`` continues from the newest one."""
    cfg, data, task = s.cfg, s.data, s.task
    net, augment, aug_generator = network_and_augment(s, genotype, t, cfg.seed + 21)
    train_batches = batches_for(s, x, y, t.batch_size, shuffle=True, seed=cfg.seed + 31)
    history = train_network(
        net,
        task,
        train_batches,
        batches_for(s, data.val.x, data.val.y, 256),
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
        resume=s.resume,
        generators={"batches": train_batches.generator, "augment": aug_generator},
        steps_per_epoch=t.steps_per_epoch,
    )
    return net, history


def plan_training(s: SearchContext, genotype, t, n_train: int) -> Plan:
    """Epochs and steps per epoch that fill ``t.time_budget``, from steps of ``genotype``'s
    network timed on a throwaway copy (the global RNG is left as it was)."""
    train = s.data.train
    with torch.random.fork_rng(devices=[]):
        net, augment, _ = network_and_augment(s, genotype, t, 0)
        optimizer = torch.optim.SGD(
            net.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
        xb, yb = first_batch(s, train.x, train.y, t.batch_size)
        net.train()
        step_seconds = time_call(
            lambda: float(
                train_step(
                    net,
                    s.task,
                    xb,
                    yb,
                    optimizer,
                    augment=augment,
                    auxiliary_weight=t.auxiliary_weight if t.auxiliary else 0.0,
                    grad_clip=t.grad_clip,
                    where="timing a training step",
                    lr=t.lr,
                ).sum()
            )
        )
        val_seconds = eval_seconds(s, net)
    full = math.ceil(n_train / min(t.batch_size, n_train))
    return plan(t.time_budget, step_seconds, val_seconds, full, "train.time_budget")


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
