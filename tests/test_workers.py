"""Many workers on one black-box study (scinas.workers): exact budgets, dead workers retried,
the journal storage, and the bad input of shared storages.

The PostgreSQL tests talk to the real server of `scripts/postgres.sh` (CI exports its URL as
SCINAS_TEST_POSTGRES); without it they skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
from optuna.trial import TrialState
from typer.testing import CliRunner

from conftest import TINY, for_strategy
from scinas.cli import app
from scinas.workers import make_storage

PG = os.environ.get("SCINAS_TEST_POSTGRES")
needs_pg = pytest.mark.skipif(
    not PG,
    reason="no PostgreSQL server: run `export SCINAS_TEST_POSTGRES=$(bash scripts/postgres.sh)`",
)


def sets(*items: str) -> list[str]:
    """--set options of a tiny random search on the bundled digits (trials well under a
    second), with ``items`` on top."""
    chosen = for_strategy([*TINY, "search.strategy=random", "search.eval_fraction=0.2", *items])
    return [a for item in chosen for a in ("--set", item)]


def worker(url: str, study: str, *extra: str) -> subprocess.Popen:
    """A `scinas worker` process (one thread) joining ``study``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scinas",
            "worker",
            "--storage",
            url,
            "--study",
            study,
            "-q",
            "--strategy",
            "random",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=make_storage(url)).get_trials()
    except KeyError:  # not created yet
        return []


def running(url: str, study: str, pid: int) -> list[optuna.trial.FrozenTrial]:
    """The trials the worker process ``pid`` is running."""
    return [
        t
        for t in trials(url, study)
        if t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").endswith(f":{pid}")
    ]


def decisions(url: str, study: str) -> int:
    """How many decisions make an architecture of the study's space (stored by scinas)."""
    storage = make_storage(url)
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(study))
    return len(attrs["scinas_decisions"])


def check_exact(url: str, study: str, summaries: list[dict], budget: int) -> None:
    """Exactly ``budget`` trials complete, each reported by exactly one worker."""
    done = sorted(t.number for t in trials(url, study) if t.state == TrialState.COMPLETE)
    assert len(done) == budget
    mine = [n for s in summaries for n in s["by_this_worker"]]
    assert sorted(mine) == done  # none lost, none counted twice
    assert all(s["completed"] == budget for s in summaries)


def new_study() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@needs_pg
def test_three_workers_on_postgres_complete_exactly_the_budget():
    study = new_study()
    procs = [worker(PG, study, *sets("search.budget=7")) for _ in range(3)]
    check_exact(PG, study, [finish(p) for p in procs], 7)


def storages():
    """(url, marks) of every shared storage kind a dead worker must not break."""
    return [
        pytest.param(lambda tmp: PG, marks=needs_pg, id="postgresql"),
        pytest.param(lambda tmp: f"journal:///{tmp / 'study.log'}", id="journal"),
    ]


@pytest.mark.parametrize("url_of", storages())
def test_a_killed_workers_trial_is_failed_by_heartbeat_and_retried(url_of, tmp_path):
    """Two workers; one is killed with SIGKILL in the middle of a trial. The other fails that
    trial once its heartbeat is stale, runs it again, and the study ends with exactly the
    budget."""
    url, study = url_of(tmp_path), new_study()
    opts = sets(
        *("search.budget=3", "search.heartbeat=1", "search.grace_period=3"),
        *("search.eval_epochs=2", "search.max_samples=300", "search.eval_fraction=0.25"),
    )  # trials of about a second: the kill lands in the middle of one
    victim, other = worker(url, study, *opts), None
    deadline, killed = time.time() + 120, None
    while time.time() < deadline and victim.poll() is None and not running(url, study, victim.pid):
        time.sleep(0.05)
    # From its first trial on, the victim runs in steps of 0.05 s, frozen between them while the
    # test reads the study (reads take longer than a step under load: a free-running victim,
    # polled, once ended all three of its trials unkilled). A write it had sent lands
    # while it is frozen; it is killed at the first look that finds it training a trial whose
    # architecture is drawn.
    while killed is None and time.time() < deadline and victim.poll() is None:
        victim.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        other = other or worker(url, study, *opts)  # joins while the victim works
        mine = running(url, study, victim.pid)
        if mine and len(mine[0].params) == decisions(url, study):
            victim.send_signal(signal.SIGKILL)
            killed = mine[0].number
        else:
            victim.send_signal(signal.SIGCONT)
            time.sleep(0.05)
    victim.wait()
    assert killed is not None, "the victim never started a trial"
    summary = finish(other)
    ts = trials(url, study)
    assert ts[killed].state == TrialState.FAIL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retries = [t for t in ts if Retry.retried_trial_number(t) == killed]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert retries[0].params == ts[killed].params  # the same architecture, evaluated again
    by_victim = [
        t.number
        for t in ts
        if t.user_attrs.get("worker", "").endswith(f":{victim.pid}")
        and t.state == TrialState.COMPLETE
    ]
    check_exact(url, study, [summary, {"by_this_worker": by_victim, "completed": 3}], 3)


# ----------------------------------------------------------------------------- bad input


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("scinas: error:"), result.output
    text = errors[0]
    for w in words:
        assert w in text, text


def test_an_unreachable_server_is_refused_before_anything_is_written(tmp_path):
    url = "postgresql://scinas:scinas@127.0.0.1:9/scinas"  # nothing listens on port 9
    out = tmp_path / "run"
    r = cli("search", "--strategy", "random", "--storage", url, "--out", str(out), *sets())
    refused(r, "cannot reach the database server", "127.0.0.1:9", "scripts/postgres.sh")
    assert not out.exists()
    refused(cli("worker", "--storage", url, "--study", "x"), "cannot reach")


def test_a_missing_driver_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    out = tmp_path / "run"
    url = "postgresql://scinas:scinas@127.0.0.1:9/scinas"
    r = cli("search", "--strategy", "random", "--storage", url, "--out", str(out), *sets())
    refused(r, "driver", "pip install 'scinas[distributed]'")
    assert not out.exists()


def test_a_study_holding_another_space_or_objective_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    def search(out, *opts):
        args = ["--strategy", "random", "--storage", url, "--study", "s", "--out", str(out)]
        return cli("search", "-q", *args, *opts)

    first = search(tmp_path / "a", *sets("search.budget=1", "search.space=nb201"))
    assert first.exit_code == 0, first.output
    cases = [
        (sets("search.budget=1"), "different search space"),  # the darts space
        (
            sets("search.budget=1", "search.space=nb201", "search.eval_epochs=2"),
            "search.eval_epochs",
        ),
    ]
    for opts, words in cases:
        out = tmp_path / "b"
        r = search(out, *opts)
        refused(r, words)
        assert not out.exists()
    # a worker with no options joins it: the study carries its config
    joined = cli("worker", "--storage", url, "--study", "s", "-q", "--set", "search.budget=2")
    assert joined.exit_code == 0, joined.output
    assert json.loads(joined.output.strip().splitlines()[-1])["completed"] == 2


def test_a_worker_needs_an_existing_study_or_a_strategy(tmp_path):
    url = f"journal:///{tmp_path / 'none.log'}"
    refused(
        cli("worker", "--storage", url, "--study", "nothing"), "no study 'nothing'", "--strategy"
    )
    assert not (tmp_path / "none.log").exists()


# ----------------------------------------------------------------------------- the claim rule


def test_a_racing_trial_beyond_the_budget_is_surplus_and_the_last_worker_retrains(tmp_path):
    """Two workers on a budget of 1: the second one's trial (a queued one, as a retry would be)
    sees the first one running before it, so it is failed as surplus instead of run; once the
    first completes, both stop, and only the first one owns the last trial."""
    from concurrent.futures import ThreadPoolExecutor

    from scinas.workers import SharedStudy

    url = f"sqlite:///{tmp_path / 'claims.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    a, b = SharedStudy(study, budget=1, poll=0.05), SharedStudy(study, budget=1, poll=0.05)
    first = a.claim()
    study.enqueue_trial({"x": 1})  # queued after the first trial: numbered after it
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(b.claim)
        deadline = time.time() + 20
        while not b.surplus and time.time() < deadline:
            time.sleep(0.05)
        assert b.surplus == 1 and not second.done()  # waits: the running trial may still fail
        first.suggest_int("x", 0, 3)
        study.tell(first, 0.5)
        a.mine.append(first.number)
        assert second.result(timeout=20) is None  # the budget is complete: stop
    assert a.claim() is None
    states = [(t.number, t.state, t.user_attrs.get("scinas_surplus")) for t in study.trials]
    assert states == [(0, TrialState.COMPLETE, None), (1, TrialState.FAIL, True)]
    assert a.owns_last_trial() and not b.owns_last_trial()


def test_a_result_that_comes_after_its_trial_was_failed_as_stale_is_dropped(tmp_path):
    from scinas.workers import SharedStudy

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'late.db'}", study_name="s")
    late = SharedStudy(study, budget=2, poll=0.05)
    trial = late.claim()
    assert not late.lost(trial)
    study.tell(trial.number, state=TrialState.FAIL)  # as another worker's stale check does
    assert late.lost(trial)
