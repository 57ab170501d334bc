"""How long the test suite takes: README's test command in this checkout, and CI (`bash .ci/run`,
installs included) on a clean clone of this checkout's commit, each timed from start to end.

Run it alone: the suite's two workers use both cores, and anything else computing slows them
(and it). The clean clone is made in a temporary folder beside a link to ``../shared``, as CI
has it; ``--no-ci`` times README's command only.

    python benchmarks/suite_time.py --record --headline   # both, and README's row
    python benchmarks/suite_time.py --no-ci
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import commit, write_result  # beside this script

ROOT = Path(__file__).resolve().parents[1]
README_COMMAND = ".venv/bin/python -m pytest -q -n 2"


def readme_test_command() -> str:
    """The test command README.md gives (what CI runs), checked to be the one timed here."""
    text = (ROOT / "README.md").read_text()
    if README_COMMAND not in text:
        sys.exit(f"README.md no longer gives `{README_COMMAND}`: update this script")
    return README_COMMAND


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, str]:
    """Seconds ``cmd`` took and its output's last line that counts the tests."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    out = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); its output: {log}")
    counts = [line for line in out.splitlines() if re.search(r"\d+ passed", line)]
    return seconds, (counts[-1].strip("= ") if counts else "")


def tests_line(counts: str) -> str:
    """'1616 passed, 9 skipped' from pytest's summary line (its own time left out)."""
    return re.sub(r"\s+in [\d.]+s.*$", "", counts)


def postgres_env() -> dict:
    env = dict(os.environ)
    if "SCINAS_TEST_POSTGRES" not in env:
        url = subprocess.run(
            ["bash", "scripts/postgres.sh"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        if url:
            env["SCINAS_TEST_POSTGRES"] = url
    return env


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-ci", action="store_true", help="time README's command only")
    ap.add_argument("--record", action="store_true", help="write a result file")
    ap.add_argument("--headline", action="store_true", help="the result in README's table too")
    args = ap.parse_args()
    command = readme_test_command()
    logs = Path(tempfile.mkdtemp(prefix="scinas-suite-"))
    rows = []
    env = postgres_env()
    seconds, counts = timed(command.split(), ROOT, env, logs / "suite.log")
    rows.append(["README's test command", minutes(seconds), tests_line(counts), command])
    print(f"README's command: {minutes(seconds)} ({counts})")
    if not args.no_ci:
        shared = ROOT.parent / "shared"
        with tempfile.TemporaryDirectory(prefix="scinas-ci-") as tmp:
            clone = Path(tmp) / "scinas"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            if shared.is_dir():
                (Path(tmp) / "shared").symlink_to(shared)
            env = {k: v for k, v in os.environ.items() if k != "SCINAS_TEST_POSTGRES"}
            seconds, counts = timed(["bash", ".ci/run"], clone, env, logs / "ci.log")
        rows.append(["CI, a clean clone", minutes(seconds), tests_line(counts), "bash .ci/run"])
        print(f"CI on a clean clone: {minutes(seconds)} ({counts})")
    print(f"logs in {logs}")
    if args.record:
        write_result(
            "suite",
            "the test suite, 2 pytest-xdist workers",
            ["what", "wall time", "tests", "command"],
            rows,
            notes=f"Measured alone at commit {commit()}; the CI row installs everything "
            "(PyTorch, the package, PostgreSQL's server when absent), builds the docs and "
            "lints before the same test command.",
            headline=args.headline,
        )


if __name__ == "__main__":
    main()
