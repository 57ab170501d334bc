"""The run directory: everything a run leaves, and nothing else is state.

Layout::

    run.json            marks a scinas run: kind (run/search/train), version, start time
    config.json         the resolved configuration
    data.json           dataset facts the model depends on: shapes, task, normalisation stats
    metrics.jsonl       one JSON object per event (search epoch, train epoch, test)
    arch_weights.jsonl  per search epoch: alphas, softmax weights and the genotype at that point
    genotype.json       the searched (or given) genotype, DARTS format
    supernet.pt         trained supernet weights (state_dict, loads with weights_only=True)
    model.pt            final network weights (state_dict)
    predictions_test.npz  test targets and predictions (original units)
    results.json        the summary: task, test metrics, params, FLOPs, times

JSON files are written atomically (temporary file, then rename): a crash never leaves half a file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import UserError
from .signals import Interrupted, stop_on_signals
from .version import __version__

MARKER = "run.json"


def atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    atomic_write(Path(path), lambda f: f.write(data))


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).is_file()


def check_out_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an --out that holds something else, before anything is written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a directory. Choose another --out.")
    if path.is_dir() and any(path.iterdir()):
        if not is_run_dir(path):
            raise UserError(
                f"--out {path} already exists, is not empty and is not a scinas run; refusing to "
                "write into it. Choose a new or empty directory."
            )
        if not overwrite:
            info = read_json(path / MARKER)
            raise UserError(
                f"--out {path} already holds a scinas {info.get('kind', 'run')} "
                f"(started {info.get('started', '?')}). Choose another --out, or pass --overwrite "
                "to replace it."
            )
    return path


def default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_resume(out, kind: str) -> dict:
    """The run to resume exists, is of this kind and unfinished; returns the config it was
    started with (`scinas.config.check_resumable` compares it with the new one)."""
    if out is None:
        raise UserError("--resume needs the run directory to continue.")
    path = Path(out)
    if not is_run_dir(path):
        raise UserError(
            f"{path} is not a scinas run directory (no run.json): nothing to resume. Start a new "
            "run with --out instead."
        )
    info = read_json(path / "run.json")
    if info.get("kind") != kind:
        raise UserError(
            f"{path} holds a scinas {info.get('kind')} run; resume it with "
            f"`scinas {info.get('kind')} --resume {path}`."
        )
    if (path / "results.json").is_file():
        raise UserError(f"{path} already finished (results.json exists): nothing to resume.")
    return read_json(path / "config.json")


class RunDir:
    """Writes the files of one run. Create it only after all input has been validated."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = None
        self.tensorboard = None  # a SummaryWriter when enabled
        self.checkpoint_seconds = 0.0  # time this process spent writing checkpoints

    @classmethod
    def create(cls, path: str | os.PathLike, *, kind: str, config: dict, overwrite: bool = False):
        path = check_out_dir(path, overwrite=overwrite)
        if path.is_dir() and overwrite and is_run_dir(path):
            if is_locked(path):
                raise UserError(
                    f"--out {path} is in use by another scinas process; not overwriting it."
                )
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.lock = RunLock(path).acquire()
        write_json(
            path / MARKER,
            {
                "scinas": __version__,
                "kind": kind,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch": torch.__version__,
            },
        )
        write_json(path / "config.json", config)
        return run

    @classmethod
    def reopen(cls, path: str | os.PathLike) -> RunDir:
        """An existing run directory, locked for this process (resume)."""
        run = cls(Path(path))
        run.lock = RunLock(run.path).acquire()
        return run

    @contextmanager
    def working(self):
        """While a verb writes into this directory: stop signals become checkpoints, and the
        lock is released at the end (a crash releases it too: it is an flock)."""
        try:
            with stop_on_signals():
                yield self
        except Interrupted as e:
            raise Interrupted(
                f"{e}; checkpoint saved. Continue with --resume {self.path}"
            ) from None
        finally:
            self.close()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj) -> None:
        write_json(self.path / name, obj)

    def _append(self, name: str, obj) -> None:
        with open(self.path / name, "a") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()

    def log_event(self, event: dict) -> None:
        self._append("metrics.jsonl", {"time": time.time(), **event})
        if self.tensorboard is not None:
            _tensorboard_scalars(self.tensorboard, event)

    def enable_tensorboard(self) -> None:
        """Mirror every epoch's numbers as TensorBoard scalars in DIR/tensorboard."""
        self.tensorboard = open_tensorboard(self.path / "tensorboard")

    def log_arch_weights(self, epoch: int, record: dict) -> None:
        """One line of arch_weights.jsonl: the epoch and `strategies.oneshot.arch_record`."""
        self._append("arch_weights.jsonl", {"epoch": epoch, **record})

    def save_state(self, name: str, module: torch.nn.Module) -> None:
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        atomic_write(self.path / name, lambda f: torch.save(state, f))


def load_state(path: str | os.PathLike) -> dict:
    """Load weights saved by `RunDir.save_state`, never unpickling code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: this run has no trained weights.") from None
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise UserError(f"cannot load weights from {path}: {e.__class__.__name__}: {e}") from None


def require_tensorboard():
    """torch's SummaryWriter, or a UserError saying how to get it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "tensorboard=true needs the tensorboard package: pip install tensorboard "
            "(or leave tensorboard off; metrics.jsonl has the same numbers)."
        ) from None
    return SummaryWriter


def open_tensorboard(folder: Path):
    return require_tensorboard()(str(folder))


def _tensorboard_scalars(writer, event: dict) -> None:
    """Numbers of one event as scalars: ``search_epoch/val/accuracy`` at step ``epoch``."""
    kind = event.get("event", "event")
    step = event.get("epoch", event.get("trial", 0))
    for split in ("train", "val"):
        for k, v in (event.get(split) or {}).items():
            if isinstance(v, int | float):
                writer.add_scalar(f"{kind}/{split}/{k}", v, step)
    for k in ("lr", "arch_loss", "tau", "score"):
        if isinstance(event.get(k), int | float):
            writer.add_scalar(f"{kind}/{k}", event[k], step)
    diag = event.get("diagnostics") or {}
    for k in ("parameter_free", "mean_entropy"):
        if k in diag:
            writer.add_scalar(f"{kind}/diagnostics/{k}", diag[k], step)
    if kind == "test":
        for k, v in event.items():
            if isinstance(v, int | float) and k != "time":
                writer.add_scalar(f"test/{k}", v, 0)
    writer.flush()


class RunLock:
    """An exclusive lock on a run directory (``DIR/.lock``), held while a process writes to it.

    flock: released by the OS when the process dies, even by SIGKILL, so a crash never leaves a
    stale lock behind."""

    def __init__(self, path: Path):
        self.path = Path(path) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(
                    f"{self.path.parent} is in use by another scinas process (pid {holder}). "
                    "Wait for it to finish, or stop it, before writing to this run directory."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def is_locked(path: Path) -> bool:
    lock = Path(path) / ".lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
