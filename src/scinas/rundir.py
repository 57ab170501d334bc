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

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import UserError
from .files import (  # noqa: F401
    DISK_ERRORS,
    UnsafeFile,
    atomic_write,
    disk_error,
    file_mode,
    json_bytes,
    load_state,
    read_json,
    read_mapping,
    safe_torch_load,
    write_json,
)
from .runlock import RunLock, is_locked
from .signals import STOP, Interrupted, stop_on_signals
from .userpaths import os_reason, stat_user_path
from .version import __version__

MARKER = "run.json"

# What scinas writes into a run directory (every verb, the report and the exports): --overwrite
# deletes a directory only when it holds nothing else, so it never deletes a user's own files.
RUN_FILES = frozenset(
    {
        MARKER,
        ".lock",
        "config.json",
        "data.json",
        "metrics.jsonl",
        "arch_weights.jsonl",
        "genotype.json",
        "supernet.pt",
        "model.pt",
        "predictions_test.npz",
        "results.json",
        "recipe.json",
        "search_result.json",
        "budget.json",
        "lr_range.json",
        "compare.json",
        "report.html",
        "study.db",
        "study.db-journal",
        "study.db-wal",
        "study.db-shm",
        "model.onnx",
        "model.torchscript.pt",
        "model.pt2",
        "model.safetensors",
        "curve.csv",
        "curve.png",
        "trials.csv",
    }
)
RUN_FOLDERS = frozenset({"checkpoints", "figures", "tensorboard"})


def is_run_dir(path: str | os.PathLike) -> bool:
    # a name the OS refuses (too long, a loop of links) is a UserError naming why
    st = stat_user_path(Path(path) / MARKER, "run directory file")
    return st is not None and stat.S_ISREG(st.st_mode)


def foreign_entries(path: Path, depth: int = 0) -> list[str]:
    """Entries of ``path`` (a run directory) that scinas did not write, relative to ``path``.
    Run directories nested in it (compare's ``METHOD/seedN``, a benchmark's seeds) are checked
    the same way; anything else unknown is foreign."""
    found = []
    for entry in sorted(path.iterdir()):
        name = entry.name
        ours = (entry.is_file() and (name in RUN_FILES or _is_temporary(name))) or (
            entry.is_dir() and name in RUN_FOLDERS
        )
        if entry.is_symlink():
            found.append(name)
        elif ours:
            continue
        elif entry.is_dir() and depth < 3 and (is_run_dir(entry) or _holds_runs(entry)):
            found += [f"{name}/{f}" for f in foreign_entries(entry, depth + 1)]
        else:
            found.append(name + ("/" if entry.is_dir() else ""))
    return found


def _is_temporary(name: str) -> bool:
    """A temporary file of `atomic_write` (``.NAME.XXXX.tmp``) left by a killed process."""
    return name.startswith(".") and name.endswith(".tmp")


def _holds_runs(path: Path) -> bool:
    """A folder of run directories only (compare's ``darts/`` holding ``seed0/``...)."""
    children = list(path.iterdir())
    return bool(children) and all(c.is_dir() and is_run_dir(c) for c in children)


def _listing(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def check_out_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an --out that holds something else, or that cannot be created, before anything
    is written. With ``overwrite``, only a scinas run directory holding nothing but what scinas
    writes may be replaced."""
    path = Path(path)
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as e:  # a name too long, a loop of links in a parent, no permission
        raise UserError(f"--out {path} cannot be used: {os_reason(e, path)}.") from None
    if path.is_symlink():
        target = os.readlink(path)
        if not path.exists():
            try:
                os.stat(path)
                what = "a broken symbolic link"
            except OSError as e:
                loop = e.errno == errno.ELOOP
                what = "a loop of symbolic links" if loop else "a broken symbolic link"
            raise UserError(
                f"--out {path} is {what} (to {target}). Remove the link or choose another --out."
            )
        if overwrite:
            raise UserError(
                f"--out {path} is a symbolic link (to {target}); --overwrite does not follow "
                f"links. Give the directory itself (--out {path.resolve()}) to replace the run "
                "there, or remove the link."
            )
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a directory. Choose another --out.")
    if not path.exists():
        _check_creatable(path)
    else:
        _check_writable(path)
    if path.is_dir() and any(path.iterdir()):
        if not is_run_dir(path):
            entries = sorted(e.name + ("/" if e.is_dir() else "") for e in path.iterdir())
            raise UserError(
                f"--out {path} already exists, is not empty and is not a scinas run (it holds "
                f"{_listing(entries)}); refusing to write into it, with or without --overwrite. "
                "Choose a new or empty directory."
            )
        foreign = foreign_entries(path)
        try:
            info, corrupt = read_mapping(path / MARKER), False
        except UserError:
            info, corrupt = {}, True
        if overwrite and foreign:
            raise UserError(
                f"--out {path} holds files scinas did not write ({_listing(foreign)}); "
                "--overwrite replaces a scinas run directory and nothing else, so it is left "
                "alone. Move those files out, or choose another --out."
            )
        if not overwrite:
            what = (
                f"a scinas run whose {MARKER} is corrupt"
                if corrupt
                else f"a scinas {info.get('kind', 'run')} (started {info.get('started', '?')})"
            )
            raise UserError(
                f"--out {path} already holds {what}. Choose another --out, or pass --overwrite "
                "to replace it."
            )
    return path


def _check_creatable(path: Path) -> None:
    """The nearest existing ancestor of a new --out is a writable directory."""
    parent = path.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(
            f"--out {path} is under {parent}, which is a "
            f"{'broken link' if parent.is_symlink() else 'regular file'}, not a directory. "
            "Choose another --out."
        )
    top = _first_missing(path.absolute())
    try:  # a probe, removed at once: permissions, read-only mounts, and what root may not do
        top.mkdir()
        top.rmdir()
    except OSError as e:
        raise UserError(
            f"cannot create --out {path}: {e.strerror} in {parent} (permission denied or a "
            "read-only file system). Choose another --out."
        ) from None


def _check_writable(path: Path) -> None:
    """An existing --out takes new files (probed with a temporary file, removed at once)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".scinas-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(
            f"--out {path} is not writable ({e.strerror}: permission denied or a read-only file "
            "system). Choose another --out."
        ) from None


def check_output_file(path: str | os.PathLike, option: str = "--output") -> Path:
    """A file a verb will write (``report``/``evaluate``/``export --output``): checked before
    any work is done, so a typo does not cost a whole evaluation."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; give a file name.")
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a directory"
        raise UserError(
            f"the folder of {option} {path} ({parent}) {what}. Create it first, or give "
            "another path."
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(
            f"{option} {path} is not writable (permission denied or a read-only file system)."
        )
    return path


def default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_kind(path: str | os.PathLike) -> str:
    """The verb that made a run directory (run.json's ``kind``)."""
    return str(read_mapping(Path(path) / MARKER).get("kind", "run"))


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
    other = run_kind(path)
    if other != kind:
        raise UserError(
            f"{path} was started by `scinas {other}`, not `scinas {kind}`; resume it with the "
            f"verb that started it: `scinas {other} --resume {path}`."
        )
    if (path / "results.json").is_file():
        raise UserError(f"{path} already finished (results.json exists): nothing to resume.")
    return read_mapping(path / "config.json")


class RunDir:
    """Writes the files of one run. Create it only after all input has been validated."""

    def __init__(self, path: Path, kind: str = "run"):
        self.path = path
        self.kind = kind  # the verb that made it, for "continue with `scinas KIND --resume`"
        self.lock = None
        self.tensorboard = None  # a SummaryWriter when enabled
        self.report = True  # write report.html when the run ends (the config's report)
        self.checkpoint_seconds = 0.0  # time this process spent writing checkpoints

    @classmethod
    def create(cls, path: str | os.PathLike, *, kind: str, config: dict, overwrite: bool = False):
        """The new run directory with run.json and config.json, locked for this process.

        Everything that can be refused is refused before the first byte is written: the
        directory is checked, the JSON serialised. A file-system failure while creating it
        (read-only, full, no permission) is a UserError, and leaves --out as it was: a run
        being replaced is moved aside first and put back."""
        path = check_out_dir(path, overwrite=overwrite)
        marker = json_bytes(
            {
                "scinas": __version__,
                "kind": kind,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch": torch.__version__,
            },
            MARKER,
        )
        conf = json_bytes(config, "the configuration")
        replaced = None
        if path.is_dir() and overwrite and is_run_dir(path):
            if is_locked(path):
                raise UserError(
                    f"--out {path} is in use by another scinas process; not overwriting it."
                )
            replaced = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        created = _first_missing(path)
        run = cls(path, kind)
        # a stop request waits for the directory to be whole (or put back); one acted on at
        # the block's end must not leave this process holding the lock of a run it never got
        try:
            with STOP.critical():
                return cls._make(run, path, replaced, created, conf, marker)
        except Interrupted:
            run.close()
            raise

    @staticmethod
    def _make(run, path, replaced, created, conf, marker) -> RunDir:
        try:
            if replaced is not None:
                os.rename(path, replaced)
            path.mkdir(parents=True, exist_ok=True)
            run.lock = RunLock(path).acquire()
            # the marker last: a directory that says it is a run always has its config, so a
            # run killed at once can still be resumed
            atomic_write(path / "config.json", lambda f: f.write(conf))
            atomic_write(path / MARKER, lambda f: f.write(marker))
        except OSError as e:
            run.close()
            if replaced is not None and replaced.exists():
                shutil.rmtree(path, ignore_errors=True)
                os.rename(replaced, path)
            elif created is not None:
                shutil.rmtree(created, ignore_errors=True)
            raise disk_error(e, f"the run directory {path}", ". Or choose another --out") from None
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        return run

    @classmethod
    def reopen(cls, path: str | os.PathLike) -> RunDir:
        """An existing run directory, locked for this process (resume)."""
        run = cls(Path(path), run_kind(path))
        try:
            with STOP.critical():  # as in create: locked and returned, or neither
                run.lock = RunLock(run.path).acquire()
        except OSError as e:
            raise disk_error(e, f"the lock of {run.path}", "") from None
        except Interrupted:
            run.close()
            raise
        return run

    @contextmanager
    def working(self):
        """While a verb writes into this directory: stop signals become checkpoints, a write the
        disk refuses (full, read-only) becomes one message saying how to continue, and the lock
        is released at the end (a crash releases it too: it is an flock)."""
        try:
            with stop_on_signals():
                yield self
        except Interrupted as e:
            if self.file("results.json").is_file():  # finished: nothing to resume
                raise
            saved = "its last checkpoint is kept" if STOP.forced else "checkpoint saved"
            raise Interrupted(
                f"{e}; {saved}. Continue with `scinas {self.kind} --resume {self.path}`"
            ) from None
        except OSError as e:
            if e.errno not in DISK_ERRORS or not _under(e.filename, self.path):
                raise
            raise disk_error(e, f"into {self.path}", self.resume_hint) from None
        finally:
            self.close()

    @property
    def resume_hint(self) -> str:
        return f", then continue with `scinas {self.kind} --resume {self.path}`"

    def close(self) -> None:
        """Release the lock and tidy up: no .lock file and no empty checkpoints/ stay behind."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.lock is not None:
            self.lock.release(remove=True)
            self.lock = None
        with contextlib.suppress(OSError):  # only when empty: rmdir refuses otherwise
            (self.path / "checkpoints").rmdir()

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


def _first_missing(path: Path) -> Path | None:
    """The outermost folder ``mkdir(parents=True)`` would create for ``path`` (None: exists)."""
    if path.exists():
        return None
    top = path
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def _under(filename, folder: Path) -> bool:
    """Whether an OSError's file lies in ``folder`` (None: unknown, assumed so)."""
    if filename is None:
        return True
    try:
        Path(os.fsdecode(filename)).absolute().relative_to(folder.absolute())
    except ValueError:
        return False
    return True


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
