"""Many workers on one black-box study: shared storages, heartbeats, retries, exact budgets.

A black-box search whose ``search.storage`` is set is *shared*: every process (``scinas search``,
``scinas run`` or ``scinas worker``) given the same storage URL and study name evaluates trials
of the same optuna study. This module supplies what that needs:

- `make_storage`: the optuna storage for a URL: a database (``postgresql://``, ``mysql://``,
  ``sqlite:///``) as an ``RDBStorage`` with optuna's heartbeat and
  ``RetryHeartbeatStaleTrialCallback`` (a trial whose worker stopped beating for
  ``search.grace_period`` seconds is failed and queued again with the same architecture), or
  ``journal:///path/study.log`` as optuna's ``JournalStorage`` on a file (a shared filesystem,
  no database server), given optuna's heartbeat interface here (`BeatingJournalStorage`).
- `check_shared_storage`: the preflight: driver installed, server reachable, and a study of
  that name, when it exists, holding the same search space and objective (its config and
  decisions are stored in the study's user attributes).
- `SharedStudy`: the claim rule that keeps the budget exact. A worker asks a trial, then counts
  the trials numbered before it that are complete, running or queued; when that count already
  reaches the budget its trial is surplus: it is failed at once (user attribute
  ``scinas_surplus``) and the worker waits. Trial numbers are handed out in creation order under
  a lock on the study row (RDB) or by the journal's order, so of any two racing trials the later
  one sees the earlier one: never more than ``budget`` trials complete, and workers keep
  waiting (failing stale trials, picking up the retries) until ``budget`` are complete.
- The final retrain: `SharedStudy.owns_last_trial`. Only the worker that completed the study's
  last trial (latest completion time, ties by number) retrains; every worker computes the same
  answer from the storage, so exactly one does. ``scinas worker`` never retrains.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages._heartbeat import BaseHeartbeat, get_heartbeat_thread
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from .errors import UserError
from .nested import differences
from .signals import STOP, Interrupted

JOURNAL = "journal:///"
EXTRA = "pip install 'scinas[distributed]'"
# Config fields that may differ between the workers of one study (their budgets, where the
# storage is, how often they beat, where the data files are, which device each uses).
PER_WORKER = (
    "search.budget",  # each worker stops once its own budget is complete: raise it to extend
    "search.time_budget",
    "search.storage",
    "search.study",
    "search.heartbeat",
    "search.grace_period",
    "search.max_retry",
    "device",
    "deterministic",
    "tensorboard",
    "data.data_dir",
)
CONFIG_ATTR, DECISIONS_ATTR = "scinas_config", "scinas_decisions"
POLL_SECONDS = 1.0
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # user attribute `worker` of each trial

NOTE_EVERY = 30.0  # seconds between the notes of a worker waiting for other workers
CONNECT_TIMEOUT = 10  # seconds to connect to a database server


@contextlib.contextmanager
def _quiet():
    """optuna flags its heartbeat API as experimental, and asks that heartbeats go with
    Study.optimize; scinas uses the ask/tell interface with the same heartbeat thread."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def study_name(s, seed: int) -> str:
    """The study of a search section: ``search.study``, or one named by strategy, space, seed."""
    return s.study or f"scinas-{s.strategy}-{s.space}-seed{seed}"


# ----------------------------------------------------------------------------- storages


def journal_path(url: str) -> Path:
    """``journal:///rel/study.log`` or ``journal:////abs/study.log`` (SQLite's convention)."""
    if not url.startswith(JOURNAL) or len(url) == len(JOURNAL):
        raise UserError(
            f"journal storage {url!r}: write journal:///relative/study.log or "
            "journal:////absolute/study.log (a file on a filesystem all workers share)."
        )
    return Path(url[len(JOURNAL) :]).expanduser()


def make_storage(url: str, s=None) -> optuna.storages.BaseStorage:
    """The optuna storage for ``url``; with a search section ``s``, databases get its heartbeat
    (``search.heartbeat``, ``search.grace_period``) and retry (``search.max_retry``)."""
    if url.startswith("journal:"):
        backend = JournalFileBackend(str(journal_path(url)))
        if s is not None and s.heartbeat:
            with _quiet():
                return BeatingJournalStorage(backend, **_heartbeat(s))
        return JournalStorage(backend)
    kwargs = {}
    if url.startswith(("postgresql", "mysql")):
        # a server gone quiet mid-run fails a connection in seconds rather than hanging on it
        kwargs["engine_kwargs"] = {
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT},
        }
    if s is not None and s.heartbeat:
        with _quiet():
            kwargs.update(_heartbeat(s))
    for attempt in range(3):
        try:
            with _quiet():
                return RDBStorage(url, **kwargs)
        except Exception:
            # workers starting together on a new database race to create optuna's tables (the
            # loser's insert of the schema version fails): the tables exist on the next try
            if attempt == 2:
                raise
            time.sleep(0.5 + attempt)


def _heartbeat(s) -> dict:
    return dict(
        heartbeat_interval=s.heartbeat,
        grace_period=s.grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=s.max_retry),
    )


class BeatingJournalStorage(JournalStorage, BaseHeartbeat):
    """optuna's journal file storage with optuna's heartbeat interface (which optuna gives only
    its RDB storage): a running trial's beats are a system attribute holding the worker's
    clock, so the workers' clocks must agree to well within the grace period (NTP)."""

    ATTR = "scinas_heartbeat"

    def __init__(
        self, backend, *, heartbeat_interval, grace_period, heartbeat_stale_trial_callback
    ):
        super().__init__(backend)
        self.interval, self.grace = heartbeat_interval, grace_period or 2 * heartbeat_interval
        self.callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # (a trial failed meanwhile as stale by another worker: its retry runs elsewhere)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, self.ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [
            t._trial_id
            for t in running
            if self.ATTR in t.system_attrs and now - t.system_attrs[self.ATTR] > self.grace
        ]

    def get_heartbeat_interval(self) -> int:
        return self.interval

    def get_heartbeat_stale_trial_callback(self):
        return self.callback


def check_url(url: str) -> None:
    """The storage URL opens: a journal's folder exists, a database's driver and server answer."""
    if url.startswith("journal:"):
        _check_journal(url)
    else:
        _check_server(url)


def _check_server(url: str) -> None:
    """The URL parses, its driver imports, and (for a server) it answers within 10 s."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
        dialect = parsed.get_dialect()
    except Exception as e:
        raise UserError(
            f"search.storage {url!r} is not a database URL optuna can use ({e}). Examples: "
            "postgresql://user:password@host:5432/db, sqlite:///study.db, "
            "journal:///study.log."
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        hint = EXTRA if parsed.get_backend_name() == "postgresql" else "install it with pip"
        raise UserError(
            f"the database driver for {parsed.drivername}:// is not installed ({e}); {hint}."
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return
    remote = parsed.get_backend_name() in ("postgresql", "mysql")
    args = {"connect_timeout": CONNECT_TIMEOUT} if remote else {}
    engine = sqlalchemy.create_engine(parsed, connect_args=args, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect():
            pass
    except Exception as e:
        where = f"{parsed.host or 'localhost'}:{parsed.port or 'default port'}"
        first = str(getattr(e, "orig", e)).strip().splitlines()[0][:200]
        raise UserError(
            f"cannot reach the database server of search.storage at {where} ({first}). Is it "
            "running and are the user, password and database right? On this machine "
            "`bash scripts/postgres.sh` starts one and prints its URL."
        ) from None
    finally:
        engine.dispose()


def _check_journal(url: str) -> None:
    path = journal_path(url)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UserError(f"journal storage {url!r}: the folder {parent} does not exist.")
    if path.is_dir():
        raise UserError(f"journal storage {url!r}: {path} is a directory; name a file in it.")


def signature(config: dict, decisions) -> dict:
    """What a worker must agree on to join a study: its config (a dict; the `PER_WORKER` fields
    may differ) and its search space's decisions ((name, choices) pairs)."""
    return {CONFIG_ATTR: config, DECISIONS_ATTR: [[n, list(ch)] for n, ch in decisions]}


def stored_config(url: str, name: str) -> dict | None:
    """The config a study was started with (None: no such study, or not made by scinas)."""
    storage = make_storage(url)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)


def check_shared_storage(url: str, name: str, mine: dict) -> None:
    """Preflight of a shared search (before anything is written): the storage opens, and the
    study ``name``, if it exists, holds the same search space and objective as ``mine`` (a
    `signature`)."""
    check_url(url)
    if url.startswith("journal:") and not journal_path(url).exists():
        return  # a new journal: nothing to compare with (and no file created here)
    try:
        storage = make_storage(url)
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return  # a new study
    except Exception as e:
        raise UserError(
            f"cannot open the optuna storage {url!r} ({type(e).__name__}: "
            f"{str(e).strip().splitlines()[0][:200]})."
        ) from None
    compare_signature(name, url, storage.get_study_user_attrs(study_id), mine)


def compare_signature(name: str, url: str, old: dict, mine: dict) -> None:
    """Refuse to work on a study whose stored signature (user attributes ``old``) differs from
    this worker's (``mine``). A study without one is new: another worker is just creating it
    (the check is repeated once the study is open and its signature stored)."""
    if CONFIG_ATTR not in old or DECISIONS_ATTR not in old:
        return  # (being stored by the worker that made it: one attribute at a time)
    if old.get(DECISIONS_ATTR) != mine[DECISIONS_ATTR]:
        raise UserError(
            f"the study {name!r} in {url} holds a different search space "
            f"({len(old.get(DECISIONS_ATTR) or [])} decisions, this search has "
            f"{len(mine[DECISIONS_ATTR])}). Give another --study "
            "name, or the same space settings as the study's other workers."
        )
    stored = old[CONFIG_ATTR]
    diff = [
        d
        for d in differences(stored, mine[CONFIG_ATTR])
        if d[0] not in PER_WORKER and _holds(stored, d[0])  # (not a setting added since)
    ]
    if diff:
        listing = "; ".join(f"{k}: {a!r} (study) vs {b!r} (here)" for k, a, b in diff[:6])
        raise UserError(
            f"the study {name!r} in {url} holds a different search or objective: {listing}. "
            "Join it with the same settings (`scinas worker --storage URL --study NAME` reads "
            "them from the study), or give another --study name."
        )


def _holds(config: dict, dotted: str) -> bool:
    """Whether ``config`` has the field ``dotted`` (a.b.c) at all."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# ----------------------------------------------------------------------------- the claim rule


def _complete(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE


class SharedStudy:
    """The worker side of a shared study: claims trials within the budget, keeps their
    heartbeat, remembers which trials this worker finished. ``counts(trial)``: whether a
    finished trial counts towards the budget (default: complete ones)."""

    def __init__(
        self,
        study: optuna.Study,
        budget: int,
        reporter=None,
        poll: float = POLL_SECONDS,
        counts=_complete,
    ):
        self.study, self.budget, self.reporter, self.poll = study, budget, reporter, poll
        self.counts = counts
        self.mine: list[int] = []  # numbers of the counted trials this worker finished
        self.surplus = 0
        self._storage = study._storage
        self._beats = isinstance(self._storage, BaseHeartbeat) and (
            self._storage.get_heartbeat_interval() is not None
        )

    def _live(self, t: optuna.trial.FrozenTrial) -> bool:
        """Counted, running or queued: a trial that takes a place in the budget."""
        return self.counts(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)

    def claim(self, deadline: float | None = None) -> optuna.trial.Trial | None:
        """The next trial this worker should evaluate, or None when the budget is complete (or
        the time is up). Waits while the remaining trials run elsewhere."""
        waited, since = False, time.monotonic()
        next_note = since
        while True:
            if self._beats:
                with _quiet():
                    fail_stale_trials(self.study)
            snapshot = self.study.get_trials(deepcopy=False)  # one read: consistent counts
            done = sum(1 for t in snapshot if self.counts(t))
            if done >= self.budget or (
                deadline is not None and time.perf_counter() >= deadline and done
            ):
                return None
            queued = any(t.state == TrialState.WAITING for t in snapshot)
            room = queued or sum(1 for t in snapshot if self._live(t)) < self.budget
            if room and (trial := self._ask()) is not None:
                return trial
            if self.reporter is not None and time.monotonic() >= next_note:
                running = sum(1 for t in snapshot if t.state == TrialState.RUNNING)
                self.reporter.log(
                    "the remaining trials run on other workers: waiting for them (a dead "
                    "worker's trial is retried here once its heartbeat is stale)"
                    if not waited
                    else f"still waiting for {running} trial(s) running on other workers "
                    f"({time.monotonic() - since:.0f} s)"
                )
                waited, next_note = True, time.monotonic() + NOTE_EVERY
            time.sleep(self.poll)

    def _ask(self) -> optuna.trial.Trial | None:
        """A new trial for this worker, or None when it is beyond the budget (then failed as
        surplus). A stop signal waits for the storage to be consistent, and never leaves the
        trial running."""
        trial = claimed = None
        try:
            with STOP.critical():
                with _quiet():
                    trial = self.study.ask()
                if self._beats:
                    self._storage.record_heartbeat(trial._trial_id)
                ahead = [t for t in self.study.get_trials(deepcopy=False) if self._live(t)]
                if sum(1 for t in ahead if t.number < trial.number) < self.budget:
                    trial.set_user_attr("worker", WORKER)
                    claimed = trial
                else:
                    trial.set_user_attr("scinas_surplus", True)
                    self.study.tell(trial, state=TrialState.FAIL)
                    self.surplus += 1
        except Interrupted:
            if claimed is not None:
                self.study.tell(claimed, state=TrialState.FAIL)
            raise
        return claimed

    def lost(self, trial: optuna.trial.Trial) -> bool:
        """Whether another worker failed this trial meanwhile (its heartbeat came too late,
        e.g. the machine stalled); its retry then runs elsewhere and this result is dropped."""
        if self._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            return False
        if self.reporter is not None:
            self.reporter.log(
                f"trial {trial.number} was failed by another worker (no heartbeat for "
                "search.grace_period seconds): its retry counts, this result is dropped"
            )
        return True

    def beating(self, trial: optuna.trial.Trial):
        """A context that keeps the trial's heartbeat while it is evaluated."""
        if not self._beats:
            return contextlib.nullcontext()
        return get_heartbeat_thread(trial._trial_id, self._storage)

    def owns_last_trial(self) -> bool:
        """Whether this worker finished the study's last counted trial (it runs the final
        retrain)."""
        done = [t for t in self.study.get_trials(deepcopy=False) if self.counts(t)]
        if not done:
            return False
        last = max(done, key=lambda t: (t.datetime_complete, t.number))
        return last.number in self.mine
