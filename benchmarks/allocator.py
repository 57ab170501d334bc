"""What keeping large freed blocks (`scinas.allocator`) buys small networks on a CPU.

Runs `small_speed.py --no-compile` (one training step of each workload, median of 5) and
`eval_batch.py` (a test pass at several evaluation batches, median of 3), each in its own
process, once with ``SCINAS_MALLOC=system`` (glibc as it comes: blocks above its mmap threshold
mapped and unmapped on every step) and once as scinas runs (``reuse``), alternating over
``--rounds``; the figure per row is the median over rounds of images per second, and the ratio.
The processes' kernel (system) seconds are reported too: fresh pages are zeroed by the kernel.

    python benchmarks/allocator.py [--rounds 2] [--record]

Nothing else may compute beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from results import write_result  # beside this script

HERE = Path(__file__).resolve().parent
CHOICES = ("system", "reuse")


def _run(script: str, args: list[str], choice: str) -> tuple[dict, float]:
    """One script's JSON rows under SCINAS_MALLOC=choice, and the kernel seconds it took."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        env = {**os.environ, "SCINAS_MALLOC": choice}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
        subprocess.run(
            [sys.executable, str(HERE / script), *args, "--json", str(out)], env=env, check=True
        )
        kernel = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - before
        return json.loads(out.read_text()), kernel


def _rates(script: str, rows: dict) -> dict[str, float]:
    if script == "small_speed.py":  # scinas' default layout on all threads: the first row each
        first: dict[str, float] = {}
        for r in rows["rows"]:
            first.setdefault(f"train step: {r['workload']}", r["images_per_s"])
        return first
    return {
        f"test pass: {r['workload']}, batch {r['batch']}": r["images_per_second"]
        for r in rows["rows"]
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--record", action="store_true", help="write a result file")
    args = ap.parse_args()
    scripts = {"small_speed.py": ["--no-compile"], "eval_batch.py": ["--batches", "64", "256"]}
    rates: dict[str, dict[str, list[float]]] = {c: {} for c in CHOICES}
    kernel: dict[str, dict[str, list[float]]] = {c: {s: [] for s in scripts} for c in CHOICES}
    for _ in range(args.rounds):
        for script, extra in scripts.items():
            for choice in CHOICES:
                rows, seconds = _run(script, extra, choice)
                kernel[choice][script].append(seconds)
                for name, rate in _rates(script, rows).items():
                    rates[choice].setdefault(name, []).append(rate)
    table = []
    for name in rates["system"]:
        a, b = (statistics.median(rates[c][name]) for c in CHOICES)
        table.append([name, f"{a:.0f}", f"{b:.0f}", f"{b / a:.2f}x"])
        print(f"{name:45s} {a:8.0f} {b:8.0f} img/s  {b / a:.2f}x")
    seconds = {s: [round(statistics.median(kernel[c][s]), 1) for c in CHOICES] for s in scripts}
    print("kernel seconds per process (system, reuse):", seconds)
    if args.record:
        write_result(
            "allocator",
            "glibc's large blocks unmapped on free against kept for reuse",
            ["workload", "system img/s", "reuse img/s", "speed-up"],
            table,
            notes=(
                f"One run, alone; the median over {args.rounds} alternating rounds, each "
                "script in its own process. Kernel seconds per process (system, reuse): "
                + "; ".join(f"{s} {v[0]} and {v[1]}" for s, v in seconds.items())
                + "."
            ),
        )


if __name__ == "__main__":
    main()
