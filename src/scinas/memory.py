"""Memory: what the device has free, and what a one-shot search step needs."""

from __future__ import annotations

import contextlib
import os

import torch

# Peak memory of a DARTS search step above the process's own, per unit of batch·C·H·W·cells,
# without cell checkpointing (benchmarks/search_step.py, 2026-11-26): first order 3.5 GiB for
# 64·16·32·32·8 units, second order (which also keeps the unrolled pass) 2.7 GiB for 32·16·32·32·8.
# GDAS and rsws need less (one op per edge); the estimate errs on the safe side for them.
BYTES_PER_UNIT = {1: 450, 2: 700}


def search_step_bytes(s, input_shape) -> int:
    """Estimated peak memory of one search step of config section ``s`` without checkpointing."""
    _, H, W = input_shape
    # (second order: DARTS only; the other strategies have no `order`)
    per_unit = BYTES_PER_UNIT[2 if getattr(s, "order", 1) == 2 else 1]
    return per_unit * s.batch_size * s.C * H * W * s.layers


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes free for tensors: the GPU's free memory, or the host's available memory (Linux's
    MemAvailable, else physical memory); None when it cannot be told."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def use_checkpointing(s, input_shape, available: int | None = None) -> bool:
    """``search.checkpoint_cells``, or when unset: on when a step's estimated peak would take
    more than half the memory available (``available`` bytes; the host's when None).
    Checkpointing recomputes each cell's activations in backward: about half the memory for
    about 1.4× the time, and the same numbers."""
    if s.checkpoint_cells is not None:
        return s.checkpoint_cells
    if available is None:
        available = available_memory()
    if available is None:
        return False
    return search_step_bytes(s, input_shape) > available // 2
