"""`scinas compare`: was NAS worth it on this data?

Per seed, on the same data, config and trainer:

* ``darts``: the DARTS search, its derived cell retrained from scratch (a normal `scinas run`);
* ``darts_supernet``: that search's continuous supernet itself as the final model;
* ``random``: random search given the same wall-clock time as that seed's DARTS search (each
  candidate trained at low fidelity, as the black-box strategies do), its best retrained;
* ``resnet10``, ``resnet18``, ``resnet_tiny``: hand-designed baselines, trained like the rest.

Every method's test metric over seeds goes into ``compare.json`` with mean, standard deviation,
a 95% Student-t interval, parameters, FLOPs and wall time, plus Welch's t-test of each method
against ``darts``. Each run is a normal run directory under ``DIR/<method>/seed<k>``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .config import Config
from .errors import UserError, unknown
from .progress import Reporter
from .rundir import RunDir, check_out_dir
from .stats import ci95, mean_std, welch

METHODS = ("darts", "darts_supernet", "random", "resnet10", "resnet18", "resnet_tiny")


def _with(cfg: Config, **changes) -> Config:
    tree = cfg.model_dump()
    for key, value in changes.items():
        node = tree
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return Config.model_validate(tree)


def _supernet_test(run_path: Path, cfg: Config, reporter) -> tuple[dict, int]:
    """Test metrics and parameter count of the trained supernet of a run directory."""
    from .network import count_parameters
    from .pipeline import _batches, setup
    from .rundir import load_state
    from .strategies.oneshot import build_supernet
    from .train import evaluate

    s = setup(cfg, Reporter(quiet=True))
    model = build_supernet(s)
    model.load_state_dict(load_state(run_path / "supernet.pt"))
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    metrics = evaluate(model, s.task, _batches(s, s.data.test.x, s.data.test.y, 256))
    return metrics, count_parameters(model)


def compare(
    cfg: Config,
    out,
    *,
    seeds: int = 3,
    methods: tuple[str, ...] | list[str] = METHODS,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> dict:
    from .pipeline import run, setup, train

    reporter = reporter or Reporter()
    methods = tuple(methods)
    for m in methods:
        if m not in METHODS:
            raise unknown("method", m, METHODS)
    if not methods:
        raise UserError("--methods is empty; choose among " + ", ".join(METHODS) + ".")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1 (got {seeds}).")
    if cfg.search.strategy != "darts":
        raise UserError("compare runs DARTS itself; leave search.strategy at darts.")
    s = setup(cfg, reporter)  # validate the data (and show it) before writing anything
    check_out_dir(out, overwrite=overwrite)
    from .pipeline import _check_search, _check_train

    _check_search(s)
    _check_train(s)
    from .config import config_to_dict

    root = RunDir.create(
        out,
        kind="compare",
        config={"seeds": seeds, "methods": list(methods), "run": config_to_dict(cfg)},
        overwrite=overwrite,
    )
    metric = s.task.primary_metric
    rows: dict[str, dict] = {
        m: {"values": [], "params": None, "flops": None, "wall": []} for m in methods
    }
    t0 = time.perf_counter()
    try:
        for seed in range(seeds):
            c = _with(cfg, seed=seed)
            search_seconds = None
            if {"darts", "darts_supernet", "random"} & set(methods):
                reporter.log(f"compare seed {seed}: darts")
                path = root.path / "darts" / f"seed{seed}"
                r = run(c, path, reporter=reporter)
                search_seconds = r["search_seconds"]
                if "darts" in methods:
                    _add(
                        rows["darts"], r["test"][metric], r["params"], r["flops"], r["wall_seconds"]
                    )
                if "darts_supernet" in methods:
                    sup, n = _supernet_test(path, c, reporter)
                    _add(rows["darts_supernet"], sup[metric], n, None, search_seconds)
            if "random" in methods:
                reporter.log(
                    f"compare seed {seed}: random search for {search_seconds:.0f}s (as DARTS)"
                )
                rc = _with(
                    c,
                    search__strategy="random",
                    search__budget=10_000,
                    search__time_budget=max(1.0, search_seconds),
                )
                r = run(rc, root.path / "random" / f"seed{seed}", reporter=reporter)
                _add(rows["random"], r["test"][metric], r["params"], r["flops"], r["wall_seconds"])
            for name in ("resnet10", "resnet18", "resnet_tiny"):
                if name in methods:
                    reporter.log(f"compare seed {seed}: {name}")
                    r = train(c, name, root.path / name / f"seed{seed}", reporter=reporter)
                    _add(rows[name], r["test"][metric], r["params"], r["flops"], r["wall_seconds"])
        result = _summarise(s.task, metric, rows, seeds, time.perf_counter() - t0)
        root.write_json("compare.json", result)
    finally:
        root.close()
    reporter.log("\n" + table(result))
    return result


def _add(row: dict, value: float, params, flops, wall: float) -> None:
    row["values"].append(float(value))
    row["params"], row["flops"] = params, flops
    row["wall"].append(float(wall))


def _summarise(task, metric: str, rows: dict, seeds: int, seconds: float) -> dict:
    methods = {}
    for name, row in rows.items():
        mean, std = mean_std(row["values"])
        lo, hi = ci95(row["values"])
        methods[name] = {
            "values": row["values"],
            "mean": mean,
            "std": std,
            "ci95": [lo, hi],
            "params": row["params"],
            "flops": row["flops"],
            "wall_seconds": sum(row["wall"]) / len(row["wall"]),
        }
    tests = {}
    if "darts" in methods:
        base = methods["darts"]["values"]
        for name, m in methods.items():
            if name != "darts":
                t, p = welch(m["values"], base)
                tests[name] = {
                    "difference": m["mean"] - methods["darts"]["mean"],
                    "t": t,
                    "p": p,
                    "significant": p < 0.05,
                }
    return {
        "task": task.name,
        "metric": metric,
        "higher_is_better": task.higher_is_better,
        "seeds": seeds,
        "methods": methods,
        "vs_darts": tests,
        "seconds": seconds,
    }


def table(result: dict) -> str:
    metric = result["metric"]
    lines = [
        f"{'method':<15} {metric + ' mean':>12} {'std':>8} {'95% CI':>19} {'params':>10} "
        f"{'wall s':>8}  vs darts"
    ]
    for name, m in result["methods"].items():
        vs = result["vs_darts"].get(name)
        note = ""
        if vs:
            sig = ", significant" if vs["significant"] else ""
            note = f"{vs['difference']:+.4f} (p={vs['p']:.3f}{sig})"
        params = f"{m['params']:,}" if m["params"] else "-"
        lines.append(
            f"{name:<15} {m['mean']:>12.4f} {m['std']:>8.4f} "
            f"[{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}] {params:>10} {m['wall_seconds']:>8.1f}  "
            f"{note}"
        )
    return "\n".join(lines)
