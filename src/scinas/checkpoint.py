"""Exact resume: atomic checkpoints of a training loop and the random-number-generator states.

A loop (the one-shot search, the final training) calls `Checkpointer.save` at the end of every
epoch, and at the next step boundary after SIGINT/SIGTERM (then raises `Interrupted`). A checkpoint
holds everything the rest of the run depends on: model and optimiser/scheduler states, every
random-number-generator state, the data order of the epoch in progress, the step reached, the
epoch's accumulated outputs, and the byte length of each ``*.jsonl`` log at that moment (logs
written after it are cut back on resume, so no event appears twice).

Checkpoints are written to a temporary file and renamed; the last two are kept, and a corrupt
or truncated newest one falls back to the one before with a warning. They load with
``weights_only=True``: tensors, numbers, strings and containers only, never code.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .rundir import RunDir, UnsafeFile, atomic_write, disk_error, safe_torch_load

LOGS = ("metrics.jsonl", "arch_weights.jsonl")
KEEP = 2
FOREIGN = "not a scinas checkpoint of this phase"


def load_fitting(module: torch.nn.Module, state: dict, folder: Path) -> None:
    """``module.load_state_dict(state)`` of a checkpoint in ``folder``, or one UserError when its
    tensors do not fit ``module``: the run's config builds another network now than when the
    checkpoint was written (other settings, or another version of scinas and its defaults)."""
    try:
        module.load_state_dict(state)
    except RuntimeError:  # names or shapes: say how many and the first of each, not all
        raise UserError(
            f"the checkpoint resumed from in {folder} does not fit the network this run's settings "
            f"build ({_misfit(module.state_dict(), state)}): it was written with other settings "
            "or by another version of scinas. Resume with the version that started the run, "
            "or start it again with --overwrite."
        ) from None


def _misfit(have: dict, saved: dict) -> str:
    """How the tensors ``saved`` differ from those a module ``have``s, in a line."""
    missing = [k for k in have if k not in saved]
    extra = [k for k in saved if k not in have]
    shapes = [
        k
        for k in have
        if k in saved and hasattr(saved[k], "shape") and saved[k].shape != have[k].shape
    ]

    def dims(t) -> str:
        return "×".join(map(str, t.shape)) or "a scalar"

    parts = []
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} tensor(s) of another shape, e.g. {k}: {dims(saved[k])} in the "
            f"checkpoint, {dims(have[k])} built"
        )
    if missing:
        parts.append(f"{len(missing)} the network has are not in it, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} in it are not in the network, e.g. {extra[0]}")
    return "; ".join(parts) or "its tensors are refused"


# ----------------------------------------------------------------------------- RNG states


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict:
    """Global torch / numpy / python RNG states and those of named generators, as tensors and
    plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": _python_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators: dict[str, torch.Generator] | None = None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for k, g in (generators or {}).items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state():
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def numpy_rng_state(rng: np.random.RandomState) -> dict:
    kind, keys, pos, has_gauss, gauss = rng.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def set_numpy_rng_state(rng: np.random.RandomState, s: dict) -> None:
    rng.set_state(
        (s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"])
    )


# ----------------------------------------------------------------------------- checkpoints


class Checkpointer:
    """Saves and finds the checkpoints of one phase (``search`` or ``train``) of a run."""

    def __init__(self, run: RunDir | None, phase: str, reporter=None):
        self.run, self.phase, self.reporter = run, phase, reporter
        self.folder = run.path / "checkpoints" if run is not None else None

    @property
    def enabled(self) -> bool:
        return self.run is not None

    def exists(self) -> bool:
        """Whether this phase has any checkpoint (readable or not)."""
        return bool(self._files())

    def _files(self) -> list[Path]:
        if self.folder is None or not self.folder.is_dir():
            return []
        files = self.folder.glob(f"{self.phase}-*.pt")
        return sorted(files, key=lambda p: int(p.stem.rsplit("-", 1)[1]))

    def save(self, state: dict) -> None:
        """Atomically write ``state`` (plus the current log sizes); keep the last two.

        A write the disk refuses (full, read-only) removes its partial file and keeps the
        previous checkpoint, and ends the run with one message saying how to continue from it.
        """
        if self.folder is None:
            return
        t0 = time.perf_counter()
        state = {
            **state,
            "phase": self.phase,
            "logs": {name: _size(self.run.path / name) for name in LOGS},
        }
        seq = self._files()
        n = int(seq[-1].stem.rsplit("-", 1)[1]) + 1 if seq else 1
        path = self.folder / f"{self.phase}-{n}.pt"
        try:
            self.folder.mkdir(exist_ok=True)
            atomic_write(path, lambda f: torch.save(state, f))
        except OSError as e:
            kept = f"; the previous checkpoint {seq[-1].name} is kept" if seq else ""
            raise disk_error(e, f"checkpoint {path}{kept}", self.run.resume_hint) from None
        for old in self._files()[:-KEEP]:
            old.unlink(missing_ok=True)
        self.run.checkpoint_seconds += time.perf_counter() - t0  # their cost, in results.json

    def load(self) -> dict | None:
        """The newest readable checkpoint of this phase (logs cut back to it), or None."""
        files = self._files()
        for i in range(len(files) - 1, -1, -1):
            path = files[i]
            try:
                state = safe_torch_load(path, "a checkpoint")
                if not isinstance(state, dict) or state.get("phase") != self.phase:
                    raise UserError(FOREIGN)
            except UnsafeFile:
                raise UserError(
                    f"{path} is refused as unsafe: it holds more than tensors (it would run code "
                    "when unpickled). Delete it to resume from the one before."
                ) from None
            except UserError as e:  # truncated, corrupt, or foreign
                why = FOREIGN if str(e) == FOREIGN else "corrupt or truncated"
                then = (
                    "falling back to the one before"
                    if i > 0
                    else f"no older checkpoint: the {self.phase} phase starts over"
                )
                self._warn(f"checkpoint {path.name} is unreadable ({why}); {then}")
                continue
            self.truncate_logs(state["logs"])
            return state
        return None

    def truncate_logs(self, sizes: dict) -> None:
        for name, size in sizes.items():
            path = self.run.path / name
            if path.exists() and path.stat().st_size > size:
                with open(path, "r+b") as f:
                    f.truncate(size)

    def clear(self) -> None:
        """Delete this phase's checkpoints (it finished), and the folder once it is empty."""
        for path in self._files():
            path.unlink(missing_ok=True)
        if self.folder is not None:
            with contextlib.suppress(OSError):  # another phase's checkpoints are still there
                self.folder.rmdir()

    def _warn(self, message: str) -> None:
        if self.reporter is not None:
            self.reporter.log(f"warning: {message}")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
