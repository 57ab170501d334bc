"""Memory: what the device has free, what a phase needs, and the refusal when it does not fit
(checked before anything is allocated or written)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UserError

# Peak memory of a DARTS search step above the process's own, per unit of batch·C·H·W·cells,
# without cell checkpointing, fitted with benchmarks/search_step.py (second order also keeps the
# unrolled pass). GDAS and rsws need less (one op per edge): it errs on the safe side for them.
BYTES_PER_UNIT = {1: 450, 2: 700}


def positions(input_shape) -> int:
    """Positions of one sample's map: H·W for images (C, H, W), L for series (C, L)."""
    return math.prod(int(v) for v in tuple(input_shape)[1:])


def search_step_bytes(s, input_shape) -> int:
    """Estimated peak memory of one search step of config section ``s`` without checkpointing."""
    per_unit = BYTES_PER_UNIT[2 if s.own.second_order else 1]
    return per_unit * s.batch_size * s.C * positions(input_shape) * s.layers


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


# ----------------------------------------------------------------------------- preflight
#
# Before a phase allocates anything, its need is estimated without building a real network:
# parameters counted on the ``meta`` device (shapes only, no memory), the one-shot search step
# from `search_step_bytes`, a discrete network's activations from a forward pass on ``meta``
# that records what autograd saves for backward, and the training data the phase copies.

# Weights, their gradients and SGD's momentum buffer, float32.
PARAM_STATE_BYTES = 12
# Second-order DARTS also keeps the unrolled copy of the weights and its gradients.
SECOND_ORDER_EXTRA_BYTES = 8
# A training step's peak over what autograd saves in forward (activation gradients, backward
# temporaries, allocator slack), the top of what DARTS_V2 networks showed (RSS sampled every ms).
BACKWARD_FACTOR = 2.0
# When the meta forward is not possible: a discrete DARTS network's peak per batch·C·H·W·cell
# (the same measurements: 130-170 bytes).
NETWORK_BYTES_PER_UNIT = 160

GiB = 1 << 30


@dataclass(frozen=True)
class Need:
    """The memory one phase needs, in bytes, and what it is made of (for the message)."""

    section: str  # "search" or "train": where the sizes to lower live
    what: str  # e.g. "the darts supernet", "the final network"
    params: int
    param_bytes: int
    activation_bytes: int
    data_bytes: int
    batch_size: int
    input_shape: tuple[int, int, int]
    notes: tuple[str, ...] = ()  # e.g. "with cell checkpointing"
    n_samples: int = 0  # training samples of the phase (0: not known)
    # values per channel per sample at the smallest BatchNorm input (1: a 1×1 map, where a batch
    # of one sample cannot be trained); None when not measured
    smallest_norm_map: int | None = None
    # activation bytes at another batch size, re-measured (None: proportional to the batch); only
    # asked when refusing, to name a batch size that really fits
    activations_at: Callable[[int], int] | None = field(default=None, compare=False, repr=False)

    @property
    def total(self) -> int:
        return self.param_bytes + self.activation_bytes + self.data_bytes


# What the meta builds below measured, by what decides it (the space, its sizes, the input):
# a compare's seeds and an API user's or a test session's runs build the same networks again,
# and a build on ``meta`` costs 0.3-1.5 s of Python per network.
_MEASURED: dict = {}


def measured(key, measure: Callable[[], object]):
    """``measure()``, once per ``key`` in this process (``key`` None: every time)."""
    if key is None:
        return measure()
    if key not in _MEASURED:
        _MEASURED[key] = measure()
    return _MEASURED[key]


def on_meta(build: Callable[[], nn.Module], what: str) -> nn.Module:
    """``build()`` on the meta device: the module's shapes without any memory behind them.
    Sizes too large to even describe (C=10**12) are a UserError."""
    try:
        with torch.device("meta"):
            return build()
    except (OverflowError, RuntimeError, ValueError, TypeError) as e:
        text = str(e).lower()
        if not any(w in text for w in ("overflow", "too large", "too big", "out of range")):
            raise
        raise UserError(
            f"{what} cannot be built at these sizes: they overflow ({str(e).splitlines()[0]}). "
            "Lower C, layers or batch_size."
        ) from None


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def saved_activation_bytes(net: nn.Module, batch: int, input_shape) -> int | None:
    """Bytes autograd keeps for backward in one training forward of ``net`` (on ``meta``) on a
    batch of ``batch`` inputs of ``input_shape``; None when the forward cannot run on ``meta``."""
    return meta_forward(net, batch, input_shape)[0]


def meta_forward(net: nn.Module, batch: int, input_shape) -> tuple[int | None, int | None]:
    """One training forward of ``net`` on ``meta``: the bytes autograd saves for backward, and
    the values per channel per sample at the smallest BatchNorm input (1: a 1×1 map). Either is
    None when the forward cannot run on ``meta`` (or stopped before it was seen)."""
    saved: dict[int, int] = {}
    keep = []
    smallest: list[int] = []

    def pack(t: torch.Tensor):
        if id(t) not in saved:
            saved[id(t)] = t.numel() * t.element_size()
            keep.append(t)  # ids stay unique while the tensors live
        return t

    def norm_input(module, args):
        x = args[0]
        smallest.append(x.numel() // max(1, x.shape[0] * x.shape[1]))

    hooks = [
        m.register_forward_pre_hook(norm_input)
        for m in net.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        net.train()
        with torch.device("meta"), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.empty(batch, *input_shape))
    except Exception:  # an op without a meta kernel: the caller falls back to a formula
        return None, min(smallest, default=None)
    finally:
        for h in hooks:
            h.remove()
    return sum(saved.values()), min(smallest, default=None)


def network_need(
    build: Callable[[], nn.Module],
    *,
    section,
    name: str,
    what: str,
    input_shape,
    n_samples: int,
    sample_bytes: int,
    key=None,
) -> Need:
    """What training a discrete network needs: parameters with gradients and momentum, the
    activations of one batch (measured on ``meta``, ×`BACKWARD_FACTOR`), and the copy of the
    training subset the phase makes. ``key``: what decides the measures (`measured`)."""
    B = section.batch_size
    P = positions(input_shape)
    built: list[nn.Module] = []

    def net() -> nn.Module:
        if not built:
            built.append(on_meta(build, what))
        return built[0]

    def activations_at(batch: int) -> int:
        saved = meta_forward(net(), batch, tuple(input_shape))[0]
        if saved is not None:
            return int(BACKWARD_FACTOR * saved)
        return NETWORK_BYTES_PER_UNIT * batch * section.C * P * section.layers

    n, saved, smallest = measured(
        key and ("network", B, *key),
        lambda: (parameter_count(net()), *meta_forward(net(), B, tuple(input_shape))),
    )
    if saved is not None:
        activations = int(BACKWARD_FACTOR * saved)
    else:
        activations = NETWORK_BYTES_PER_UNIT * B * section.C * P * section.layers
    return Need(
        section=name,
        what=what,
        params=n,
        param_bytes=PARAM_STATE_BYTES * n,
        activation_bytes=activations,
        data_bytes=n_samples * sample_bytes,
        n_samples=n_samples,
        batch_size=B,
        input_shape=tuple(input_shape),
        smallest_norm_map=smallest,
        activations_at=activations_at,
    )


def supernet_need(
    build: Callable[[], nn.Module],
    s,
    *,
    what: str,
    input_shape,
    checkpointing: bool,
    n_samples: int,
    sample_bytes: int,
    key=None,
) -> Need:
    """What one-shot search needs: the supernet's parameters (counted on ``meta``) with their
    optimiser state, `search_step_bytes` of activations (halved with cell checkpointing, when
    the space may use it), and the training subset the search copies. ``key``: what decides
    the parameter count (`measured`)."""
    n = measured(key and ("supernet", *key), lambda: parameter_count(on_meta(build, what)))
    per_param = PARAM_STATE_BYTES + (SECOND_ORDER_EXTRA_BYTES if s.own.second_order else 0)
    step = search_step_bytes(s, input_shape)
    return Need(
        section="search",
        what=what,
        params=n,
        param_bytes=per_param * n,
        activation_bytes=step // 2 if checkpointing else step,
        data_bytes=n_samples * sample_bytes,
        n_samples=n_samples,
        batch_size=s.batch_size,
        input_shape=tuple(input_shape),
        notes=("with cell checkpointing",) if checkpointing else (),
    )


def check_fits(
    need: Need, device: torch.device | str | None, knobs: Callable[[], Sequence[str]]
) -> None:
    """Refuse (UserError) a phase whose need exceeds the memory available on ``device``, with
    the figure, its parts, and what to lower (``knobs()``: the section's sizes that shape it,
    asked only when refusing)."""
    available = available_memory(device)
    if available is None or need.total <= available:
        return
    dev = torch.device(device or "cpu")
    where = "GPU memory free" if dev.type == "cuda" else "host memory available"
    shape = "×".join(map(str, need.input_shape))
    sec = need.section
    if need.batch_size > need.n_samples > 0 and _fits_at(need, need.n_samples, available):
        # the batch size, not the memory, is what is wrong: no batch holds more than the data
        raise UserError(
            f"{sec}.batch_size is {need.batch_size:,}, larger than the {need.n_samples:,} "
            f"training samples of the {sec} phase (no batch holds more than the data; memory for "
            f"batches of {need.batch_size:,} would be {_gib(need.total)}). Nothing was written. "
            f"Set --set {sec}.batch_size={need.n_samples} or lower."
        )
    parts = [
        f"{need.params:,} parameters with gradients and optimiser state: {_gib(need.param_bytes)}",
        f"activations of a batch of {need.batch_size} at {shape}"
        f"{' ' + ', '.join(need.notes) if need.notes else ''}: {_gib(need.activation_bytes)}",
        f"training data: {_gib(need.data_bytes)}",
    ]
    fits = _largest_batch_that_fits(need, available - need.param_bytes - need.data_bytes)
    if 1 <= fits < need.batch_size:
        advice = f"--set {sec}.batch_size={fits} would fit; or lower "
    else:
        advice = "even a batch of 1 would not fit: lower " if fits < 1 else "lower "
    lower = [k for k in knobs() if not (fits >= 1 and "batch_size" in k)]
    sizes = "×".join(map(str, need.input_shape[1:]))
    size = f"the image size ({sizes})" if len(need.input_shape) == 3 else f"the length ({sizes})"
    advice += ", ".join(lower) + f" or {size}"
    raise UserError(
        f"{need.what} does not fit in memory: it needs about {_gib(need.total)} "
        f"({'; '.join(parts)}), but {_gib(available)} of {where}. Nothing was written. "
        f"{advice[0].upper()}{advice[1:]}."
    )


def _fits_at(need: Need, batch: int, available: int) -> bool:
    """Whether the phase fits with batches of ``batch`` instead of the configured size."""
    if need.activations_at is not None:
        activations = need.activations_at(batch)
    else:
        activations = need.activation_bytes * batch // max(1, need.batch_size)
    return need.param_bytes + need.data_bytes + activations <= available


def _largest_batch_that_fits(need: Need, room: int) -> int:
    """The largest batch (below the configured one) whose activations fit in ``room`` bytes; 0
    when none does. Activations are not quite proportional to the batch (some saved tensors do
    not grow with it), so the proportional guess is checked against re-measured activations and
    bisected down when it does not fit."""
    per_sample = need.activation_bytes / max(1, need.batch_size)
    if per_sample <= 0 or room <= 0:
        return 0
    guess = min(int(room // per_sample), need.batch_size - 1)
    measure = need.activations_at
    if measure is None or guess < 1 or measure(guess) <= room:
        return guess
    lo, hi = 0, guess  # measure(lo) fits (0: nothing), measure(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if measure(mid) <= room else (lo, mid)
    return lo


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / (1 << 20):.1f} MiB"
