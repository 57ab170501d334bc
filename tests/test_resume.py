"""Exact resume: real processes killed (SIGKILL, SIGTERM) at several points, then resumed, end
with the same genotype and metrics as an uninterrupted run; locks; corrupt checkpoints. The
processes that are killed are real; what resumes them runs in this process (the CLI's start-up
is test_cli's and test_interrupts')."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import FEW_OPS, scinas_cli, tiny_sets

SETS = tiny_sets(
    # named: a run started by a process (the real default) is resumed in this one (FEW_OPS)
    f"search.ops=[{','.join(FEW_OPS)}]",
    "search.epochs=2",
    "train.epochs=3",
    "search.max_samples=300",
    "train.max_samples=300",
)
if torch.cuda.is_available():
    # cuDNN's default kernels differ in the last bits from run to run (seen on an H200: supernet
    # val loss 1.7478430 vs 1.7478429); bit-identical resume on CUDA is promised with this flag
    SETS += ["--set", "deterministic=true"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "scinas", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finish(*args):
    proc = start(*args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def resume(out):
    """``scinas run --resume OUT`` in this process: what is tested is the resume of a run
    that a real process left (killed), not the start-up of another one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed processes ran (ENV): the same sums, the same bits
    try:
        res = scinas_cli("run", "--resume", out)
    finally:
        torch.set_num_threads(threads)
    assert res.returncode == 0, res.stderr
    return res


def outcome(path):
    r = json.loads((path / "results.json").read_text())
    events = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    clean = [{k: v for k, v in e.items() if k not in ("time", "seconds")} for e in events]
    return {
        "genotype": json.loads((path / "genotype.json").read_text()),
        "test": r["test"],
        "val": r["val"],
        "supernet": r["supernet"],
        "events": clean,
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    finish("run", "--out", str(out), *SETS)
    return outcome(out)


def wait_for_file(path, pattern, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(path.glob(pattern)):
            return
        if proc.poll() is not None:
            raise AssertionError("the run finished before the kill point")
        time.sleep(0.01)
    raise AssertionError("timeout")


def wait_for_events(path, n, proc, timeout=300):
    t0 = time.time()
    metrics = path / "metrics.jsonl"
    while time.time() - t0 < timeout:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError("the run finished before the kill point")
        time.sleep(0.02)
    raise AssertionError("timeout")


def wait_for_event(path, name, proc, timeout=300):
    t0 = time.time()
    metrics = path / "metrics.jsonl"
    while time.time() - t0 < timeout:
        if metrics.exists() and f'"event": "{name}"' in metrics.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError("the run finished before the kill point")
        time.sleep(0.02)
    raise AssertionError("timeout")


def test_sigkill_then_resume_is_identical(tmp_path, reference):
    """Killed at four points in turn, each time resumed by a new process that is killed at the
    next: as soon as the run directory exists (in the first search epoch), after 1 logged event,
    after 2 (right after the search) and after 4 (in the last training epoch); the last resume
    finishes. One run carries every kill point, so a resumed run is also killed and resumed."""
    out = tmp_path / "run"
    proc = start("run", "--out", str(out), *SETS)
    wait_for_file(out, "run.json", proc)
    for events_before_kill in (1, 2, 4, None):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "results.json").exists()
        if events_before_kill is None:
            break
        proc = start("run", "--resume", str(out))
        wait_for_events(out, events_before_kill, proc)
    resume(out)
    assert outcome(out) == reference


def test_sigterm_mid_epoch_checkpoints_and_resumes_identically(tmp_path, reference):
    out = tmp_path / "run"
    proc = start("run", "--out", str(out), *SETS)
    wait_for_event(out, "search_epoch", proc)
    time.sleep(0.3)  # inside the second search epoch (a signal before the first step of the
    # search, in its set-up, stops at once from the last checkpoint instead)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    ckpts = sorted((out / "checkpoints").glob("search-*.pt"))
    assert ckpts
    state = torch.load(ckpts[-1], weights_only=True)
    assert state["step"] > 0 or state["epoch"] >= 1
    resume(out)
    assert outcome(out) == reference


def test_corrupt_last_checkpoint_falls_back_to_the_previous(tmp_path, reference):
    out = tmp_path / "run"
    proc = start("run", "--out", str(out), *SETS)
    wait_for_file(out, "checkpoints/train-2.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = sorted(
        (out / "checkpoints").glob("train-*.pt"), key=lambda p: int(p.stem.split("-")[1])
    )
    if len(ckpts) < 2:
        pytest.skip("the kill came before two training checkpoints existed")
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])  # truncated
    err = resume(out).stderr
    assert "unreadable" in err and "falling back" in err
    assert outcome(out) == reference


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run killed after its first search checkpoint (copied by each test that needs one)."""
    out = tmp_path_factory.mktemp("killed") / "run"
    proc = start("run", "--out", str(out), *SETS)
    wait_for_file(out, "checkpoints/search-*.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return out


def copy_of(killed, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(killed, out)
    return out


def test_second_process_on_the_same_run_dir_is_refused(tmp_path):
    out = tmp_path / "run"
    # far more epochs than the test lets it run (it is killed below), so the first process still
    # holds the lock when the other two start: on a GPU the 2-epoch run finished before that
    long = [*SETS, "--set", "search.epochs=100"]
    proc = start("run", "--out", str(out), *long)
    wait_for_events(out, 1, proc)
    # the other two in this process: the lock is held by another process all the same
    other = scinas_cli("run", "--resume", out)
    over = scinas_cli("run", "--out", out, "--overwrite", *long)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert other.returncode == 2 and "in use by another scinas process" in other.stderr
    assert over.returncode == 2 and "in use by another scinas process" in over.stderr
    assert (out / "run.json").exists()  # not overwritten


def test_crafted_checkpoint_that_runs_code_is_refused(tmp_path, killed):
    out = copy_of(killed, tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpts = sorted((out / "checkpoints").glob("search-*.pt"))
    torch.save({"phase": "search", "evil": Evil()}, ckpts[-1])
    res = scinas_cli("run", "--resume", out)
    assert res.returncode == 2, res.stderr
    assert "would run code" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_a_run_written_before_a_setting_existed_resumes_to_the_same_result(
    tmp_path, killed, reference
):
    """config.json as an earlier scinas wrote it, without train.min_epoch_steps: the run resumes
    as it was started (the batch as given, not cut) and ends as the uninterrupted run."""
    out = copy_of(killed, tmp_path)
    config = json.loads((out / "config.json").read_text())
    del config["train"]["min_epoch_steps"]
    (out / "config.json").write_text(json.dumps(config))
    resume(out)
    assert json.loads((out / "config.json").read_text())["train"]["min_epoch_steps"] == 0
    assert outcome(out) == reference


@pytest.mark.parametrize(
    "args,phrase",
    [
        (["--set", "search.C=6"], "search.C: 4 -> 6"),
        (["--seed", "3"], "seed: 0 -> 3"),
        (["--set", "train.epochs=5"], "--allow-changes"),
    ],
)
def test_resume_with_changed_config_is_refused(tmp_path, killed, args, phrase):
    out = copy_of(killed, tmp_path)
    before = (out / "config.json").read_text()
    res = scinas_cli("run", "--resume", out, *args)
    assert res.returncode == 2 and phrase in res.stderr, res.stderr
    assert (out / "config.json").read_text() == before


def test_resume_harmless_change_with_flag(tmp_path, killed):
    out = copy_of(killed, tmp_path)
    res = scinas_cli("run", "--resume", out, "--set", "train.epochs=2", "--allow-changes")
    assert res.returncode == 0, res.stderr
    r = json.loads((out / "results.json").read_text())
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "train_epoch" for e in events) == 2 and "accuracy" in r["test"]


def test_resume_bad_targets(tmp_path):
    res = scinas_cli("run", "--resume", tmp_path)
    assert res.returncode == 2 and "not a scinas run directory" in res.stderr
