"""The Placement: every batch and model of a run gets its device, memory format and
normalisation in one place."""

from __future__ import annotations

import torch
from torch import nn

from scinas.config import build_config
from scinas.context import setup
from scinas.placement import Placement
from scinas.progress import Reporter


def raw(n=10, c=3, h=5, w=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % 3


def test_batches_are_normalised_per_channel_in_channels_last():
    x, y = raw()
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    place = Placement(torch.device("cpu"), True, mean, std)
    batches = list(place.batches(x, y, 4))
    assert [len(xb) for xb, _ in batches] == [4, 4, 2]
    xb, yb = batches[0]
    want = (x[:4].float() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert xb.dtype == torch.float32 and torch.equal(xb, want)
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(yb, y[:4])


def test_without_channels_last_batches_stay_contiguous():
    x, y = raw()
    xb, _ = next(
        iter(Placement(torch.device("cpu"), False, (0.0,) * 3, (1.0,) * 3).batches(x, y, 4))
    )
    assert xb.is_contiguous() and torch.equal(xb, x[:4].float())


def test_shuffled_batches_follow_their_seed_and_leave_the_global_rng_alone():
    x, y = raw(n=20)
    place = Placement(torch.device("cpu"), False, (0.0,) * 3, (1.0,) * 3)
    state = torch.get_rng_state()
    a = [yb for _, yb in place.batches(x, y, 5, shuffle=True, seed=7)]
    b = [yb for _, yb in place.batches(x, y, 5, shuffle=True, seed=7)]
    c = [yb for _, yb in place.batches(x, y, 5, shuffle=True, seed=8)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    assert torch.equal(torch.get_rng_state(), state)


def test_first_batch_is_the_first_samples_capped_at_the_split():
    x, y = raw(n=6)
    place = Placement(torch.device("cpu"), True, (0.0,) * 3, (1.0,) * 3)
    xb, yb = place.first_batch(x, y, 4)
    assert torch.equal(yb, y[:4]) and xb.is_contiguous(memory_format=torch.channels_last)
    assert len(place.first_batch(x, y, 64)[0]) == 6


def test_module_moves_to_the_device_in_the_batches_memory_format():
    place = Placement(torch.device("cpu"), True, (0.0,), (1.0,))
    net = place.module(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    conv = net[0]
    assert conv.weight.device.type == "cpu"
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = Placement(torch.device("cpu"), False, (0.0,), (1.0,)).module(nn.Conv2d(1, 4, 3))
    assert plain.weight.is_contiguous()


def test_setup_builds_one_placement_from_the_data_and_device():
    cfg = build_config("tiny", overrides=["device=cpu"])
    ctx = setup(cfg, Reporter(quiet=True))
    assert ctx.place.device == torch.device("cpu") == ctx.device
    assert ctx.place.channels_last  # the CPU default
    assert tuple(ctx.place.mean) == tuple(ctx.data.mean)
    assert tuple(ctx.place.std) == tuple(ctx.data.std)
