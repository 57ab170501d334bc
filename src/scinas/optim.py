"""The weight optimisers and their cosine learning-rate schedule."""

from __future__ import annotations

import torch

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
