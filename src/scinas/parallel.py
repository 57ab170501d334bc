"""Data-parallel training over several processes (DDP): one-shot search and the final training.

Start with ``torchrun --nproc_per_node N -m scinas search ...`` or ``scinas search --nproc N``
(`launch` starts the N processes itself, as torchrun would). Every process joins one
`torch.distributed` process group (`init`: gloo on CPU, NCCL on CUDA, one GPU per process).

What each process does, so that a run at global batch B on N processes computes what one process
computes at batch B (the same genotype at the same seed, up to floating-point summation order):

- every process holds the whole model, seeded alike, and draws the same random numbers (data
  order, augmentation, GDAS' Gumbel samples, rsws' paths): each batch source yields the *global*
  batch, which is augmented whole, then `shard` keeps this process's contiguous slice of it;
- each loss is scaled to this process's share of the global batch's mean (`scale_loss`), and the
  gradients are summed over the processes (`all_reduce_`, `all_reduce_grads`): the weight step's,
  and every gradient of the architecture step (both DARTS orders: the virtual step, the
  validation gradient and the finite-difference gradients are all global);
- BatchNorm in training mode normalises with the statistics of the global batch (`SyncedBatchNorm`,
  differentiable through `torch.distributed.nn.functional.all_reduce`), as one process would with
  the whole batch; no-grad passes (BatchNorm recalibration) and evaluation run whole on every
  process and need no communication;
- losses that decide anything (the divergence checks) are the global ones (`total`), and a stop
  request (Ctrl-C, SIGTERM) on any process stops all of them at the same step (`any_`).

Process 0 (`leader`) alone writes the run directory, its logs and checkpoints; resuming, it reads
the checkpoint and hands it to the others (`from_rank0`). Gradients are reduced explicitly rather
than through `torch.nn.parallel.DistributedDataParallel`: the architecture step takes gradients
with `torch.autograd.grad` and perturbs the weights in place between passes, which DDP's backward
hooks do not see.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .errors import UserError

_suspended = False  # `suspended`: collectives off (a timing done by process 0 alone)
_device = torch.device("cpu")  # where collective tensors live (NCCL: this process's GPU)


def _group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def requested() -> int:
    """The number of processes this one was started among (torchrun's WORLD_SIZE; 1 alone)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def active() -> bool:
    """Whether the data is sharded over several processes now."""
    return not _suspended and _group() and world() > 1


def world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if _group() and not _suspended else 1


def rank() -> int:
    """This process's place in the sharding (0 when not sharded)."""
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def leader() -> bool:
    """Whether this process writes the run directory (process 0, or the only one)."""
    import torch.distributed as dist

    if _group():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def available(device_type: str) -> int:
    """How many processes the device allows: one per GPU, or one per CPU core."""
    if device_type == "cuda":
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def check_nproc(nproc: int, device: torch.device) -> None:
    """Refuse (UserError) more processes than the device has GPUs or CPU cores."""
    have = available(device.type)
    if nproc > have:
        what = f"{have} CUDA GPU(s)" if device.type == "cuda" else f"{have} CPU core(s)"
        raise UserError(
            f"--nproc {nproc} is more processes than this machine has devices for ({what}; one "
            f"process per {'GPU' if device.type == 'cuda' else 'core'}): use --nproc {have} or "
            "fewer."
        )
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1 (got {nproc}).")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: taskset, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call (macOS, Windows)
        return os.cpu_count() or 1


def fit_threads() -> str | None:
    """Hold a thread count set in OMP_NUM_THREADS to the cores this process may use (shared
    among the processes a DDP run starts on this machine); returns a note when it asked for
    more. A value that is not a positive whole number is refused (UserError)."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value is None:
        return None
    cores = usable_cores()
    try:
        asked = int(value.split(",")[0])  # OpenMP's nested form "4,2": the outer level's
    except ValueError:
        asked = 0
    if asked < 1:
        raise UserError(
            f"OMP_NUM_THREADS={value} is not a thread count: set it to a whole number from 1 to "
            f"{cores} (the CPU cores this process may use), or unset it."
        )
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(requested()))) if requested() > 1 else 1
    each = max(1, cores // max(1, local))
    if asked <= each:
        return None
    torch.set_num_threads(each)
    who = "this process" if local == 1 else f"each of the {local} processes on this machine"
    return (
        f"OMP_NUM_THREADS={value} asks for more threads than the {cores} CPU cores give "
        f"{who}: using {each} (more threads than cores only slow the steps down)"
    )


def init(device: torch.device) -> torch.device:
    """Join the process group this process was started in (WORLD_SIZE > 1; torchrun or
    `launch` set the environment), once; returns this process's device (its own GPU on CUDA).
    Alone, ``device`` is returned untouched."""
    global _device
    if requested() <= 1:
        return device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(requested())))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    if _group():
        return device
    check_nproc(local_world, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:  # share the cores: one process per core at least
        torch.set_num_threads(max(1, usable_cores() // local_world))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # left at exit: a group still joined then aborts in its threads' destructors ("terminate
    # called without an active exception", seen on a resumed 2-process search that had finished)
    atexit.register(_leave)
    _device = device
    return device


LEAVE_SECONDS = 10  # the most a process waits at exit for its peers to leave with it


def _leave() -> None:
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        if dist.get_backend() == "gloo":  # leave together: a peer torn down mid-exchange aborts
            with contextlib.suppress(Exception):  # gloo's threads (the same message), bounded
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=LEAVE_SECONDS))
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


@contextlib.contextmanager
def suspended():
    """Collectives and sharding off: what runs inside is one process's own work (process 0
    timing steps to plan a time budget, whose plan it then hands out with `from_rank0`)."""
    global _suspended
    before, _suspended = _suspended, True
    try:
        yield
    finally:
        _suspended = before


# ----------------------------------------------------------------------------- data and gradients


def shard(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's contiguous share of a global batch (all of it alone)."""
    if not active():
        return x, y
    r, n = rank(), world()
    return x.tensor_split(n)[r], y.tensor_split(n)[r]


def scale_loss(loss: torch.Tensor, n_local: int) -> torch.Tensor:
    """A mean loss over this process's ``n_local`` samples as its share of the mean over the
    global batch: summed over the processes (their gradients by `all_reduce_`), the global mean.
    An empty share (a last batch smaller than the processes) contributes zero."""
    if not active():
        return loss
    n = torch.tensor([float(n_local)], device=_device)
    _all_reduce(n)
    if n_local == 0:
        return loss.nan_to_num(0.0) * 0.0
    return loss * (n_local / n.item())


def _all_reduce(t: torch.Tensor) -> None:
    import torch.distributed as dist

    dist.all_reduce(t)


def all_reduce_(tensors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """Sum ``tensors`` over the processes in place (one flat message); returns them."""
    if not active() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1).to(_device, torch.float32) for t in tensors])
    _all_reduce(flat)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n
    return tensors


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Sum the parameters' gradients over the processes (the same parameters have gradients on
    every process: the same path is sampled everywhere)."""
    if active():
        all_reduce_([p.grad for p in params if p.grad is not None])


def total(value: torch.Tensor) -> torch.Tensor:
    """A (scaled) loss summed over the processes: the global batch's (a copy)."""
    if not active():
        return value
    out = value.detach().clone().float().to(_device)
    _all_reduce(out)
    return out


def any_(flag: bool) -> bool:
    """Whether ``flag`` holds on any process (a stop request seen by one stops all)."""
    if not active():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_device)
    _all_reduce(t)
    return t.item() > 0


def gather(t: torch.Tensor) -> torch.Tensor:
    """The processes' ``t`` (CPU tensors of any length) concatenated in process order."""
    if not active():
        return t
    import torch.distributed as dist

    parts: list = [None] * world()
    dist.all_gather_object(parts, t.cpu())
    return torch.cat(parts)


def from_rank0(obj):
    """Process 0's ``obj`` on every process (a checkpoint, a time-budget plan, a decision)."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device if _device.type == "cuda" else None)
    return box[0]


@contextlib.contextmanager
def agreeing():
    """A `UserError` raised inside on any process is raised on every process (so that none
    waits for the others in a collective): the checks before the run directory exists."""
    error = None
    try:
        yield
    except UserError as e:
        error = e
    if active():
        import torch.distributed as dist

        messages: list = [None] * world()
        dist.all_gather_object(messages, None if error is None else str(error))
        first = next((m for m in messages if m), None)
        if first is not None and error is None:
            raise UserError(first)
    if error is not None:
        raise error


# ----------------------------------------------------------------------------- BatchNorm


class SyncedBatchNorm:
    """Mixed into a BatchNorm class (`sync_batchnorms`): in a grad-enabled training pass under
    DDP it normalises with the mean and (biased) variance of the global batch and keeps running
    statistics of it (unbiased by the global count), as the BatchNorm does on one process with the
    whole batch. The per-channel sums travel in one all-reduce, which is differentiable, so the
    backward pass is the global batch's too. Otherwise (one process, evaluation, no-grad passes)
    it is the BatchNorm class it was. (`torch.nn.SyncBatchNorm` would do this on GPUs only, not
    with gloo on a CPU.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active() and torch.is_grad_enabled()):
            return super().forward(x)
        import warnings

        from torch.distributed.nn.functional import all_reduce

        C = x.size(1)
        xf = x.float()
        dims = (0, *range(2, x.dim()))  # all but the channels: (N, C, H, W), (N, C, L), (N, C)
        count = torch.full((1,), x.numel() / C, device=x.device, dtype=torch.float32)
        local = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        with warnings.catch_warnings():  # deprecated for a functional API without autograd
            warnings.simplefilter("ignore", FutureWarning)
            sums = all_reduce(local)
        n = sums[2 * C]
        mean = sums[:C] / n
        var = (sums[C : 2 * C] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            with torch.no_grad():
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(unbiased.detach(), alpha=f)
        shape = (1, C) + (1,) * (x.dim() - 2)
        out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


_synced: dict[type, type] = {}


def sync_batchnorms(model: nn.Module) -> nn.Module:
    """Give every BatchNorm1d and BatchNorm2d of ``model`` (subclasses included) `SyncedBatchNorm`
    behaviour, in place: the same parameters, buffers and state_dict keys."""
    for m in model.modules():
        cls = type(m)
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and not isinstance(m, SyncedBatchNorm):
            if cls not in _synced:
                _synced[cls] = type(f"Synced{cls.__name__}", (SyncedBatchNorm, cls), {})
            m.__class__ = _synced[cls]
    return model


# ----------------------------------------------------------------------------- launching


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``python -m scinas ARGS`` in ``nproc`` processes on this machine, as ``torchrun
    --nproc_per_node NPROC -m scinas ARGS`` would (one process group on loopback). CPU threads
    are shared out (OMP_NUM_THREADS: cores // nproc, unless set). When one process fails, the
    others are stopped; SIGINT/SIGTERM are passed on (each then checkpoints and stops). Returns
    process 0's exit code (or the first failure's)."""
    env = dict(os.environ)
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(nproc),
    )
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))
    procs = []
    for r in range(nproc):
        child = {**env, "RANK": str(r), "LOCAL_RANK": str(r)}
        # a session of its own: a terminal's Ctrl-C reaches them once, passed on from here
        cmd = [sys.executable, "-m", "scinas", *args]
        procs.append(subprocess.Popen(cmd, env=child, start_new_session=True))

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed or all(c is not None for c in codes):
                break
            time.sleep(0.2)
        if failed:  # the others may wait for it in a collective: stop them
            time.sleep(2.0)
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:  # stuck in a collective: SIGTERM is not seen
                    p.kill()
        codes = [p.wait() for p in procs]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return codes[0] if codes[0] != 0 else next((c for c in codes if c), 0)


def on_leader(fn):
    """``fn()`` run by process 0 alone, collectives off (`suspended`), and its result (or its
    `UserError`) on every process: timing steps to plan a time budget, whose plan must be the
    same everywhere. Alone, simply ``fn()``."""
    if not active():
        return fn()
    result = error = None
    if leader():
        with suspended():
            try:
                result = fn()
            except UserError as e:
                error = str(e)
    result, error = from_rank0((result, error))
    if error is not None:
        raise UserError(error)
    return result


def check_strategy(name: str, strategies, nproc: int | None = None) -> None:
    """Refuse (UserError) a black-box strategy (of the registry ``strategies``) in a
    data-parallel start (of ``nproc`` processes, or as started by torchrun)."""
    if (nproc or requested()) <= 1:
        return
    if name in strategies and strategies.get(name).kind != "one-shot":
        oneshot = ", ".join(n for n in strategies if strategies.get(n).kind == "one-shot")
        kind = strategies.get(name).kind
        instead = (
            "start several `scinas search --set search.storage=URL` processes on one study instead."
            if kind == "black-box"
            else "run it in one process (without --nproc)."
        )
        raise UserError(
            f"--nproc/torchrun runs one-shot strategies ({oneshot}) data-parallel; {name} is a "
            f"{kind} strategy: {instead}"
        )


@contextlib.contextmanager
def torch_threads_kept():
    """Give torch back its thread count after the block: sktime and numba set it to every core
    when they run, which would oversubscribe the cores of a run that chose fewer threads."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
