"""Automatic learning rates (issue 15, item 4): do ``search.lr=auto`` / ``train.lr=auto`` choose
rates that train as well as the fixed defaults, and do they make the alphas decide?

Per dataset and seed, a full ``scinas run`` (``--preset tiny`` by default) per variant:

- ``fixed``: the preset's fixed learning rates (search 0.025, arch 3e-4, train 0.1);
- ``auto``: ``search.lr=auto train.lr=auto`` (the range tests choose the weight rates, the
  architecture rate follows the travel rule, `scinas.lr_finder`);
- ``10x`` (MNIST only by default): ``search.lr=0.25 train.lr=1.0``, ten times the defaults, which
  today crash: the divergence guard must bring it home (the issue asks test accuracy >= 0.97);
- ``10x+auto``: the same data with ``lr=auto`` (the 10x numbers replaced by the range tests').

Reported per run: the rates chosen (``lr_range.json``), the range tests' seconds, the test
accuracy, the mean margin of each edge's strongest op over uniform at the end of the search and
the derived normal cell's parameter-free share (`search_epoch` diagnostics), the divergence
guard's rollbacks, and the wall time. Everything lands in ``--out`` (one run directory per run and
``summary.json``); a Markdown table is printed. Auto becomes the default only if it matches or
beats ``fixed`` on accuracy and decides the alphas (margin >= 0.10) on every dataset.

For one machine alone (expected on 2 cores, 1 seed: digits ~3 min per run, Fashion-MNIST and
MNIST ~10-15 min, the CIFAR-10 subset ~20-30 min; all variants about 2 hours):

    python benchmarks/auto_lr.py --out runs/auto_lr
    python benchmarks/auto_lr.py --datasets mnist --variants 10x --out runs/auto_lr_10x
    python benchmarks/auto_lr.py --quick --out /tmp/auto_lr_smoke      # minutes; means nothing
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from results import write_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "digits": "digits",
    "fashion_mnist": str(SHARED / "fashion_mnist"),
    "mnist": str(SHARED / "mnist"),
    "cifar": str(SHARED / "cifar10_jpeg_subset" / "cifar10_jpeg_subset.npz"),
}
VARIANTS = {
    "fixed": [],
    "auto": ["search.lr=auto", "train.lr=auto"],
    "10x": ["search.lr=0.25", "train.lr=1.0"],
    "10x+auto": ["search.lr=auto", "train.lr=auto"],
}
DEFAULT = {
    "digits": ["fixed", "auto"],
    "fashion_mnist": ["fixed", "auto"],
    "cifar": ["fixed", "auto"],
    "mnist": ["10x", "10x+auto"],
}
QUICK = [
    "search.epochs=1",
    "search.max_samples=300",
    "search.C=4",
    "search.layers=3",
    "train.epochs=1",
    "train.max_samples=300",
    "train.C=4",
    "train.layers=3",
    "data.max_val=100",
]


def events(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]


def summarise(run: Path, res: dict, wall: float) -> dict:
    ev = events(run)
    epochs = [e for e in ev if e.get("event") == "search_epoch" and e.get("diagnostics")]
    last = epochs[-1]["diagnostics"] if epochs else {}
    cells = last.get("cells") or {}
    normal = next(iter(cells.values()), {})
    tests = (
        json.loads((run / "lr_range.json").read_text()) if (run / "lr_range.json").is_file() else {}
    )
    first_search = next((e for e in ev if e.get("event") == "search_epoch"), {})
    first_train = next((e for e in ev if e.get("event") == "train_epoch"), {})
    return {
        "test_accuracy": res["test"].get("accuracy"),
        "search_lr": first_search.get("lr"),
        "arch_lr": (tests.get("search") or {}).get("arch_lr"),
        "train_lr": first_train.get("lr"),
        "range_test_seconds": sum(
            (t.get("test") or {}).get("seconds", 0.0) for t in tests.values()
        ),
        "margin": last.get("margin"),
        "parameter_free": normal.get("parameter_free"),
        "rollbacks": sum(e.get("event") == "divergence" for e in ev),
        "undecided": any(e.get("event") == "undecided" for e in ev),
        "wall_seconds": wall,
        "lr_range": {k: {kk: vv for kk, vv in v.items() if kk != "test"} for k, v in tests.items()},
    }


def fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", default=",".join(DATASETS), help="of " + ", ".join(DATASETS))
    ap.add_argument(
        "--variants", default=None, help="of " + ", ".join(VARIANTS) + " (default: per dataset)"
    )
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", action="append", default=[], help="extra override for every run")
    ap.add_argument("--quick", action="store_true", help="a smoke test: tiny everything")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    import scinas
    from scinas.errors import TrainingDiverged
    from scinas.progress import Reporter

    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    for data in args.datasets.split(","):
        variants = args.variants.split(",") if args.variants else DEFAULT[data]
        for name in variants:
            rows = []
            for seed in range(args.seeds):
                run = args.out / f"{data}-{name}-seed{seed}"
                sets = [
                    f"data.dataset={DATASETS[data]}",
                    f"seed={seed}",
                    *VARIANTS[name],
                    *(QUICK if args.quick else []),
                    *args.set,
                ]
                cfg = scinas.build_config(args.preset, overrides=sets)
                t0 = time.perf_counter()
                try:
                    res = scinas.run(
                        cfg, run, overwrite=True, reporter=Reporter(quiet=not args.verbose)
                    )
                    row = {"seed": seed, **summarise(run, res, time.perf_counter() - t0)}
                except (TrainingDiverged, scinas.UserError) as e:  # a result too: it did not finish
                    row = {"seed": seed, "failed": str(e), "wall_seconds": time.perf_counter() - t0}
                rows.append(row)
                print(f"{data} {name} seed {seed}: {json.dumps(row)}", flush=True)
            summary.setdefault(data, {})[name] = rows
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2))

    head = ["data", "variant", "test acc", "search lr", "arch lr", "train lr", "range s",
            "margin", "param-free", "rollbacks", "wall s", "failed"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for data, by in summary.items():
        for name, rows in by.items():
            ok = [r for r in rows if "failed" not in r]

            def mean(key, rows=ok):
                vals = [r[key] for r in rows if r.get(key) is not None]
                return statistics.fmean(vals) if vals else None

            cells = [data, name, mean("test_accuracy"), mean("search_lr"), mean("arch_lr"),
                     mean("train_lr"), mean("range_test_seconds"), mean("margin"),
                     mean("parameter_free"), mean("rollbacks"), mean("wall_seconds", rows),
                     len(rows) - len(ok)]  # fmt: skip
            lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    print("\n".join(lines))
    if not args.quick:  # a result file for the docs' tables (scripts/render_tables.py)
        write_table("auto_lr", f"{args.datasets}, {args.preset} preset", "\n".join(lines))


if __name__ == "__main__":
    main()
