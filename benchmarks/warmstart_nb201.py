"""Zero-cost warm start on NAS-Bench-201: regularised evolution with and without it, at the same
number of table queries (100) over 50 seeds, the proxies' own compute counted.

Both arms run scinas' evolution sampler (its default settings, population 20, tournament 5)
against the 12-epoch CIFAR-10 validation column, exactly as ``scinas bench nb201`` does, and are
scored by the 200-epoch CIFAR-10 test accuracy of the architecture each returns (94.09 today for
evolution alone, README). The warm-started arm first scores ``--pool`` random architectures
with ``--proxy`` and enqueues the best ``--top`` into the optuna study
(`scinas.strategies.zerocost.enqueue_pool`); those are the first of its 100 queries.

The proxy scores come from the cache that ``benchmarks/proxies_nb201.py`` writes (the same
networks and CIFAR-10 batch): each seed's pool is drawn without replacement from the cached
architectures, themselves a uniform sample of the space, so each pool is a uniform random sample
too. The proxies' compute per seed is the pool size times the measured seconds of those
architectures (recorded in the cache), reported beside the accuracies. Run proxies_nb201.py
first (1,000 architectures: ~11 min on 2 cores); this script then takes about a minute.

    python benchmarks/proxies_nb201.py --n 1000 --cache proxies_nb201.jsonl
    python benchmarks/warmstart_nb201.py --cache proxies_nb201.jsonl --proxy synflow
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from scinas.bench import SCORE_COLUMN, TEST_COLUMN, NB201Table
from scinas.config import build_config
from scinas.proxies import parse_combo
from scinas.spaces.nb201 import NB201Arch, nb201_decisions
from scinas.stats import welch
from scinas.strategies import STRATEGIES
from scinas.strategies.blackbox import best_trial, open_study, run_study
from scinas.strategies.warmstart import enqueue_pool

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


class CachedScorer:
    """Scores of a pool read from the cache; counts what scoring them cost when measured."""

    def __init__(self, cache: dict[str, dict]):
        self.cache, self.scored, self.seconds = cache, 0, 0.0

    def __call__(self, arch) -> dict:
        row = self.cache[str(arch)]
        self.scored += 1
        self.seconds += row["seconds"]
        return row


def pool_params(archs: list[str], n: int, seed: int) -> list[dict]:
    """``n`` of the cached architectures (without replacement), as decision dicts."""
    names = [name for name, _ in nb201_decisions().decisions]
    pick = np.random.default_rng(seed).choice(len(archs), n, replace=False)
    return [dict(zip(names, NB201Arch.parse(archs[i]).ops, strict=True)) for i in pick]


def run(strategy_cfg, table, budget, seed, warm=None) -> tuple[float, dict | None]:
    sampler = STRATEGIES.get("evolution").make_sampler(strategy_cfg, seed)
    study = open_study(None, f"warm-{seed}", sampler)
    record = None
    if warm is not None:
        params, scorer, names, top = warm
        record = enqueue_pool(study, nb201_decisions(), scorer, names, params, top)
    oracle = table.oracle()
    run_study(study, nb201_decisions(), lambda arch: (oracle(arch), {}), budget)
    chosen = best_trial(study).user_attrs["arch"]["arch"]
    return table.test_accuracy(chosen), record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default=str(ROOT / "nasbench201" / "nb201_accuracies.npz"))
    p.add_argument("--cache", default="proxies_nb201.jsonl")
    p.add_argument("--proxy", default="synflow", help="a proxy or a+b (rank average)")
    p.add_argument("--pool", type=int, default=100, help="architectures scored per seed")
    p.add_argument("--top", type=int, default=10, help="best-scoring enqueued per seed")
    p.add_argument("--budget", type=int, default=100, help="table queries per seed")
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    names = parse_combo(a.proxy)
    cache = {}
    for line in Path(a.cache).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        cache[row["arch"]] = row
    if len(cache) < a.pool:
        raise SystemExit(f"the cache holds {len(cache)} architectures, fewer than --pool {a.pool}")
    table = NB201Table(a.table)
    cfg = build_config("tiny", overrides=["search.strategy=evolution"]).search
    plain, warm, costs = [], [], []
    for seed in range(a.seeds):
        acc, _ = run(cfg, table, a.budget, seed)
        plain.append(acc)
        params = pool_params(sorted(cache), a.pool, seed)
        acc, record = run(cfg, table, a.budget, seed, (params, CachedScorer(cache), names, a.top))
        warm.append(acc)
        costs.append(record["seconds"])
        print(f"seed {seed}: evolution {plain[-1]:.2f}  warm-started {warm[-1]:.2f}", flush=True)
    t, pvalue = welch(warm, plain)
    result = {
        "score_column": SCORE_COLUMN,
        "test_column": TEST_COLUMN,
        "budget_queries": a.budget,
        "seeds": a.seeds,
        "evolution": {"mean": float(np.mean(plain)), "std": float(np.std(plain))},
        "warm_started": {
            "proxy": a.proxy,
            "pool": a.pool,
            "enqueued": a.top,
            "mean": float(np.mean(warm)),
            "std": float(np.std(warm)),
            "proxy_seconds_per_seed": float(np.mean(costs)),
            "proxy_architectures_per_seed": a.pool,
        },
        "welch": {"t": t, "p": pvalue},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
