"""What the receptive-field search costs against one training of its backbone (issue 33: at most
2x), and what it buys, on a series set.

Per seed: ``scinas train --genotype resnet1d`` for ``--train-epochs`` (the backbone trained
once), then ``scinas run --strategy receptive`` with ``--search-epochs`` of search and the same
training of the network it chose. Reported: each one's search and training seconds, the total
against the backbone's training (the search alone, and search and training together), and
the test accuracy. Run alone (seconds are the figure):

    python benchmarks/receptive_cost.py --data ../shared/data/series/gun_point.npz \\
        --train-epochs 40 --search-epochs 4 --seeds 2 --out runs/receptive_cost
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from results import write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--train-epochs", type=int, default=40)
    ap.add_argument("--search-epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--record", action="store_true", help="write a benchmarks/results file")
    args = ap.parse_args()

    import scinas
    from scinas.progress import Reporter

    quiet = Reporter(quiet=True)
    rows: dict[str, list[dict]] = {"backbone": [], "receptive": []}
    common = [f"train.epochs={args.train_epochs}", "report=false"]
    for seed in range(args.seeds):
        cfg = scinas.build_config("tiny", overrides=common, data__dataset=args.data, seed=seed)
        res = scinas.train(cfg, "resnet1d", args.out / f"backbone{seed}", reporter=quiet)
        rows["backbone"].append(
            {"search": 0.0, "train": res["train_seconds"], "test": res["test"]["accuracy"]}
        )
        sets = [
            *common,
            "search.space=baseline",
            "search.strategy=receptive",
            "search.start_from=[resnet1d]",
            f"search.epochs={args.search_epochs}",
        ]
        cfg = scinas.build_config("tiny", overrides=sets, data__dataset=args.data, seed=seed)
        res = scinas.run(cfg, args.out / f"receptive{seed}", reporter=quiet)
        rows["receptive"].append(
            {
                "search": res["search_seconds"],
                "train": res["train_seconds"],
                "test": res["test"]["accuracy"],
                "convs": res["genotype"].get("convs"),
            }
        )
        print(json.dumps({k: v[-1] for k, v in rows.items()}), flush=True)
    base = statistics.mean(r["train"] for r in rows["backbone"])
    table = []
    for name, rs in rows.items():
        total = [r["search"] + r["train"] for r in rs]
        tests = [r["test"] for r in rs]
        table.append(
            [
                name,
                f"{statistics.mean(r['search'] for r in rs):.1f}",
                f"{statistics.mean(r['train'] for r in rs):.1f}",
                f"{statistics.mean(r['search'] for r in rs) / base:.2f}",
                f"{statistics.mean(total) / base:.2f}",
                f"{statistics.mean(tests):.3f}"
                + (f" ± {statistics.stdev(tests):.3f}" if len(tests) > 1 else ""),
            ]
        )
    columns = [
        "method",
        "search s",
        "training s",
        "search / backbone training",
        "total / backbone training",
        "test accuracy",
    ]
    print("| " + " | ".join(columns) + " |")
    for row in table:
        print("| " + " | ".join(row) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    if args.record:
        name = Path(args.data).stem
        write_result(
            "receptive_cost",
            f"{name}, {args.train_epochs} training epochs, {args.search_epochs} search epochs, "
            f"{args.seeds} seeds",
            columns,
            table,
        )


if __name__ == "__main__":
    main()
