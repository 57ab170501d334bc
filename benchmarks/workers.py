"""Workers on PostgreSQL: N `scinas worker` processes share one random search on digits, one of
them is killed with SIGKILL in the middle of a trial, and the study must still end with exactly
``--budget`` completed trials, none counted twice, the killed trial retried by another worker.
Then one worker alone runs the same search, for the wall-time comparison.

    bash scripts/postgres.sh                                  # the local server (prints its URL)
    python benchmarks/workers.py                              # 3 workers, 24 trials, 1 thread each
    python benchmarks/workers.py --workers 2 --budget 6 --no-single   # a quick smoke run

Each worker runs with OMP_NUM_THREADS=1. Prints one JSON object: completed trials, duplicates,
the killed trial and its retry, surplus trials, and the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
from optuna.trial import TrialState

from scinas.workers import make_storage

ROOT = Path(__file__).resolve().parents[1]


def server_url() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postgres.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def start(url: str, study: str, args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    sets = [
        f"search.budget={args.budget}",
        f"search.heartbeat={args.heartbeat}",
        f"search.grace_period={args.grace}",
        *args.set,
    ]
    cmd = [sys.executable, "-m", "scinas", "worker", "--storage", url, "--study", study, "-q"]
    cmd += ["--strategy", "random", "--data", args.data, "--preset", args.preset]
    cmd += [a for s in sets for a in ("--set", s)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=make_storage(url)).get_trials()
    except KeyError:  # not created yet
        return []


def summary(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"a worker failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run(url: str, args, n_workers: int, kill: bool) -> dict:
    study = f"bench-workers-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    procs = [start(url, study, args) for _ in range(n_workers)]
    victim, killed = procs[0], None
    while kill and killed is None and victim.poll() is None:
        time.sleep(0.2)
        ts = trials(url, study)
        mine = [t for t in ts if t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
        done = [t for t in mine if t.state == TrialState.COMPLETE]
        running = [t for t in mine if t.state == TrialState.RUNNING]
        # in its second trial, once the architecture is drawn: the kill hits the training
        if done and running and len(running[0].params) == len(done[0].params):
            time.sleep(args.kill_delay)
            victim.send_signal(signal.SIGKILL)
            killed = running[0].number
    if kill:
        victim.wait()
        if killed is None:
            raise SystemExit("the victim finished before it could be killed: raise --budget")
    outs = [summary(p) for p in (procs[1:] if kill else procs)]
    wall = time.perf_counter() - t0
    ts = trials(url, study)
    complete = [t for t in ts if t.state == TrialState.COMPLETE]
    by_worker = Counter(t.user_attrs.get("worker") for t in complete)
    reported = [n for o in outs for n in o["by_this_worker"]]
    if kill:  # the victim printed nothing: its completed trials come from the storage
        reported += [
            t.number for t in complete if t.user_attrs["worker"].endswith(f":{victim.pid}")
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retries = [t for t in ts if killed is not None and Retry.retried_trial_number(t) == killed]
    archs = Counter(json.dumps(t.params, sort_keys=True) for t in complete)
    return {
        "workers": n_workers,
        "study": study,
        "wall_seconds": round(wall, 1),
        "completed": len(complete),
        "budget": args.budget,
        "completed_per_worker": sorted(by_worker.values(), reverse=True),
        "trials_reported_twice": sum(c - 1 for c in Counter(reported).values() if c > 1),
        "completed_not_reported_by_a_worker": len({t.number for t in complete} - set(reported)),
        "repeated_architectures": sum(c - 1 for c in archs.values() if c > 1),
        "surplus_trials": sum(1 for t in ts if t.user_attrs.get("scinas_surplus")),
        "killed_trial": killed,
        "killed_trial_state": ts[killed].state.name if killed is not None else None,
        "retries_of_killed": [
            {"trial": t.number, "state": t.state.name, "same_arch": t.params == ts[killed].params}
            for t in retries
        ],
        "best": max(t.value for t in complete) if complete else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="storage URL (default: start/reuse scripts/postgres.sh)")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--budget", type=int, default=24)
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--data", default="digits")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--heartbeat", type=int, default=2, help="search.heartbeat, seconds")
    p.add_argument("--grace", type=int, default=6, help="search.grace_period, seconds")
    p.add_argument("--kill-delay", type=float, default=0.5, help="seconds into the trial")
    p.add_argument("--set", action="append", default=[], help="more search settings")
    p.add_argument("--no-single", action="store_true", help="skip the single-worker run")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args()
    url = args.url or server_url()
    result = {"many": run(url, args, args.workers, kill=True)}
    if not args.no_single:
        result["single"] = run(url, args, 1, kill=False)
        result["speedup"] = round(
            result["single"]["wall_seconds"] / result["many"]["wall_seconds"], 2
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
