"""Mixed precision and compilation of a run (the top-level ``precision`` and ``compile`` settings).

``precision``: ``auto`` (default), ``fp32``, ``bf16`` or ``fp16``. The forward passes of every
training step (the one-shot search's weight and first-order architecture steps, the final network's
steps) run under `torch.autocast` on the run's device with that dtype; the weights, the optimisers
and the gradients stay float32. fp16 adds a gradient scaler (`torch.amp.GradScaler`): the loss is
scaled before the backward pass, the gradients unscaled before clipping, and a step whose gradients
overflowed is skipped while the scale shrinks. What stays in float32 whatever the setting: the
second-order DARTS architecture step (its Hessian-vector product is a finite difference of two
gradients, which bf16's 8-bit mantissa would drown), every evaluation and the metrics.

fp16 is refused on a CPU (torch's CPU autocast is bf16; fp16 kernels there are slow or missing),
and bf16 on a CUDA GPU without bf16 support.

``auto`` resolves per network (`resolve`): bf16 on a CPU with AMX-BF16 matrix units (Intel Xeon
from Sapphire Rapids on) for a network whose forward FLOPs are mostly dense convolutions of kernels
larger than 1×1 (at least ``DENSE_SHARE``: ResNets, the macro space's basic blocks), where oneDNN's
AMX kernels train it 1.3-2.4x faster; fp32 for everything else, where bf16 measured little faster
or slower (depthwise-separable cells, bottlenecks, one-shot supernets; CPUs without AMX, where bf16
is emulated) and on GPUs, where it has not been measured yet (`benchmarks/small_speed.py
--precision`). The rule reads the network's structure, not a timing, so a rerun or a resume on the
same machine makes the same choice.

``compile``: `torch.nn.Module.compile` on the network or supernet (in place: the module, its
methods and its state_dict keys stay as they are). Where torch.compile cannot work (no C++ compiler
for the CPU backend, no Triton for CUDA, an unsupported Python), ``compile=true`` is *refused*
before anything is written, naming what is missing: a silent fallback would make a user's
"compiled" timing an eager one. A graph that dynamo cannot compile at run time falls back to eager
for that graph, as torch does by default with ``suppress_errors``, with torch's own warning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

import torch

from .errors import UserError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DENSE_SHARE = 0.75  # from it auto takes bf16: ResNets (0.98) 1.75-2.4x, bottlenecks (0.46) 1.0-1.2x
BACKEND = "inductor"  # torch.compile's backend (tests use "eager": no C++ compilation)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse (UserError) a precision the device cannot run."""
    if precision == "fp16" and device.type == "cpu":
        raise UserError(
            "precision=fp16 is not supported on a CPU (torch's CPU autocast runs bf16; fp16 "
            "kernels there are slow or missing): use --set precision=bf16 (or fp32), or run on "
            "a CUDA GPU."
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(
            "precision=bf16: this CUDA GPU does not support bfloat16; use --set precision=fp16 "
            "(with a gradient scaler) or fp32."
        )


def has_amx_bf16() -> bool:
    """Whether this CPU has AMX-BF16 tiles that torch may use (the kernel grants them on Linux)."""
    try:
        return bool(torch._C._cpu._get_cpu_capability().get("amx_bf16")) and bool(
            torch._C._cpu._init_amx()
        )
    except (AttributeError, RuntimeError):  # private API: another build may lack it
        return False


@torch.no_grad()
def dense_share(model: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """The share of a forward pass's convolution and linear FLOPs (one ``input_shape`` sample, eval
    mode) in dense convolutions (one group) of kernels larger than 1×1; 0 when it has none or
    cannot run on one sample (so auto keeps fp32)."""
    flops = {True: 0, False: 0}

    def conv(m, _inputs, out):
        k = m.weight[0, 0].numel()
        flops[m.groups == 1 and k > 1] += 2 * out.numel() * m.in_channels // m.groups * k

    def linear(m, _inputs, out):
        flops[False] += 2 * out.numel() * m.in_features

    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    handles = [
        m.register_forward_hook(conv if isinstance(m, convs) else linear)
        for m in model.modules()
        if isinstance(m, (*convs, torch.nn.Linear))
    ]
    was_training = model.training
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    # compiled in place (compile=true): its forward runs eagerly here, not compiled for one sample
    compiled = getattr(model, "_compiled_call_impl", None) is not None
    try:
        with torch.random.fork_rng(devices=[]):  # a sampling supernet draws: the run's RNG stays
            model.eval()
            (model.forward if compiled else model)(torch.zeros(1, *input_shape, device=device))
    except (RuntimeError, ValueError, TypeError):  # a user's model that cannot take one sample
        return 0.0
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    total = flops[True] + flops[False]
    return flops[True] / total if total else 0.0


def resolve(
    precision: str, model: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device
) -> tuple[str, str | None]:
    """The precision ``model`` trains in, and for ``auto`` a line saying why (else None)."""
    if precision != "auto":
        return precision, None
    if device.type != "cpu":
        return "fp32", f"precision auto -> fp32 on {device.type} (bf16 not measured there yet)"
    if not has_amx_bf16():
        return "fp32", "precision auto -> fp32: this CPU has no AMX-BF16 (bf16 runs slower)"
    share = dense_share(model, input_shape)
    if share >= DENSE_SHARE:
        return "bf16", (
            f"precision auto -> bf16: this CPU has AMX-BF16 and dense convolutions do {share:.0%} "
            "of the work"
        )
    return "fp32", (
        f"precision auto -> fp32: dense convolutions do {share:.0%} of the work, under "
        f"{DENSE_SHARE:.0%} bf16 does not pay"
    )


class Mixed:
    """Autocast and the gradient scaler of one training loop (`scinas.train.Trainer`)."""

    def __init__(self, precision: str = "fp32", device_type: str = "cpu"):
        if precision not in DTYPES:  # auto is resolved per network before (`resolve`)
            raise ValueError(f"unknown precision {precision!r} (fp32, bf16 or fp16)")
        self.precision, self.device_type = precision, device_type
        self.dtype = DTYPES[precision]
        self.scaler = new_scaler(precision, device_type)

    def autocast(self):
        """The context of a step's forward passes (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true size (before clipping them)."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step (skipped by the scaler when the fp16 gradients overflowed)."""
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict | None) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)


def new_scaler(precision: str, device_type: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device_type, enabled=precision == "fp16")


def full_precision(device_type: str):
    """A context where autocast is off: what runs inside is float32 whatever ``precision``."""
    return torch.autocast(device_type, enabled=False)


# ----------------------------------------------------------------------------- compile


def inductor_default_cxx() -> str:
    """The C++ compiler inductor runs on a CPU without CXX set (`torch._inductor.config`)."""
    return {"win32": "cl", "darwin": "clang++"}.get(sys.platform, "g++")


def _runs(cxx: str) -> bool:
    """Whether ``cxx`` is found and answers ``--version`` (inductor's own test of it)."""
    path = shutil.which(cxx)
    if path is None:
        return False
    if sys.platform == "win32":  # cl has no --version
        return True
    try:
        return subprocess.run([path, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here (None: it can)."""
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            return "torch.compile does not support this Python version"
    except Exception as e:  # an old or partial torch build
        return f"torch.compile is unavailable ({e})"
    if BACKEND != "inductor":
        return None
    if device.type == "cpu":
        cxx = os.environ.get("CXX", inductor_default_cxx())  # the one inductor will run
        if not _runs(cxx):
            named = f"CXX={cxx}" if "CXX" in os.environ else cxx
            return (
                f"the C++ compiler torch.compile needs on a CPU ({named}) was not found or "
                "does not run"
            )
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Triton is not installed, which torch.compile needs on a CUDA GPU"
    return None


def check_compile(enabled: bool, device: torch.device) -> None:
    """Refuse (UserError) compile=true where torch.compile cannot work."""
    if not enabled:
        return
    why = compile_unavailable(device)
    if why is not None:
        raise UserError(
            f"compile=true: {why}. Install it, or run without --set compile=true (eager mode "
            "gives the same results, only slower or faster)."
        )


def maybe_compile(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``model`` compiled in place (`torch.nn.Module.compile`) when ``enabled``."""
    if enabled:
        import torch._dynamo

        # a graph dynamo cannot capture runs eagerly (torch warns) instead of failing the run;
        # a supernet that samples a path per step (GDAS, rsws) recompiles per new path until
        # torch's cache limit, then runs that forward eagerly (torch warns once)
        torch._dynamo.config.suppress_errors = True
        model.compile(backend=BACKEND)
    return model
