"""A training step on channels-last images keeps one memory layout: no compute op of a network's
forward or backward, nor of a supernet's, takes NCHW and channels-last feature maps together
(torch's CPU kernels for mixed layouts are several times slower than for one; `lean_ops`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from scinas import build_config
from scinas.spaces import SPACES

SHAPE = (3, 16, 16)
IMAGE_SPACES = [n for n in SPACES if 2 in SPACES.get(n).dims]
SUPERNET_SPACES = [n for n in IMAGE_SPACES if SPACES.get(n).has_supernet]


def _layout(t) -> str | None:
    """A dense feature map's layout; None where both or neither describe it (one channel, one
    pixel, a strided view)."""
    if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.size(1) == 1 or t[0, 0].numel() == 1:
        return None
    cl, nchw = t.is_contiguous(memory_format=torch.channels_last), t.is_contiguous()
    return "channels-last" if cl and not nchw else "nchw" if nchw and not cl else None


class MixedLayouts(TorchDispatchMode):
    """Records every op (views aside) whose tensor arguments and results hold both layouts."""

    def __init__(self):
        super().__init__()
        self.mixed: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            tensors = tree_flatten((args, kwargs, out))[0]
            layouts = {_layout(t) for t in tensors} - {None}
            if len(layouts) > 1:
                shapes = [tuple(t.shape) for t in tensors if _layout(t)]
                self.mixed.append(f"{func} {shapes}")
        return out


def _step(model, batch: int = 4, classes: int = 3) -> list[str]:
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.randn(batch, *SHAPE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    census = MixedLayouts()
    with census:
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out, y).backward()
    return census.mixed


@pytest.mark.parametrize("name", IMAGE_SPACES)
def test_a_networks_training_step_keeps_one_layout(name):
    space = SPACES.get(name)
    cfg = build_config("tiny", overrides=[f"search.space={name}", "search.strategy=random"])
    arch = space.planning_stand_in()
    if arch is None:
        arch = space.decisions(cfg.search).sample(np.random.RandomState(0))
    model = space.build_network(arch, cfg.train, SHAPE, 3)
    assert _step(model) == []


@pytest.mark.parametrize("name", SUPERNET_SPACES)
def test_a_supernets_training_step_keeps_one_layout(name):
    cfg = build_config("tiny", overrides=[f"search.space={name}", "search.C=4", "search.layers=3"])
    model = SPACES.get(name).build_supernet(cfg.search, SHAPE, 3)
    assert _step(model) == []
