"""Machine-readable benchmark results: what every script in benchmarks/ writes beside its own
output, and what `scripts/render_tables.py` turns into the docs' tables and README's one.

A result file is ``benchmarks/results/<benchmark>-<setting>-<date>.json``::

    {"benchmark": "compare", "setting": "Fashion-MNIST, 600 s", "date": "2026-12-02",
     "command": "scinas compare ...", "commit": "3cd0624",
     "machine": {"cpu": "AMD EPYC ...", "cores": 2, "gpu": null},
     "figures": {"columns": ["method", "test accuracy"], "rows": [["scinas", "0.907 ± 0.001"]]},
     "notes": "optional, one paragraph", "headline": false}

``headline: true`` puts the result's figures in README's table too.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Every benchmark a result may name: its title and what it measures (the renderer's sections).
BENCHMARKS: dict[str, dict] = {
    "compare": {
        "title": "Was NAS worth it? (`scinas compare`)",
        "about": "Test accuracy per method at one wall-clock budget per method and seed, on the "
        "same data, trainer and augmentation; p is Welch's t-test against the method the column "
        "names (`scinas` where it ran); used s is the seconds each seed's run used of its budget.",
    },
    "nb201_oneshot": {
        "title": "The default one-shot search on NAS-Bench-201",
        "about": "The search trains its supernet on the CIFAR-10 subset's images; the derived "
        "cell's 200-epoch CIFAR-10 test accuracy is looked up in the NAS-Bench-201 table "
        "(optimum 94.37).",
    },
    "nb201_blackbox": {
        "title": "Black-box strategies on NAS-Bench-201 (`scinas bench nb201`)",
        "about": "Each strategy sees only the 12-epoch validation accuracy of what it queries; "
        "the figure is the 200-epoch CIFAR-10 test accuracy of the architecture it returns.",
    },
    "run": {
        "title": "`scinas run` end to end",
        "about": "Search, retraining and testing with the default search at a preset.",
    },
    "robust_oneshot": {
        "title": "Robust one-shot search variants (`benchmarks/robust_oneshot.py`)",
        "about": "Parameter-free share of the derived normal cell, the search's margin and the "
        "test accuracy per search variant.",
    },
    "auto_lr": {
        "title": "Learning-rate range test against the fixed rates (`benchmarks/auto_lr.py`)",
        "about": "Fixed rates against `lr=auto` for the search and the retraining.",
    },
    "receptive_cost": {
        "title": "The receptive-field search against its backbone (`benchmarks/receptive_cost.py`)",
        "about": "resnet1d trained once, against the receptive-field search over its "
        "convolutions' kernel sizes and dilations followed by the same training of the network "
        "it chose: seconds of each phase, the total against the backbone's training, and the "
        "test accuracy.",
    },
    "inherit": {
        "title": "Weight inheritance (`benchmarks/inherit.py`)",
        "about": "The derived network started from the supernet's weights against from scratch "
        "at the same compute.",
    },
    "augment_probe": {
        "title": "How consistently the augmentation probe decides (`benchmarks/augment_probe.py`)",
        "about": "resnet_tiny's `train.augment=auto` probes, per seed: on how many seeds each "
        "rule takes each view as keeping the labels, and (from the control view on) the epoch "
        "each rule decides at; the first file gives each view's validation loss rise as a share "
        "of the network's margin over a constant output at the deciding probe instead.",
    },
    "morph_cost": {
        "title": "A lineage challenger's step time against its FLOPs (`benchmarks/morph_cost.py`)",
        "about": "One training step of a start network and of each macro morph the lineage "
        "search may train as a challenger, median of 7: step time and FLOPs as multiples of the "
        "start network's, and their ratio (below 1: priced by FLOPs, the challenger got fewer "
        "steps than the start network's seconds buy).",
    },
    "suite": {
        "title": "The test suite (`benchmarks/suite_time.py`)",
        "about": "Wall time of README's test command in a set-up checkout, and of CI (`bash "
        ".ci/run`: installs, docs, lint, then the same command) on a clean clone beside "
        "`../shared`, one run each, nothing else computing.",
    },
    "speed_vs_commit": {
        "title": "Small networks against an older commit (`benchmarks/speed_vs_commit.py`)",
        "about": "The same `scinas` commands run from each commit's source in one run, "
        "alternating: training images per second in each command's last epoch (the tiny "
        "preset's MNIST network and supernet, resnet_tiny and a 200k-parameter macro network "
        "on 64×64×3), the ratio, and each training's share of a large 3×3 convolution's "
        "GFLOP/s.",
    },
    "search_step": {
        "title": "A DARTS search step against the original code's structure "
        "(`benchmarks/search_step.py`)",
        "about": "One architecture step and one weight step of the paper-size supernet (8 cells, "
        "C=16, 3×32×32, batch 64 first order), each configuration in its own process, median "
        "after a warm-up: seconds, peak memory, and both as ratios to the original code's "
        "structure (`naive`) measured in the same run.",
    },
    "allocator": {
        "title": "Large blocks kept for reuse (`benchmarks/allocator.py`)",
        "about": "Images per second of one training step (`small_speed.py`, scinas' default "
        "layout) and of a test pass (`eval_batch.py`) with glibc's allocator as it comes "
        "(`SCINAS_MALLOC=system`) and as scinas sets it (`scinas.allocator`), each in its own "
        "process, in one run.",
    },
    "small_speed": {
        "title": "Small networks on a CPU (`benchmarks/small_speed.py`)",
        "about": "One training step (forward, backward, SGD) of each workload, median of 5 after "
        "warm-up: images per second, achieved GFLOP/s and its share of this machine's large 3×3 "
        "convolution, and the ratio to scinas' default (eager, channels-last) in the same run.",
    },
}

REQUIRED = ("benchmark", "setting", "date", "command", "commit", "machine", "figures")
MACHINE_FIELDS = ("cpu", "cores", "gpu")


class ResultError(ValueError):
    """A result file that cannot be rendered: the message names the file and the field."""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # torch missing or a broken driver: the result still says "no GPU"
        pass
    return None


def machine() -> dict:
    """This machine as a result records it: CPU model, cores it may use, GPU (None)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "gpu": gpu_name()}


def commit() -> str:
    """The checkout's commit, with ``+dirty`` when it has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def validate(data: object, source: str) -> dict:
    """``data`` checked as a result file; a ResultError naming ``source`` and the field."""
    if not isinstance(data, dict):
        raise ResultError(f"{source}: a result file holds one JSON object")
    for key in REQUIRED:
        if key not in data:
            raise ResultError(f"{source}: missing field '{key}'")
    if not isinstance(data.get("headline", False), bool):
        raise ResultError(f"{source}: field 'headline' must be true or false")
    if data["benchmark"] not in BENCHMARKS:
        raise ResultError(
            f"{source}: field 'benchmark' names an unknown benchmark {data['benchmark']!r} "
            f"(known: {', '.join(BENCHMARKS)}; add it to BENCHMARKS in benchmarks/results.py)"
        )
    for key in ("setting", "command", "commit"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise ResultError(f"{source}: field '{key}' must be a non-empty string")
    try:
        _dt.date.fromisoformat(str(data["date"]))
    except ValueError:
        raise ResultError(
            f"{source}: field 'date' must be YYYY-MM-DD (got {data['date']!r})"
        ) from None
    m = data["machine"]
    if not isinstance(m, dict):
        raise ResultError(f"{source}: field 'machine' must be an object with cpu, cores, gpu")
    for key in MACHINE_FIELDS:
        if key not in m:
            raise ResultError(f"{source}: missing field 'machine.{key}'")
    if not isinstance(m["cores"], int) or m["cores"] < 1:
        raise ResultError(f"{source}: field 'machine.cores' must be a positive integer")
    f = data["figures"]
    if not isinstance(f, dict):
        raise ResultError(f"{source}: field 'figures' must be an object with columns and rows")
    for key in ("columns", "rows"):
        if key not in f:
            raise ResultError(f"{source}: missing field 'figures.{key}'")
    if not isinstance(f["columns"], list) or not f["columns"]:
        raise ResultError(f"{source}: field 'figures.columns' must be a non-empty list")
    if not isinstance(f["rows"], list) or not f["rows"]:
        raise ResultError(f"{source}: field 'figures.rows' must be a non-empty list")
    for i, row in enumerate(f["rows"]):
        if not isinstance(row, list) or len(row) != len(f["columns"]):
            raise ResultError(
                f"{source}: field 'figures.rows[{i}]' must be a list of "
                f"{len(f['columns'])} cells (one per column)"
            )
    return data


def write_result(
    benchmark: str,
    setting: str,
    columns: list[str],
    rows: list[list],
    *,
    command: str | None = None,
    notes: str | None = None,
    headline: bool = False,
    out_dir: Path | None = None,
) -> Path:
    """Write one result file for ``benchmark`` (checked first: nothing is written when invalid)
    and return its path. ``command`` defaults to this process's command line."""
    today = _dt.date.today().isoformat()
    data = {
        "benchmark": benchmark,
        "setting": setting,
        "date": today,
        "command": command or "python " + shlex.join(sys.argv),
        "commit": commit(),
        "machine": machine(),
        "figures": {"columns": list(columns), "rows": [[_cell(c) for c in r] for r in rows]},
    }
    if notes:
        data["notes"] = notes
    if headline:
        data["headline"] = True
    out_dir = Path(out_dir) if out_dir is not None else RESULTS_DIR
    slug = re.sub(r"[^a-z0-9]+", "-", setting.lower()).strip("-")
    path = out_dir / f"{benchmark}-{slug}-{today}.json"
    validate(data, str(path))
    _check_not_another_machines(path, data["machine"])
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"result written to {path}")
    return path


def _check_not_another_machines(path: Path, machine: dict) -> None:
    """A file of the same benchmark, setting and day is replaced only by a re-measurement on the
    same kind of machine: one from another machine is a second figure, not a newer one."""
    try:
        old = json.loads(path.read_text()).get("machine")
    except (OSError, ValueError, AttributeError):
        return  # nothing there, or nothing readable: no figure to lose
    if old and (old.get("cpu"), old.get("gpu")) != (machine["cpu"], machine["gpu"]):
        raise ResultError(
            f"{path} holds today's result for this setting measured on another machine "
            f"({old.get('cpu')}, GPU {old.get('gpu')}; this one: {machine['cpu']}, GPU "
            f"{machine['gpu']}). Give a setting that tells the two apart (for instance name the "
            "machine in it) so that both are kept."
        )


def markdown_rows(table: str) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of a Markdown table as the benchmark scripts print it."""
    lines = [line.strip() for line in table.strip().splitlines() if line.strip().startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], [row for row in cells[1:] if not all(set(c) <= set("-: ") for c in row)]


def write_table(benchmark: str, setting: str, table: str, **kwargs) -> Path:
    """`write_result` for a script that prints its figures as a Markdown table."""
    columns, rows = markdown_rows(table)
    return write_result(benchmark, setting, columns, rows, **kwargs)


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return value
