"""NAS-Bench-201 tabular benchmark: compare strategies without training anything.

A strategy searches the NB201 space seeing only each architecture's 12-epoch CIFAR-10 validation
accuracy (``cifar10_valid_12ep``, the signal used by the NAS-Bench-201 paper's searches). The
benchmark alone then looks up the 200-epoch test accuracy (``cifar10_test_200ep``) of the
architecture the strategy returns. The strategy's objective is a closure over the validation
column only (`NB201Table.oracle`), so it cannot read test accuracies even by accident.

The product takes the table's path; it does not ship it. Both forms of the table in
``shared/data/nasbench201`` are read: ``.npz`` (no pickle) and ``.csv``/``.csv.gz``.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

from .bounds import MAX_CANDIDATES, MAX_REPEATS
from .errors import UserError
from .progress import Reporter
from .rundir import RunDir, check_out_dir

SCORE_COLUMN = "cifar10_valid_12ep"
TEST_COLUMN = "cifar10_test_200ep"
NEEDED = ("arch_str", SCORE_COLUMN, TEST_COLUMN)

# Published CIFAR-10 200-epoch test accuracies (NAS-Bench-201 paper, Table 5).
REFERENCE = {"random": (93.70, 0.36), "evolution": (93.92, 0.30), "optimum": (94.37, 0.0)}


class NB201Table:
    """The results table: architecture string -> score (search signal) and test accuracy."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"the NAS-Bench-201 table {path} does not exist. Pass --table with the path to "
                "nb201_accuracies.npz (or .csv.gz)."
            )
        columns = _read_columns(path)
        missing = [c for c in NEEDED if c not in columns]
        if missing:
            raise UserError(
                f"the table {path} lacks the column(s) {', '.join(missing)}; it needs "
                f"{', '.join(NEEDED)} (one row per NAS-Bench-201 architecture)."
            )
        arch = [str(a) for a in columns["arch_str"]]
        try:
            score = np.asarray(columns[SCORE_COLUMN], dtype=np.float64)
            test = np.asarray(columns[TEST_COLUMN], dtype=np.float64)
        except ValueError as e:
            raise UserError(f"the table {path} has non-numeric accuracies ({e}).") from None
        if len(arch) == 0 or not (len(arch) == len(score) == len(test)):
            raise UserError(f"the table {path} is empty or its columns differ in length.")
        if not (np.isfinite(score).all() and np.isfinite(test).all()):
            raise UserError(f"the table {path} has missing (NaN) accuracies.")
        self.path = path
        self.row = {a: i for i, a in enumerate(arch)}
        self._score, self._test = score, test

    def __len__(self) -> int:
        return len(self.row)

    def _index(self, arch) -> int:
        try:
            return self.row[str(arch)]
        except KeyError:
            raise UserError(f"architecture {arch} is not in the table {self.path}.") from None

    def oracle(self):
        """What a strategy may see: arch -> 12-epoch validation accuracy, nothing else."""
        score, row = self._score, self.row

        def query(arch) -> float:
            return float(score[row[str(arch)]])

        return query

    def test_accuracy(self, arch) -> float:
        return float(self._test[self._index(arch)])

    def score(self, arch) -> float:
        return float(self._score[self._index(arch)])

    def best_test(self) -> float:
        return float(self._test.max())


def _read_columns(path: Path) -> dict:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            names = reader.fieldnames or []
        return {k: [r[k] for r in rows] for k in names}
    except (OSError, ValueError, EOFError, csv.Error, UnicodeDecodeError) as e:
        raise UserError(
            f"cannot read the table {path} ({type(e).__name__}: {e}); expected an .npz or "
            ".csv(.gz) with columns " + ", ".join(NEEDED) + "."
        ) from None


def run_nb201(
    strategy: str,
    *,
    budget: int,
    seeds: int,
    table: str | os.PathLike,
    out: str | os.PathLike,
    cfg=None,
    storage: str | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    first_seed: int = 0,
) -> dict:
    """Run ``strategy`` ``seeds`` times (seeds ``first_seed`` onwards) with ``budget`` queries
    each; write DIR/results.json, DIR/curve.csv (best-so-far against queries), DIR/curve.png and
    DIR/trials.csv. ``first_seed`` splits one benchmark's seeds over processes or machines: the
    seed-k run is the same whichever call makes it."""
    from .config import build_config
    from .spaces.nb201 import nb201_decisions
    from .strategies import STRATEGIES
    from .strategies.blackbox import (
        best_trial,
        check_storage_url,
        open_study,
        run_study,
    )

    reporter = reporter or Reporter()
    STRATEGIES.get(strategy)  # unknown -> suggestion
    if not 1 <= budget <= MAX_CANDIDATES:
        raise UserError(
            f"--budget must be at least 1 and at most {MAX_CANDIDATES} (scinas' bound on "
            f"candidates; got {budget})."
        )
    if not 1 <= seeds <= MAX_REPEATS:
        raise UserError(
            f"--seeds must be at least 1 and at most {MAX_REPEATS} (scinas' bound on repeats; "
            f"got {seeds})."
        )
    if not 0 <= first_seed < 2**32 - seeds:  # torch and numpy take seeds below 2**32
        raise UserError(
            f"--first-seed must be 0 or more and below 2**32 - --seeds (got {first_seed})."
        )
    chosen_seeds = range(first_seed, first_seed + seeds)
    if STRATEGIES.get(strategy).kind != "black-box":
        return _run_oneshot(
            strategy,
            seeds=chosen_seeds,
            table=table,
            out=out,
            cfg=cfg,
            overwrite=overwrite,
            reporter=reporter,
        )
    cfg = cfg or build_config("tiny")
    if cfg.search.strategy != strategy:  # the strategy's own settings, at their defaults
        cfg = build_config(base=cfg.model_dump(), search__strategy=strategy)
    from .strategies.warmstart import proxy_plan

    if proxy_plan(cfg.search) is not None:
        raise UserError(
            f"strategy {strategy} with zero-cost proxies scores networks on images, and the "
            "table mode has none: benchmarks/proxies_nb201.py and benchmarks/warmstart_nb201.py "
            "score NB201 networks on CIFAR-10 images and query the table."
        )
    tab = NB201Table(table)
    if storage:
        check_storage_url(storage)
    run = _open(
        out,
        overwrite,
        strategy=strategy,
        budget=budget,
        seeds=seeds,
        first_seed=first_seed,
        table=table,
        storage=storage,
        search=cfg.search.model_dump(),
    )
    space = nb201_decisions()
    oracle = tab.oracle()
    incumbents = np.zeros((seeds, budget))  # test acc of the best-so-far (by score) architecture
    finals, trial_rows = [], []
    t0 = time.perf_counter()
    for i, seed in enumerate(chosen_seeds):
        sampler = STRATEGIES.get(strategy).make_sampler(cfg.search, seed)
        study = open_study(storage, f"nb201-{strategy}-seed{seed}", sampler)
        run_study(study, space, lambda arch: (oracle(arch), {}), budget)
        trials = sorted((t for t in study.trials if t.value is not None), key=lambda t: t.number)[
            :budget
        ]
        best_score, best_test = -np.inf, np.nan
        for q, t in enumerate(trials):
            arch = t.user_attrs["arch"]["arch"]
            if t.value > best_score:
                best_score, best_test = t.value, tab.test_accuracy(arch)
            incumbents[i, q] = best_test
            trial_rows.append((seed, q + 1, arch, t.value))
        chosen = best_trial(study).user_attrs["arch"]["arch"]
        finals.append(
            {
                "seed": seed,
                "arch": chosen,
                "valid_12ep": tab.score(chosen),
                "test_200ep": tab.test_accuracy(chosen),
            }
        )
        reporter.log(
            f"seed {seed} ({i + 1}/{seeds}): {chosen} valid {tab.score(chosen):.2f} "
            f"test {tab.test_accuracy(chosen):.2f}"
        )
    seconds = time.perf_counter() - t0
    tests = np.array([f["test_200ep"] for f in finals])
    results = {
        "benchmark": "nb201",
        "dataset": "cifar10",
        "score_column": SCORE_COLUMN,
        "test_column": TEST_COLUMN,
        "strategy": strategy,
        "budget": budget,
        "seeds": seeds,
        "first_seed": first_seed,
        "test_accuracy_mean": float(tests.mean()),
        "test_accuracy_std": float(tests.std()),
        "best_possible": tab.best_test(),
        "reference": {k: {"mean": m, "std": s} for k, (m, s) in REFERENCE.items()},
        "seconds": seconds,
        "per_seed": finals,
    }
    _write_curve(run, incumbents)
    with open(run.file("trials.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "query", "arch", SCORE_COLUMN])
        w.writerows(trial_rows)
    run.write_json("results.json", results)
    run.close()
    reporter.log(
        f"{strategy}: {budget} queries x {seeds} seeds: CIFAR-10 test (200 ep) "
        f"{results['test_accuracy_mean']:.2f} ± {results['test_accuracy_std']:.2f} "
        f"(best possible {tab.best_test():.2f}) in {seconds:.1f}s -> {run.path}"
    )
    return results


def _open(out, overwrite: bool, *, table, **config) -> RunDir:
    """The benchmark's output directory (after every input has been checked)."""
    check_out_dir(out, overwrite=overwrite)
    config = {"benchmark": "nb201", "table": str(Path(table).resolve()), **config}
    return RunDir.create(out, kind="bench", config=config, overwrite=overwrite)


def _run_oneshot(strategy, *, seeds: range, table, out, cfg, overwrite, reporter) -> dict:
    """One-shot strategies: search the NB201 space on real data (``cfg.data``, e.g. the CIFAR-10
    images), once per seed of ``seeds``, and look each derived architecture up in the table."""
    from pydantic import ValidationError

    from . import pipeline
    from .config import Config
    from .spaces.nb201 import NB201Arch
    from .strategies import STRATEGIES

    if cfg is None or cfg.data.dataset == "digits":
        black_box = [n for n in STRATEGIES if STRATEGIES.get(n).kind == "black-box"]
        raise UserError(
            f"strategy '{strategy}' is one-shot: it trains a supernet on real images, so give "
            "--data (e.g. CIFAR-10: --data cifar10 --data-dir DIR, or an .npz of CIFAR-10 "
            f"images). Black-box strategies ({', '.join(black_box)}) need only the table."
        )
    tab = NB201Table(table)
    tree = cfg.model_dump()
    tree["search"].update(strategy=strategy, space="nb201")
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as e:
        raise UserError(f"bad config for the NB201 search: {e.errors()[0]['msg']}") from None
    pipeline.setup(cfg, reporter)  # validate the data before anything is written
    run = _open(
        out,
        overwrite,
        strategy=strategy,
        seeds=len(seeds),
        first_seed=seeds.start,
        table=table,
        run=cfg.model_dump(),
    )
    finals, per_epoch = [], []
    t0 = time.perf_counter()
    for i, seed in enumerate(seeds):
        seed_cfg = cfg.model_copy(update={"seed": seed})
        arch = pipeline.search(seed_cfg, run.path / f"seed{seed}", reporter=reporter)
        events = [
            json.loads(line)
            for line in (run.path / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()
        ]
        curve = [
            tab.test_accuracy(NB201Arch.from_dict(e["genotype"]))
            for e in events
            if e.get("event") == "search_epoch" and e.get("genotype")
        ]
        per_epoch.append(curve)
        finals.append(
            {
                "seed": seed,
                "arch": str(arch),
                "valid_12ep": tab.score(arch),
                "test_200ep": tab.test_accuracy(arch),
                "op_shares": arch.op_shares(),
                "per_epoch_test_200ep": curve,  # the cell derived after each search epoch
            }
        )
        reporter.log(
            f"seed {seed} ({i + 1}/{len(seeds)}): {arch} test (200 ep) "
            f"{tab.test_accuracy(arch):.2f}"
        )
    tests = np.array([f["test_200ep"] for f in finals])
    shares = {
        k: float(np.mean([f["op_shares"][k] for f in finals])) for k in finals[0]["op_shares"]
    }
    results = {
        "benchmark": "nb201",
        "dataset": "cifar10",
        "test_column": TEST_COLUMN,
        "strategy": strategy,
        "budget": None,
        "seeds": len(seeds),
        "first_seed": seeds.start,
        "search_data": cfg.data.dataset,
        "test_accuracy_mean": float(tests.mean()),
        "test_accuracy_std": float(tests.std()),
        "op_shares_mean": shares,
        "parameter_free_share": shares.get("skip_connect", 0)
        + shares.get("avg_pool_3x3", 0)
        + shares.get("none", 0),
        "best_possible": tab.best_test(),
        "seconds": time.perf_counter() - t0,
        "per_seed": finals,
    }
    if per_epoch and all(per_epoch):
        n = min(len(c) for c in per_epoch)
        arr = np.array([c[:n] for c in per_epoch])
        with open(run.file("curve.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "test_accuracy_mean", "test_accuracy_std"])
            for e in range(n):
                w.writerow([e + 1, f"{arr[:, e].mean():.4f}", f"{arr[:, e].std():.4f}"])
    run.write_json("results.json", results)
    run.close()
    reporter.log(
        f"{strategy} on NB201 ({len(seeds)} seeds): CIFAR-10 test (200 ep) "
        f"{results['test_accuracy_mean']:.2f} ± {results['test_accuracy_std']:.2f}; "
        f"skip/pool/none share {results['parameter_free_share']:.2f} -> {run.path}"
    )
    return results


def _write_curve(run: RunDir, incumbents: np.ndarray) -> None:
    mean, std = incumbents.mean(0), incumbents.std(0)
    with open(run.file("curve.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "test_accuracy_mean", "test_accuracy_std"])
        for q, (m, s) in enumerate(zip(mean, std, strict=True), start=1):
            w.writerow([q, f"{m:.4f}", f"{s:.4f}"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    q = np.arange(1, len(mean) + 1)
    ax.plot(q, mean, label="mean over seeds")
    ax.fill_between(q, mean - std, mean + std, alpha=0.25, label="± 1 std")
    ax.set_xlabel("queries")
    ax.set_ylabel("test accuracy of best-so-far (%)")
    ax.set_title(json.loads(run.file("config.json").read_text())["strategy"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.file("curve.png"), dpi=100)
    plt.close(fig)
