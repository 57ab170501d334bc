"""The optuna studies of the black-box strategies: opening one in a storage (checked first), the
ask/tell loop, and which trials count."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .. import hardware
from ..errors import UserError
from ..signals import STOP
from ..spaces import DecisionSpace
from ..workers import (
    SharedStudy,
)
from . import fidelity


def open_study(
    storage: str | None,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    *,
    direction: str | list[str] = "maximize",
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create or load a study (a list of directions: multi-objective); a storage that cannot be
    opened is a UserError."""
    many = {"directions": direction} if isinstance(direction, list) else {"direction": direction}
    try:
        return optuna.create_study(
            storage=storage,
            study_name=name,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
            **many,
        )
    except ValueError as e:  # e.g. the stored study's direction differs
        raise UserError(f"optuna storage {storage}: {e}") from None
    except Exception as e:  # SQLAlchemy / file errors: unopenable URL, unwritable path
        raise UserError(
            f"cannot open the optuna storage {storage!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}). Give a URL optuna can open, e.g. "
            "sqlite:///path/to/study.db, or leave search.storage unset for a file in the run "
            "directory."
        ) from None


def check_storage_url(url: str) -> None:
    """Validate a storage URL before anything is written (opens it read-only where possible)."""
    if url.startswith("sqlite:///"):
        _check_sqlite_file(url, Path(url[len("sqlite:///") :].split("?", 1)[0]).expanduser())
        return
    if url.startswith("sqlite:"):
        raise UserError(
            f"cannot open the optuna storage {url!r}: SQLite URLs look like "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db."
        )
    if "://" not in url:
        raise UserError(
            f"search.storage {url!r} is not a URL; use e.g. sqlite:///study.db, or a "
            "database URL such as postgresql://user@host/db."
        )
    try:
        optuna.storages.get_storage(url)
    except Exception as e:
        raise UserError(
            f"cannot open the optuna storage {url!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]})."
        ) from None


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(url: str, path: Path) -> None:
    """The file of a SQLite URL can be opened as a database: its folder exists and is writable,
    and it is absent, empty, or a SQLite database (not a directory, not some other file)."""
    where = f"cannot open the optuna storage {url!r}"
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UserError(
            f"{where}: the folder {parent} does not exist. "
            "Create it first or give another search.storage URL."
        )
    if path.is_dir():
        raise UserError(
            f"{where}: {path} is a directory; the URL must name the database file "
            f"(e.g. sqlite:///{path / 'study.db'})."
        )
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise UserError(f"{where}: {path} cannot be read ({e.strerror}).") from None
        if head and head != SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise UserError(
                f"{where}: {path} exists but is not a SQLite database. Give a new file name "
                "(it is created) or an existing study's database."
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"{where}: {path} is not writable.")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"{where}: the folder {parent} is not writable, so the database cannot be created."
        )


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def counts(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards the budget: complete, or stopped early by a pruner (not
    those over a hardware limit, also PRUNED but never trained: `scinas.hardware`)."""
    done = t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    return done and "infeasible" not in t.user_attrs


def evaluated(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the budget (`counts`)."""
    return [t for t in study.get_trials(deepcopy=False) if counts(t)]


def run_study(
    study: optuna.Study,
    space: DecisionSpace,
    objective: Callable[[object], tuple[float, dict]],
    budget: int,
    on_trial: Callable[[optuna.trial.FrozenTrial, object, dict], None] | None = None,
    time_budget: float | None = None,
    shared: SharedStudy | None = None,
    stop: Callable[[optuna.Study, float | None], bool] | None = None,
) -> None:
    """Ask/tell until ``budget`` trials are complete (counting those already in the study), or,
    with ``time_budget`` seconds, until that much time has passed (at least one trial runs).
    ``shared`` (a `scinas.workers.SharedStudy`): other workers share the study; trials are
    claimed so that exactly ``budget`` complete, and each keeps a heartbeat while it runs.

    ``objective(arch) -> (score, info)``; ``info`` is stored as trial user attributes. An
    exception fails the trial in the storage and propagates. ``stop(study, deadline)``, asked
    before each new trial of a search of its own (not shared), ends it early when true
    (`scinas.strategies.fidelity.affordability_check`).
    """
    t_start = time.perf_counter()
    deadline = None if time_budget is None else t_start + time_budget
    while True:
        trial = None
        try:
            if shared is not None:  # several workers: the claim rule of scinas.workers
                trial = shared.claim(deadline)  # a stop inside never leaves a trial running
                if trial is None:
                    break
            else:
                if len(evaluated(study)) >= budget or (
                    deadline is not None and completed(study) and time.perf_counter() >= deadline
                ):
                    break
                if stop is not None and stop(study, deadline):
                    break
                with STOP.critical():
                    trial = study.ask()
            arch = space.suggest(trial)
        except BaseException:
            if trial is not None:  # never left running in the storage by a stop
                study.tell(trial, state=TrialState.FAIL)
            raise
        t0 = time.perf_counter()
        with STOP.critical():  # a stop from here on fails the trial (the except below)
            running = fidelity.CURRENT_TRIAL.set(trial)  # the objective's epochs report to it
            limit = fidelity.DEADLINE.set(deadline)  # and stop when the search's time is up
        try:
            with shared.beating(trial) if shared is not None else contextlib.nullcontext():
                value, info = objective(arch)
        except hardware.Infeasible as e:  # over a hardware limit: never trained, not counted
            with STOP.critical():
                hardware.tell_infeasible(study, trial, arch, e)
            continue
        except optuna.TrialPruned:  # stopped at a rung (scinas.strategies.fidelity)
            with STOP.critical():
                trial.set_user_attr("arch", arch.to_dict())
                trial.set_user_attr("seconds", time.perf_counter() - t0)
                study.tell(trial, state=TrialState.PRUNED)
                if shared is not None:
                    shared.mine.append(trial.number)
            continue
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            fidelity.CURRENT_TRIAL.reset(running)
            fidelity.DEADLINE.reset(limit)
        with STOP.critical():  # the trained result is recorded whole before a stop
            if shared is not None and shared.lost(trial):
                continue
            trial.set_user_attr("arch", arch.to_dict())
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            for k, v in info.items():
                trial.set_user_attr(k, v)
            study.tell(trial, value)
            if shared is not None:
                shared.mine.append(trial.number)
        if on_trial is not None:
            on_trial(study.trials[trial.number], arch, info)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best complete trial by the first objective; ties go to the better later objectives
    (multi-objective: so the choice lies on the Pareto front), then to the earliest."""
    trials = sorted(completed(study), key=lambda t: t.number)
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]

    def key(t):
        return (*(s * v for s, v in zip(signs, t.values, strict=True)), -t.number)

    return max(trials, key=key)
