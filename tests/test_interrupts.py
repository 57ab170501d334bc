"""Every stop request honoured within seconds (issue 34): SIGTERM at seeded random points of a
tiny run, a tiny search, a compare and a worker.

Each kind is a chain: the command starts, SIGTERM comes at a random fraction of an
uninterrupted run's duration, the command must end within `STOP_SECONDS` with the interrupt
exit code and one message (naming `--resume` once a run directory exists), then the chain
resumes it and sends the next signal, until the command finishes; the end must equal the
uninterrupted reference bit for bit (worker: the study completes exactly its budget). The
commands run in this process (`typer.testing.CliRunner`: the same handlers, exit codes and
messages as a `scinas` process, without seconds of start-up each), the signal a real SIGTERM
to this process; `test_a_real_process_stops_within_seconds` checks a few points at the process
boundary, start-up included."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from conftest import REPORT, TINY, for_strategy
from scinas.cli import app
from scinas.signals import INTERRUPT_EXIT, STOP
from scinas.workers import make_storage

STOP_SECONDS = 5.0
SEED = 34
# chains are drawn until a test's target number of points; how many links a chain has depends
# on its reference's measured duration and on when its signals land (so on the load beside it)
CHAINS = 10
TINY_RUN = [
    *TINY,
    REPORT,  # a stop may land in the report too
    "search.max_samples=96",
    "train.max_samples=96",
    "search.epochs=2",
    "train.epochs=2",
]
if torch.cuda.is_available():
    TINY_RUN.append("deterministic=true")  # cuDNN's default kernels are not bit-stable


def sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(autouse=True)
def late_signals():
    """A SIGTERM that lands after its command finished is recorded here, never fatal."""
    late: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda s, f: late.append(s))
    yield late
    signal.signal(signal.SIGTERM, old)


class Point:
    """One command under a SIGTERM ``delay`` seconds after it starts (once its handler is in
    place: the CLI's own start-up in this process is not the command's)."""

    def __init__(self, args: list[str], delay: float | None):
        sent: list[float] = []
        began = [time.monotonic()]
        done = threading.Event()

        def fire():
            while signal.getsignal(signal.SIGTERM) != STOP.handle:
                if done.wait(0.002):
                    return
            began[0] = time.monotonic()
            if delay is not None and not done.wait(delay):
                sent.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGTERM)

        timer = threading.Thread(target=fire)
        timer.start()
        res = CliRunner().invoke(app, args)
        end = time.monotonic()
        done.set()
        timer.join()
        self.seconds = end - began[0]  # from the command's start (its handler in place)
        self.code, self.err, self.output = res.exit_code, res.stderr, res.stdout
        self.exception = res.exception
        if res.exc_info is not None and not isinstance(res.exception, SystemExit):
            self.err += "".join(traceback.format_exception(*res.exc_info))
        # None: the command ended before the signal (it finished, or the signal came late)
        self.stop = end - sent[0] if sent and self.code == INTERRUPT_EXIT else None


def check_stopped(p: Point, out: Path | None, where: str) -> None:
    """Within seconds, the interrupt code, one clear message, and --resume once a run
    directory exists (nothing half-made otherwise)."""
    assert p.stop is not None and p.stop <= STOP_SECONDS, (where, p.stop)
    if getattr(p, "bare", False):
        return
    assert p.code == INTERRUPT_EXIT, (where, p.code, p.exception, p.err[-800:])
    assert "Traceback" not in p.err, p.err
    last = p.err.strip().splitlines()[-1]
    assert last.startswith("scinas: interrupted: stopped"), last
    if out is not None and (out / "run.json").is_file():
        finished = (
            (out / "results.json").is_file()
            or (out / "compare.json").is_file()
            and (json.loads((out / "compare.json").read_text())["complete"])
        )
        assert "--resume" in last or (finished and "scinas report" in last), last
    elif out is not None:
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def chain(
    start: list[str], resume: list[str], out: Path, seconds: float, rng, points: list, ramp=6
):
    """Interrupt ``start`` at a random point, then its resume, and so on until it finishes."""
    args = start
    for link in range(40):  # each link either finishes or is interrupted; this bounds the loop
        # a few links per chain, each resume going on from the last one's checkpoint; the
        # signals come later and later so that work restarted whole (a compare's method) ends
        delay = rng.uniform(0.0, seconds * min(1.0, (link + 1) / ramp))
        p = Point(args, delay)
        if p.stop is None:
            assert p.code == 0, (p.code, p.exception, p.err[-2000:])
            return
        check_stopped(p, out, f"{' '.join(args[:1])} at {delay:.2f} s")
        points.append((args[0], round(delay, 2), round(p.stop, 2)))
        if (out / "results.json").is_file():  # stopped while writing its report
            return
        cmp = out / "compare.json"  # a compare stopped once all its runs were done
        if cmp.is_file() and json.loads(cmp.read_text())["complete"]:
            return
        if (out / "run.json").is_file():
            args = resume
    raise AssertionError("the chain never finished")


def outcome(path: Path) -> dict:
    r = json.loads((path / "results.json").read_text())
    events = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    drop = ("time", "seconds", "epoch_seconds", "step_seconds")
    return {
        "results": {k: r.get(k) for k in ("test", "val", "supernet", "genotype", "params")},
        "genotype": json.loads((path / "genotype.json").read_text()),
        "events": [{k: v for k, v in e.items() if k not in drop} for e in events],
    }


@pytest.mark.parametrize("verb", ["run", "search"])
def test_sigterm_at_random_points_of_a_run_and_a_search(tmp_path, verb):
    rng = random.Random(f"{SEED}-{verb}")
    ref = Point([verb, "--out", str(tmp_path / "ref"), *sets(TINY_RUN)], None)
    assert ref.code == 0, ref.err[-2000:]
    points: list = []
    target = 10 if verb == "run" else 6
    for k in range(CHAINS):
        out = tmp_path / f"chain{k}"
        start = [verb, "--out", str(out), *sets(TINY_RUN)]
        chain(start, [verb, "--resume", str(out)], out, ref.seconds, rng, points)
        assert outcome(out) == outcome(tmp_path / "ref"), points
        if len(points) >= target:
            break
    print(f"\n{verb} ({ref.seconds:.1f} s): {len(points)} points (command, delay, stop): {points}")
    assert len(points) >= target


def compare_result(out: Path) -> dict:
    c = json.loads((out / "compare.json").read_text())
    assert c["complete"] is True
    timing = ("used_seconds", "search_seconds")
    runs = [{k: v for k, v in r.items() if k not in timing} for r in c["runs"]]
    return {"values": {name: m["values"] for name, m in c["methods"].items()}, "runs": runs}


def test_sigterm_at_random_points_of_a_compare(tmp_path):
    rng = random.Random(f"{SEED}-compare")
    quick = [*TINY_RUN, "search.epochs=1", "train.epochs=1", "compare.budget=null"]
    base = ["--seeds", "1", "--methods", "darts_supernet,resnet_tiny", *sets(quick)]
    ref = Point(["compare", "--out", str(tmp_path / "ref"), *base], None)
    assert ref.code == 0, ref.err[-2000:]
    points: list = []
    for k in range(CHAINS):
        out = tmp_path / f"cmp{k}"
        start = ["compare", "--out", str(out), *base]
        chain(start, ["compare", "--resume", str(out)], out, ref.seconds, rng, points, ramp=8)
        assert compare_result(out) == compare_result(tmp_path / "ref")
        if len(points) >= 5:
            break
    print(f"\ncompare: {len(points)} points: {points}")
    assert len(points) >= 5


class Process:
    """A real `scinas` process under a SIGTERM ``delay`` seconds after it starts (workers:
    the exit of a stopped process is what releases its database connections)."""

    def __init__(self, args: list[str], delay: float | None):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "scinas", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        sent = None
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                sent = time.monotonic()
                proc.send_signal(signal.SIGTERM)
        _, self.err = proc.communicate(timeout=300)
        self.seconds = time.monotonic() - t0
        self.code, self.exception = proc.returncode, None
        # before Python has imported scinas (its first tenths of a second) SIGTERM's default
        # action ends the process: nothing was written, nothing said
        self.bare = self.code == -signal.SIGTERM and not self.err
        stopped = self.code == INTERRUPT_EXIT or self.bare
        self.stop = time.monotonic() - sent if sent and stopped else None


def test_sigterm_at_random_points_of_a_worker(tmp_path):
    """`scinas worker` processes stopped at random points (start-up, loading, claiming,
    training, recording) leave no trial running in the storage; the next worker completes
    exactly the study's budget, with the architectures and scores of an uninterrupted worker."""
    rng = random.Random(f"{SEED}-worker")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    extra = for_strategy([*TINY_RUN, "search.strategy=random", "search.eval_fraction=0.2"])

    def work(study: str, budget: int) -> list[str]:
        return [
            "worker", "--storage", url, "--study", study, "-q", "--strategy", "random",
            *sets([*extra, f"search.budget={budget}"]),
        ]  # fmt: skip

    def done(name: str) -> list:
        study = optuna.load_study(study_name=name, storage=make_storage(url))
        trials = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
        return [(t.user_attrs["arch"], t.value) for t in trials]

    budget = 3
    one = Process(work("uninterrupted", budget), None)  # what the workers below must end with
    assert one.code == 0, one.err[-2000:]
    points: list = []
    for k in range(3):  # studies until the target number of points
        name = f"s{k}"
        for _ in range(6):
            p = Process(work(name, budget), rng.uniform(0.0, 0.7 * one.seconds))
            if p.stop is None:
                assert p.code == 0, p.err[-2000:]
                continue
            check_stopped(p, None, "worker")
            points.append(("worker", round(p.stop, 2)))
            try:
                study = optuna.load_study(study_name=name, storage=make_storage(url))
            except KeyError:  # stopped before it created the study
                continue
            left = [t.number for t in study.get_trials() if t.state == TrialState.RUNNING]
            assert not left, (left, p.err[-3000:])
        p = Process(work(name, budget), None)  # the next worker completes the study
        assert p.code == 0, p.err[-2000:]
        study = optuna.load_study(study_name=name, storage=make_storage(url))
        states = [t.state.name for t in study.get_trials()]
        assert states.count("COMPLETE") == budget, (states, p.code, p.err[-3000:])
        assert done(name) == done("uninterrupted")
        if len(points) >= 6:
            break
    print(f"\nworker: {len(points)} points: {points}")
    assert len(points) >= 6


def test_a_real_process_stops_within_seconds(tmp_path):
    """At the process boundary: SIGTERM during start-up (imports) and during loading and
    searching ends a `scinas` process within seconds, exit code 130, one message."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scinas", "run", "--out", str(out), *sets(TINY_RUN)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    time.sleep(0.3)  # importing
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 <= STOP_SECONDS and proc.returncode == INTERRUPT_EXIT, err
    assert "interrupted" in err and "Traceback" not in err and not out.exists()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scinas", "run", "--out", str(out), *sets(TINY_RUN)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    for _ in range(6000):  # the run directory exists: past loading, in the search
        if (out / "run.json").is_file() or proc.poll() is not None:
            break
        time.sleep(0.01)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 <= STOP_SECONDS and proc.returncode == INTERRUPT_EXIT, err
    assert f"scinas run --resume {out}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "files,said",
    [
        ({}, "continue with `scinas run --resume"),  # stopped mid-run
        ({"results.json": "{}"}, "it had finished: `scinas report"),  # after its results
        ({"compare.json": '{"complete": true}'}, "it had finished: `scinas report"),
        ({"compare.json": '{"complete": false}'}, "continue with `scinas run --resume"),
    ],
)
def test_a_stop_between_the_runs_own_messages_still_says_what_to_do(tmp_path, files, said):
    """A stop that lands where no part of the run adds its own hint (just after the run
    directory is made, or after results.json is written and outside the report) gets the
    CLI's: resume an unfinished run, report a finished one."""
    from scinas.cli.common import _resume_hint

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"kind": "run"}')
    for name, text in files.items():
        (out / name).write_text(text)
    hint = _resume_hint("run", {"out": str(out)}, "stopped by SIGTERM")
    assert said in hint and str(out) in hint
    # a message that already says what to do gets nothing more
    assert _resume_hint("run", {"out": str(out)}, "write it with `scinas report x`") == ""
    assert _resume_hint("run", {"out": str(tmp_path / "nothing")}, "stopped by SIGTERM") == ""


def test_a_stop_inside_a_file_write_is_the_error_not_what_the_writer_says(tmp_path):
    """torch.save's zip writer, cut short by a stop, raised "unexpected pos 64 vs 0" from its
    exit, and a compare ended with a traceback: the stop is what atomic_write raises."""
    from scinas.files import atomic_write
    from scinas.signals import Interrupted

    class Writer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 64 vs 0")

    def write(f):
        f.write(b"half")
        with Writer():
            raise Interrupted("stopped by SIGTERM")

    target = tmp_path / "model.pt"
    target.write_bytes(b"whole")
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        atomic_write(target, write)
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_a_signal_inside_a_critical_block_of_a_listening_loop_stops_at_its_next_step():
    """A checkpoint written while a training loop listens: the signal that came during the write
    asks the loop to stop at its next step (as outside the block), it does not force a stop."""
    STOP.reset()
    STOP.forced = False
    try:  # (reset cancels the timer that would send the signal again)
        with STOP.listening():
            with STOP.critical():
                STOP.handle(signal.SIGTERM, None)
                assert not STOP.requested  # waits for the block
            assert STOP.requested and not STOP.forced
        STOP.reset()
        # no loop listening: at the block's end, at once
        with pytest.raises(KeyboardInterrupt), STOP.critical():
            STOP.handle(signal.SIGTERM, None)
    finally:
        STOP.reset()


@pytest.mark.parametrize("opening", ["create", "reopen"])
def test_a_stop_while_a_run_directory_opens_leaves_it_unlocked(tmp_path, monkeypatch, opening):
    """A signal acted on at the end of the block that creates (or reopens) a run directory left
    this process holding its lock, so a resume in the same process (a library user, the chains
    above) was refused as "in use by another scinas process"."""
    from scinas.rundir import RunDir
    from scinas.runlock import RunLock, is_locked
    from scinas.signals import Interrupted

    out = tmp_path / "run"
    if opening == "reopen":
        RunDir.create(out, kind="run", config={}).close()
    locked = RunLock.acquire

    def acquire(self):
        lock = locked(self)
        STOP.handle(signal.SIGTERM, None)  # the signal comes just as the lock is taken
        return lock

    monkeypatch.setattr(RunLock, "acquire", acquire)
    STOP.reset()
    try:
        with pytest.raises(Interrupted):
            RunDir.reopen(out) if opening == "reopen" else RunDir.create(out, kind="run", config={})
    finally:
        STOP.reset()
    assert (out / "run.json").is_file() and not is_locked(out)


def test_a_stopped_process_ends_though_a_library_left_a_thread_running():
    """optuna's trial heartbeat, started just as a stop came, outlived it as a non-daemon thread
    and the stopped `scinas worker` waited for it forever at exit: the CLI's exit does not."""
    code = (
        "import threading\n"
        "from scinas.cli import leave_now\n"
        "threading.Thread(target=threading.Event().wait).start()  # never ends\n"
        "print('stopped', flush=True)\n"
        "leave_now(130)\n"
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )  # fmt: skip
    assert proc.returncode == 130 and proc.stdout == "stopped\n", proc.stderr
    assert time.monotonic() - t0 < 2 + STOP_SECONDS
