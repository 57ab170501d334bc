"""Robust one-shot search (issue 15): which one-shot search should be the default?

Two comparisons, each variant a set of ``--set`` overrides on the same config:

``fmnist``: the DARTS space on Fashion-MNIST (``--preset tiny`` by default), a full ``scinas
run`` per variant and seed. ``digits``: the same on the bundled 8×8 digits (the default
``scinas run``). Reported per variant: the parameter-free (skip/pool/none) share of
the derived normal cell, the mean margin of each edge's strongest op over uniform at the end of
the search (`scinas.strategies.decided`), the test accuracy of the retrained network, the search
and total wall time, and the ops pruned.

``nb201``: the NAS-Bench-201 space searched on the CIFAR-10 subset through ``scinas bench nb201
--data``, one call per variant (``--seeds`` seeds each); the table gives the derived
architecture's 200-epoch CIFAR-10 test accuracy. Reported per variant: the accuracy (mean ± std
over seeds), the parameter-free share of the derived cell, the margin, and the skip/pool/none
share of the derived cell per search epoch (mean over seeds), which shows a collapse as it
happens.

Everything lands in ``--out`` (one run directory per variant and seed, and ``summary.json``);
the tables are printed as Markdown. ``--quick`` shrinks every run to a smoke test (minutes on 2
cores; the figures then mean nothing). The full runs are for one machine alone:

    python benchmarks/robust_oneshot.py fmnist --seeds 1 --out runs/robust_fmnist
    python benchmarks/robust_oneshot.py nb201 --seeds 4 --variants default,darts+beta,darts \\
        --set search.layers=3 --set search.epochs=50 --out runs/robust_nb201
    python benchmarks/robust_oneshot.py nb201 --quick --out /tmp/robust_smoke

``--variants a,b`` picks variants by name (`VARIANTS`); ``--set`` adds overrides to every run.
``--jobs 2`` (nb201) runs a variant's seeds in two processes at once, one thread each, through
``scinas bench nb201 --first-seed``; their results are merged as one call's would be.

The issue's NB201 figure, measured 2026-12-02 (1 thread, two at a time; about 40 minutes):

    python benchmarks/robust_oneshot.py nb201 --seeds 4 --jobs 2 --variants default \\
        --set search.layers=3 --set search.epochs=50 --set search.max_samples=10000 \\
        --out runs/robust_nb201_10k

Cost, measured 2026-11-30 on the 2-core machine under a load of 7 (other jobs running), so an
upper bound: the ``--quick`` NB201 comparison of 2 variants, 1 seed, 62 s per variant; the
``--quick`` Fashion-MNIST run of one variant 130 s (most of it loading the data); one NB201
search epoch at ``search.C=8 search.layers=6 search.max_samples=2000`` (1000 + 1000 CIFAR
images, batch 32) 519 s. A 30-epoch NB201 comparison of 7 variants over 4 seeds is therefore
a job for a GPU, or for fewer variants (``--variants darts,drnas,darts+beta``) and a smaller
supernet (``search.layers=3``: one cell per stage) on CPU. Measured 2026-12-01 alone on 2 cores
(AMD EPYC): at ``search.layers=3`` and the tiny preset's 5,000 images (2,500 + 2,500), one NB201
search epoch takes 7.0-7.5 s, so a 50-epoch search about 6 minutes per variant and seed.

Since commit aa4dbca (2026-12-01) ``default`` means the default with β-DARTS' Beta-Decay and the
search's crop augmentation (``search.augment=default``); the variants spelled from ``PLAIN``
get the augmentation too. Rows measured before that change used neither; ``--set
search.augment=none`` (and ``--set search.beta_decay=0`` for ``default``) repeats them. Since
commit 08dd8b1 ``default`` also ramps its entropy term (``search.entropy_schedule=ramp``); ``--set
search.entropy_schedule=constant`` repeats the rows before it. Two
variants at once, each with ``OMP_NUM_THREADS=1``, had about 1.45 times the throughput of one
at a time on 2 cores (10 s per epoch each against 7.0-7.5 s); the table accuracies are then
still measured (fixed epochs; one thread only changes the order of float sums), the seconds
are not a speed figure.

The NB201 table also gives, per variant, what ``search.select_epoch=best_val`` would have
returned from the same runs (the cell of the epoch with the lowest supernet validation loss):
the selection changes no training, only which epoch's cell is kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from results import write_table

from scinas.strategies.darts import PLAIN_DARTS

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"

# name -> overrides on top of the comparison's base config. ``darts`` is the DARTS paper's
# (architecture rate 3e-4, no auxiliary skip, no entropy term); ``default`` is scinas' default
# search (`scinas.strategies.darts.ROBUST_DEFAULTS`); the others change one thing at a time from
# the plain DARTS they name. ``@auto``: the architecture rate from the number of architecture
# steps (`search.arch_lr=auto`: Adam can move an alpha 3.0 over the search), no range test.
PLAIN = ["search.strategy=darts", *(f"search.{k}={v}" for k, v in PLAIN_DARTS.items())]
AUTO_ARCH = "search.arch_lr=auto"
PRUNE = ["search.prune_threshold=0.08", "search.prune_patience=2"]
VARIANTS: dict[str, list[str]] = {
    "default": ["search.strategy=darts"],
    "darts": PLAIN,
    "drnas": ["search.strategy=drnas"],
    "darts+beta": [*PLAIN, "search.beta_decay=1"],
    "darts-": [*PLAIN, "search.aux_skip=1"],
    "darts+prune": [*PLAIN, *PRUNE],
    "darts+entropy": [*PLAIN, "search.entropy_weight=0.1"],
    "drnas+prune": ["search.strategy=drnas", *PRUNE],
    "darts@auto": [*PLAIN, AUTO_ARCH],
    "drnas@auto": ["search.strategy=drnas", AUTO_ARCH],
    "darts+beta@auto": [*PLAIN, "search.beta_decay=1", AUTO_ARCH],
    "darts-@auto": [*PLAIN, "search.aux_skip=1", AUTO_ARCH],
    "darts+entropy@auto": [*PLAIN, "search.entropy_weight=0.1", AUTO_ARCH],
    **{
        f"darts-+entropy{w}@auto": [
            *PLAIN,
            "search.aux_skip=1",
            f"search.entropy_weight={w}",
            AUTO_ARCH,
        ]
        for w in ("0.1", "0.3", "1", "3")
    },
    "drnas+entropy@auto": ["search.strategy=drnas", "search.entropy_weight=0.1", AUTO_ARCH],
    "gdas": ["search.strategy=gdas"],
    "gdas+beta": ["search.strategy=gdas", "search.beta_decay=1"],
}
DEFAULT_VARIANTS = {
    "fmnist": ["default", "darts", "drnas", "darts-@auto", "darts+entropy@auto"],
    "nb201": ["default", "darts", "drnas", "darts+beta", "darts-", "gdas", "gdas+beta"],
}
QUICK = {
    "fmnist": [
        "search.epochs=2",
        "search.max_samples=400",
        "search.C=4",
        "search.layers=3",
        "train.epochs=1",
        "train.max_samples=400",
        "train.C=4",
        "train.layers=3",
        "data.max_val=200",
    ],
    "nb201": [
        "search.epochs=2",
        "search.max_samples=256",
        "search.C=4",
        "search.layers=3",
        "data.max_val=128",
    ],
}


def events(path: Path) -> list[dict]:
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines() if x]


def search_summary(run: Path) -> dict:
    """From a run directory's metrics.jsonl: per search epoch the derived (first) cell's
    skip/pool/none share, margin, entropy, seconds and ops left; the pruning events."""
    ev = events(run)
    epochs = [e for e in ev if e.get("event") == "search_epoch" and e.get("diagnostics")]
    per_epoch = []
    for e in epochs:
        d = e["diagnostics"]
        shares = next(iter(d["cells"].values()))
        per_epoch.append(
            {
                "epoch": e["epoch"],
                "seconds": e["seconds"],
                "skip": shares["skip"],
                "pool": shares["pool"],
                "none": shares["none"],
                "parameter_free": shares["parameter_free"],
                "margin": d.get("margin"),
                "entropy": d["mean_entropy"],
                "ops_left": e.get("ops_left"),
            }
        )
    return {
        "per_epoch": per_epoch,
        "pruned": sum(e.get("event") == "prune" for e in ev),
        "undecided": any(e.get("event") == "undecided" for e in ev),
    }


def best_val_pick(run: Path, seed_result: dict) -> dict:
    """The epoch `select_best_val_epoch` picks in a bench seed's run and its cell's table
    accuracy (``per_epoch_test_200ep``: the cell derived after each epoch, looked up)."""
    from scinas.strategies.oneshot import select_best_val_epoch

    cfg = json.loads((run / "config.json").read_text())
    history = [e for e in events(run) if e.get("event") == "search_epoch"]
    best = select_best_val_epoch(history, cfg["search"].get("warmup_epochs", 0))
    curve = seed_result["per_epoch_test_200ep"]
    if best is None:
        return {"epoch": len(curve), "test_200ep": curve[-1]}
    return {"epoch": best["epoch"], "test_200ep": curve[best["epoch"] - 1]}


def run_fmnist(args, variants: list[str]) -> dict:
    import scinas
    from scinas.progress import Reporter

    out = {}
    for name in variants:
        rows = []
        for seed in range(args.seeds):
            run = args.out / f"{name}-seed{seed}"
            sets = [
                f"data.dataset={args.data}",
                *([f"data.data_dir={args.data_dir}"] if args.data_dir else []),
                f"seed={seed}",
                *VARIANTS[name],
                *(QUICK["fmnist"] if args.quick else []),
                *args.set,
            ]
            cfg = scinas.build_config(args.preset, overrides=sets)
            t0 = time.perf_counter()
            res = scinas.run(cfg, run, overwrite=True, reporter=Reporter(quiet=not args.verbose))
            wall = time.perf_counter() - t0
            summary = search_summary(run)
            last = summary["per_epoch"][-1] if summary["per_epoch"] else {}
            rows.append(
                {
                    "seed": seed,
                    "test_accuracy": res["test"].get("accuracy"),
                    "parameter_free": last.get("parameter_free"),
                    "margin": last.get("margin"),
                    "search_seconds": res.get("search_seconds"),
                    "wall_seconds": wall,
                    **summary,
                }
            )
            print(
                f"{name} seed {seed}: test {rows[-1]['test_accuracy']:.4f} parameter-free "
                f"{rows[-1]['parameter_free']:.2f} margin {rows[-1]['margin']:.4f} "
                f"{wall:.0f}s",
                flush=True,
            )
        out[name] = rows
    return out


def bench_jobs(args, cmd: list[str], bench: Path) -> tuple[dict, list[Path]]:
    """Run ``cmd`` (a ``scinas bench nb201`` call less its --seeds/--out) over ``args.seeds``
    seeds in ``args.jobs`` processes at once, each on its share of the cores and seeds
    (``--first-seed``), into bench/ (one job) or bench/part*/; returns the merged results and
    the seed directories in seed order. A seed's run is the same whichever job makes it."""
    import os

    jobs = max(1, min(args.jobs, args.seeds))
    chunks = [list(c) for c in np.array_split(np.arange(args.seeds), jobs)]
    env = dict(os.environ)
    if jobs > 1:  # two torch processes with every thread each slow each other 5-10x
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    outs = [bench if jobs == 1 else bench / f"part{j}" for j in range(jobs)]
    procs = [
        subprocess.Popen(
            [*cmd, "--first-seed", str(c[0]), "--seeds", str(len(c)), "--out", str(o)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for c, o in zip(chunks, outs, strict=True)
    ]
    per_seed, dirs = [], []
    for proc, o in zip(procs, outs, strict=True):
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(proc.args)}\n{err}")
        part = json.loads((o / "results.json").read_text())
        per_seed += part["per_seed"]
        dirs += [o / f"seed{f['seed']}" for f in part["per_seed"]]
    tests = np.array([f["test_200ep"] for f in per_seed])
    shares = {
        k: float(np.mean([f["op_shares"][k] for f in per_seed])) for k in per_seed[0]["op_shares"]
    }
    results = {
        "test_accuracy_mean": float(tests.mean()),
        "test_accuracy_std": float(tests.std()),
        "parameter_free_share": sum(
            shares.get(k, 0.0) for k in ("skip_connect", "avg_pool_3x3", "none")
        ),
        "per_seed": per_seed,
    }
    return results, dirs


def run_nb201(args, variants: list[str]) -> dict:
    out = {}
    for name in variants:
        bench = args.out / name
        sets = [*VARIANTS[name], *(QUICK["nb201"] if args.quick else []), *args.set]
        strategy = next(s.split("=", 1)[1] for s in sets if s.startswith("search.strategy="))
        sets = [s for s in sets if not s.startswith("search.strategy=")]
        cmd = [
            sys.executable,
            "-m",
            "scinas",
            "bench",
            "nb201",
            "--table",
            str(args.table),
            "--strategy",
            strategy,
            "--data",
            str(args.data),
            "--preset",
            args.preset,
            "--overwrite",
            "--quiet",
            *[a for s in sets for a in ("--set", s)],
        ]
        t0 = time.perf_counter()
        results, dirs = bench_jobs(args, cmd, bench)
        seeds = [search_summary(d) for d in dirs]
        # what search.select_epoch=best_val returns, read off the same runs: the selection does
        # not change the training, only which epoch's cell is kept
        best_val = [best_val_pick(d, f) for d, f in zip(dirs, results["per_seed"], strict=True)]
        n = min(len(s["per_epoch"]) for s in seeds)
        per_epoch = [
            {
                key: float(np.mean([s["per_epoch"][e][key] for s in seeds]))
                for key in ("skip", "pool", "none", "parameter_free", "margin", "seconds")
            }
            for e in range(n)
        ]
        out[name] = {
            "test_accuracy_mean": results["test_accuracy_mean"],
            "test_accuracy_std": results["test_accuracy_std"],
            "parameter_free": results["parameter_free_share"],
            "archs": [f["arch"] for f in results["per_seed"]],
            "per_seed_test": [f["test_200ep"] for f in results["per_seed"]],
            "best_val": best_val,
            "best_val_test_mean": float(np.mean([b["test_200ep"] for b in best_val])),
            "best_val_test_std": float(np.std([b["test_200ep"] for b in best_val])),
            "per_epoch": per_epoch,
            "pruned": [s["pruned"] for s in seeds],
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"{name}: test {results['test_accuracy_mean']:.2f} ± {results['test_accuracy_std']:.2f}"
            f" parameter-free {results['parameter_free_share']:.2f} "
            f"{out[name]['seconds']:.0f}s",
            flush=True,
        )
    return out


def table_fmnist(out: dict) -> str:
    lines = [
        "| variant | test accuracy | parameter-free (normal) | margin | search s | wall s "
        "| pruned |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in out.items():

        def mean(key, rows=rows):
            vals = [r[key] for r in rows if r[key] is not None]
            return float(np.mean(vals)) if vals else float("nan")

        lines.append(
            f"| {name} | {mean('test_accuracy'):.4f} | {mean('parameter_free'):.2f} | "
            f"{mean('margin'):.4f} | {mean('search_seconds'):.0f} | {mean('wall_seconds'):.0f} "
            f"| {mean('pruned'):.0f} |"
        )
    return "\n".join(lines)


def table_nb201(out: dict) -> str:
    lines = [
        "| variant | CIFAR-10 test (200 ep) | with select_epoch=best_val (epochs) | "
        "parameter-free | final margin | skip/pool/none share per epoch | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in out.items():
        shares = " ".join(
            f"{e['skip']:.2f}/{e['pool']:.2f}/{e['none']:.2f}" for e in r["per_epoch"]
        )
        margin = r["per_epoch"][-1]["margin"] if r["per_epoch"] else float("nan")
        picked = ", ".join(str(b["epoch"]) for b in r["best_val"])
        lines.append(
            f"| {name} | {r['test_accuracy_mean']:.2f} ± {r['test_accuracy_std']:.2f} | "
            f"{r['best_val_test_mean']:.2f} ± {r['best_val_test_std']:.2f} ({picked}) | "
            f"{r['parameter_free']:.2f} | {margin:.4f} | {shares} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("comparison", choices=["digits", "fmnist", "nb201"])
    p.add_argument("--variants", help=f"comma-separated, among {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="nb201: seeds run in this many processes at once, the cores shared out "
        "(accuracies as at --jobs 1: fixed epochs; the seconds are then no speed figure)",
    )
    p.add_argument("--preset", default="tiny")
    p.add_argument("--data", help="fmnist: fashion-mnist; nb201: the CIFAR-10 subset .npz")
    p.add_argument("--data-dir", help="fmnist: the folder of the idx files")
    p.add_argument("--table", default=str(ROOT / "nasbench201" / "nb201_accuracies.npz"))
    p.add_argument("--set", action="append", default=[], help="override for every run")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (figures meaningless)")
    p.add_argument("--out", type=Path, default=Path("runs/robust_oneshot"))
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--results", type=Path, help="where the result file goes (benchmarks/results)")
    args = p.parse_args()
    if args.comparison == "digits":  # the bundled digits, through the Fashion-MNIST runner
        args.comparison, args.data = "fmnist", args.data or "digits"
    if args.data is None:
        args.data = (
            "fashion-mnist"
            if args.comparison == "fmnist"
            else str(ROOT / "cifar10_jpeg_subset" / "cifar10_jpeg_subset.npz")
        )
    if args.comparison == "fmnist" and args.data_dir is None and args.data == "fashion-mnist":
        args.data_dir = str(ROOT / "fashion_mnist")
    variants = args.variants.split(",") if args.variants else DEFAULT_VARIANTS[args.comparison]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.comparison == "fmnist":
        out = run_fmnist(args, variants)
        table = table_fmnist(out)
    else:
        out = run_nb201(args, variants)
        table = table_nb201(out)
    summary = {
        "comparison": args.comparison,
        "preset": args.preset,
        "seeds": args.seeds,
        "quick": args.quick,
        "sets": args.set,
        "variants": {v: VARIANTS[v] for v in variants},
        "results": out,
        "seconds": time.perf_counter() - t0,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table)
    if not args.quick:  # a result file for the docs' tables (scripts/render_tables.py)
        benchmark = "nb201_oneshot" if args.comparison == "nb201" else "robust_oneshot"
        setting = f"{Path(args.data).stem}, {args.preset} preset, {args.seeds} seed(s)"
        write_table(benchmark, setting, table, out_dir=args.results)


if __name__ == "__main__":
    main()
