"""Weight inheritance (issue 15, item 6): does ``train.init=supernet`` beat training the derived
network from scratch at the same total budget?

Per dataset and seed: one ``scinas run`` with ``train.init=supernet`` (the search, then the
inherited network fine-tuned), then, from that run's genotype, ``scinas train`` from scratch
twice: at the train preset's sizes (``scratch``) and at the supernet's sizes (``scratch-same``,
which separates the effect of the weights from that of the network's size). All three trainings
get the same ``train.time_budget`` and share one search, so each method's total budget (search +
training seconds) is the same. Reported per method: the supernet's validation accuracy at the end
of the search, the inherited network's before fine-tuning (the discretisation gap), each
network's final validation and test accuracy, its parameters, and the seconds. Mean and std over
``--seeds``; ``summary.json`` and a Markdown table.

For one machine alone (expected on 2 cores: per dataset and seed the search budget plus three
training budgets plus ~10% overhead, with the defaults 300 s + 3 x 300 s, so ~22 min; the default
2 datasets x 3 seeds ~2.2 hours):

    python benchmarks/inherit.py --out runs/inherit
    python benchmarks/inherit.py --datasets fashion_mnist --seeds 1 --search-budget 120 \\
        --train-budget 120 --out runs/inherit_short
    python benchmarks/inherit.py --quick --out /tmp/inherit_smoke     # minutes; means nothing

``--search-epochs S --train-epochs T`` replaces both time budgets by fixed epochs. Then
``inherited`` and ``scratch-same`` get exactly the same compute (the same network, epochs and
batches, after the same search), whatever else the machine runs, so several such runs may share
it (their seconds are then not a speed figure); ``scratch`` (the preset's larger network) gets the
same epochs, so more compute, reported in its seconds and parameters:

    python benchmarks/inherit.py --search-epochs 3 --train-epochs 5 --out runs/inherit_epochs

Each dataset and seed is written to ``summary.json`` as soon as it ends; ``--resume`` keeps those
rows and runs only the missing ones, so the benchmark may be spread over several sittings (with
fixed epochs the rows do not depend on what else ran).
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
    "fashion_mnist": str(SHARED / "fashion_mnist"),
    "cifar": str(SHARED / "cifar10_jpeg_subset" / "cifar10_jpeg_subset.npz"),
    "digits": "digits",
}
QUICK = [
    "search.max_samples=300",
    "search.C=4",
    "search.layers=3",
    "train.max_samples=300",
    "train.C=6",
    "train.layers=3",
    "data.max_val=100",
]
METHODS = ("inherited", "scratch", "scratch-same")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", default="fashion_mnist,cifar", help="of " + ", ".join(DATASETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--search-budget", type=float, default=300.0, help="search.time_budget, s")
    ap.add_argument("--train-budget", type=float, default=300.0, help="train.time_budget, s")
    ap.add_argument(
        "--search-epochs", type=int, default=None, help="fixed search epochs (no time budget)"
    )
    ap.add_argument(
        "--train-epochs", type=int, default=None, help="fixed training epochs (no time budget)"
    )
    ap.add_argument("--set", action="append", default=[], help="extra override for every run")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in OUT/summary.json and run only the missing seeds "
        "(a benchmark stopped between seeds continues; one stopped mid-seed reruns that seed)",
    )
    ap.add_argument("--quick", action="store_true", help="a smoke test: tiny everything")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    import scinas
    from scinas.progress import Reporter

    if args.quick:
        args.search_budget = args.train_budget = 60.0
    args.out.mkdir(parents=True, exist_ok=True)
    # what the rows depend on: --resume refuses to mix rows measured under other settings
    # (not --seeds, which --resume may raise, nor --datasets: the rows are kept per dataset)
    ignore = ("out", "resume", "verbose", "seeds", "datasets")
    settings = {k: v for k, v in vars(args).items() if k not in ignore}
    summary: dict = {}
    if args.resume and (args.out / "summary.json").is_file():
        saved = args.out / "settings.json"
        before = json.loads(saved.read_text()) if saved.is_file() else {}
        changed = sorted(k for k in settings if settings[k] != before.get(k))
        if changed:
            raise SystemExit(
                f"--resume: {args.out} was measured with other settings ({', '.join(changed)}: "
                f"{', '.join(repr(before.get(k)) for k in changed)}); use another --out"
            )
        summary = json.loads((args.out / "summary.json").read_text())
    (args.out / "settings.json").write_text(json.dumps(settings, indent=2))
    for data in args.datasets.split(","):
        rows = summary.get(data, [])
        for seed in range(args.seeds):
            if any(r["seed"] == seed for r in rows):
                print(f"{data} seed {seed}: kept from {args.out / 'summary.json'}", flush=True)
                continue
            base = [
                f"data.dataset={DATASETS[data]}",
                f"seed={seed}",
                *(
                    [f"search.time_budget={args.search_budget}"]
                    if args.search_epochs is None
                    else ["search.time_budget=null", f"search.epochs={args.search_epochs}"]
                ),
                *(
                    [f"train.time_budget={args.train_budget}"]
                    if args.train_epochs is None
                    else ["train.time_budget=null", f"train.epochs={args.train_epochs}"]
                ),
                *(QUICK if args.quick else []),
                *args.set,
            ]
            reporter = Reporter(quiet=not args.verbose)
            run = args.out / f"{data}-seed{seed}-inherited"
            cfg = scinas.build_config(args.preset, overrides=[*base, "train.init=supernet"])
            t0 = time.perf_counter()
            res = scinas.run(cfg, run, overwrite=True, reporter=reporter)
            row = {
                "seed": seed,
                "supernet_val": res["supernet"]["val"]["accuracy"],
                "inherited_val_at_start": res["inherited"]["val_at_start"]["accuracy"],
                "search_seconds": res["search_seconds"],
                "inherited": {
                    "val": res["val"]["accuracy"],
                    "test": res["test"]["accuracy"],
                    "params": res["params"],
                    "train_seconds": res["train_seconds"],
                    "wall_seconds": time.perf_counter() - t0,
                },
            }
            s = cfg.search
            same = [f"train.C={s.C}", f"train.layers={s.layers}"]
            if s.reductions is not None:
                same.append(f"train.reductions={s.reductions}")
            for method, extra in (("scratch", []), ("scratch-same", same)):
                out = args.out / f"{data}-seed{seed}-{method}"
                cfg = scinas.build_config(args.preset, overrides=[*base, *extra])
                t0 = time.perf_counter()
                r = scinas.train(cfg, run, out, overwrite=True, reporter=reporter)
                row[method] = {
                    "val": r["val"]["accuracy"],
                    "test": r["test"]["accuracy"],
                    "params": r["params"],
                    "train_seconds": r["train_seconds"],
                    "wall_seconds": time.perf_counter() - t0,
                }
            rows.append(row)
            rows.sort(key=lambda r: r["seed"])
            print(f"{data} seed {seed}: {json.dumps(row)}", flush=True)
            summary[data] = rows
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2))

    def ms(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "-"
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.fmean(vals):.4f} ± {sd:.4f}"

    lines = [
        "| data | supernet val | inherited val before fine-tuning | method | val | test | params |",
        "|---|---|---|---|---|---|---|",
    ]
    for data, rows in summary.items():
        sup = ms([r["supernet_val"] for r in rows])
        start = ms([r["inherited_val_at_start"] for r in rows])
        for method in METHODS:
            val = ms([r[method]["val"] for r in rows])
            test = ms([r[method]["test"] for r in rows])
            lo, hi = (f(r[method]["params"] for r in rows) for f in (min, max))
            params = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"  # the cells differ per seed
            lines.append(f"| {data} | {sup} | {start} | {method} | {val} | {test} | {params} |")
    print("\n".join(lines))
    if not args.quick:  # a result file for the docs' tables (scripts/render_tables.py)
        write_table("inherit", f"{args.datasets}, {args.seeds} seeds", "\n".join(lines))


if __name__ == "__main__":
    main()
