"""Mixed precision and compilation of a run (the top-level ``precision`` and ``compile`` settings).

``precision``: ``fp32`` (default), ``bf16`` or ``fp16``. The forward passes of every training step
(the one-shot search's weight and first-order architecture steps, the final network's steps) run
under `torch.autocast` on the run's device with that dtype; the weights, the optimisers and the
gradients stay float32. fp16 adds a gradient scaler (`torch.amp.GradScaler`): the loss is scaled
before the backward pass, the gradients unscaled before clipping, and a step whose gradients
overflowed is skipped while the scale shrinks. What stays in float32 whatever the setting: the
second-order DARTS architecture step (its Hessian-vector product is a finite difference of two
gradients, which bf16's 8-bit mantissa would drown), every evaluation and the metrics.

fp16 is refused on a CPU (torch's CPU autocast is bf16; fp16 kernels there are slow or missing),
and bf16 on a CUDA GPU without bf16 support.

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


class Mixed:
    """Autocast and the gradient scaler of one training loop (`scinas.train.Trainer`)."""

    def __init__(self, precision: str = "fp32", device_type: str = "cpu"):
        if precision not in DTYPES:
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
