"""Where tensors and models live: the device, channels-last memory and input normalisation.

Data stays in memory as the raw tensors of `scinas.data.Split` (uint8 stays uint8); each batch is
moved to the device, converted and normalised per channel there, so a 60k-image dataset costs its
raw size and no worker processes are needed. A `Placement` is made once per run
(`scinas.context.setup`, as ``ctx.place``) and every batch and model goes through it, so no site
re-applies the device, the memory format or the normalisation by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from . import parallel


@dataclass
class Batches:
    """Normalised mini-batches of (x, y) from raw tensors, shuffled by a seeded generator."""

    x: torch.Tensor  # (N, C, H, W) raw
    y: torch.Tensor  # (N,) or (N, K) as in the dataset
    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,)
    batch_size: int
    device: torch.device
    channels_last: bool = False
    shuffle: bool = False
    drop_last: bool = False
    generator: torch.Generator | None = None
    # (order, first batch) the next pass resumes from (`resume_at`), then None
    _resume: tuple[torch.Tensor, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self):
        # on a GPU the raw data moves to it once, so that a step never waits for a host copy
        if self.device.type == "cuda" and self.x.device.type == "cpu":
            self.x, self.y = feedable(self.x, self.y, self.device)

    def __len__(self) -> int:
        n = len(self.x)
        return (
            n // self.batch_size
            if self.drop_last and n >= self.batch_size
            else math.ceil(n / self.batch_size)
        )

    def resume_at(self, order: torch.Tensor, start: int) -> None:
        """Make the next pass reuse ``order`` (a checkpointed epoch's) from batch ``start`` on."""
        self._resume = (order, start)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        resume = self._resume
        self._resume = None
        if resume is not None:
            order, start = resume
        else:
            order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
            start = 0
        self.order = order  # the epoch's order, for checkpoints
        per_channel = (1, -1) + (1,) * (self.x.dim() - 2)  # images (1, C, 1, 1), series (1, C, 1)
        mean = self.mean.to(self.device).view(per_channel)
        std = self.std.to(self.device).view(per_channel)
        gather = order.to(self.x.device)  # where the data is: a GPU gathers its own batches
        pinned = self.device.type == "cuda" and self.x.device.type != "cuda"
        for b in range(start, len(self)):
            idx = gather[b * self.batch_size : (b + 1) * self.batch_size]
            xb, yb = self.x[idx], self.y[idx]
            if pinned:  # too big for the GPU: page-locked batches, copied without waiting
                xb, yb = xb.pin_memory(), yb.pin_memory()
            xb = (xb.to(self.device, non_blocking=True).float() - mean) / std
            if self.channels_last and xb.dim() == 4:  # series have no channels-last form
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb.to(self.device, non_blocking=True)


DEVICE_DATA_SHARE = 0.25  # raw data moves to a GPU when it takes at most this share of its memory


def feedable(x: torch.Tensor, y: torch.Tensor, device: torch.device):
    """(x, y) where batches are cheapest to take for a step on the CUDA ``device``: on the device
    (raw, uint8 stays uint8; each batch is then gathered, converted and normalised there) when it
    fits in `DEVICE_DATA_SHARE` of the free memory, else in page-locked host memory."""
    free, _ = torch.cuda.mem_get_info(device)
    if x.nbytes + y.nbytes <= DEVICE_DATA_SHARE * free:
        return x.to(device), y.to(device)
    return x.pin_memory(), y.pin_memory()


@dataclass(frozen=True)
class Placement:
    """The device, memory format and per-channel input normalisation of a run.

    ``mean`` and ``std`` are the training split's per-channel statistics (a trained network's
    ``data.json`` keeps them, so evaluating it on other data normalises the same way)."""

    device: torch.device
    channels_last: bool
    mean: Sequence[float]  # (C,)
    std: Sequence[float]  # (C,)

    def batches(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False, seed=0
    ) -> Batches:
        """Batches of the raw (x, y) on this placement; ``shuffle`` draws each epoch's order
        from a generator seeded with ``seed`` (its own stream, checkpointed by the trainer)."""
        return Batches(
            x,
            y,
            torch.as_tensor(self.mean, dtype=torch.float32),  # a list, or a tensor as it is
            torch.as_tensor(self.std, dtype=torch.float32),
            batch_size,
            self.device,
            self.channels_last,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
        )

    def first_batch(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``batch_size`` samples of (x, y) (fewer if there are not that many), placed
        and normalised as training batches are: what a time-budget plan times."""
        n = min(batch_size, len(x))
        return next(iter(self.batches(x[:n], y[:n], n)))

    def module(self, net: nn.Module) -> nn.Module:
        """``net`` moved to the device, in channels-last memory when batches are."""
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if parallel.active():  # DDP: BatchNorm over the global batch
            parallel.sync_batchnorms(net)
        return net
