"""`scinas compare`: was NAS worth it on this data?

Per seed, on the same data, config and trainer:

* ``darts``: the DARTS search, its derived cell retrained from scratch (a normal `scinas run`);
* ``darts_supernet``: that search's continuous supernet itself as the final model;
* ``random``: random search given the same wall-clock time as that seed's DARTS search (each
  candidate trained at low fidelity, as the black-box strategies do), its best retrained;
* ``resnet10``, ``resnet18``, ``resnet_tiny``: hand-designed baselines, trained like the rest.

One compute budget per method (``compare.budget`` seconds per method and seed, set by the
``tiny`` preset): DARTS and random search spend ``compare.search_share`` of it searching and the
rest retraining, the ResNets train for all of it, so NAS pays for its search. Each phase turns
its seconds into epochs from timed steps (`scinas.budget`); those timings are taken once, before
anything is written, and a budget too small to train anything stops there. Without a budget,
DARTS runs its configured epochs, random search gets that seed's DARTS search time and the
ResNets train ``train.epochs``.

Every method's test metric over seeds goes into ``compare.json`` with mean, standard deviation,
a 95% Student-t interval, parameters, FLOPs and wall time, plus Welch's t-test of each method
against ``darts``. Each run is a normal run directory under ``DIR/<method>/seed<k>``.
"""

from __future__ import annotations

import time
from pathlib import Path

from .budget import describe
from .config import Config, check_settings_apply
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


def _supernet_test(run_path: Path, cfg: Config, reporter) -> tuple[dict, int, int]:
    """Test metrics, parameter count and FLOPs (every op of every edge) of the trained supernet
    of a run directory."""
    from .context import setup
    from .flops import count_flops, count_parameters
    from .rundir import load_state
    from .strategies.oneshot import build_supernet
    from .train import evaluate

    s = setup(cfg, Reporter(quiet=True))
    model = s.place.module(build_supernet(s))
    model.load_state_dict(load_state(run_path / "supernet.pt"))
    metrics = evaluate(model, s.task, s.place.batches(s.data.test.x, s.data.test.y, 256))
    return metrics, count_parameters(model), count_flops(model, s.data.input_shape)


def compare(
    cfg: Config,
    out,
    *,
    seeds: int = 3,
    methods: tuple[str, ...] | list[str] = METHODS,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> dict:
    from .pipeline import run, train

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
    check_out_dir(out, overwrite=overwrite)
    budget = cfg.compare.budget
    configs = _method_configs(cfg, methods)
    # validate the data and every method's config (and time the budgeted phases) up front
    plans, task = _preflight(configs, reporter)
    check_settings_apply(cfg)  # e.g. a GDAS setting: compare runs darts and random only
    if budget is not None:
        reporter.log(
            f"compare: {budget:.0f}s per method and seed ({cfg.compare.search_share:.0%} of it "
            "searching for darts and random)"
        )
    from .config import config_to_dict

    root = RunDir.create(
        out,
        kind="compare",
        config={"seeds": seeds, "methods": list(methods), "run": config_to_dict(cfg)},
        overwrite=overwrite,
    )
    metric = task.primary_metric
    rows: dict[str, dict] = {
        m: {"values": [], "params": None, "flops": None, "wall": []} for m in methods
    }
    t0 = time.perf_counter()
    try:
        for seed in range(seeds):
            c = _with(configs["darts"], seed=seed)
            search_seconds = None
            if {"darts", "darts_supernet", "random"} & set(methods):
                reporter.log(f"compare seed {seed}: darts")
                path = root.path / "darts" / f"seed{seed}"
                r = run(c, path, reporter=reporter, plans=plans["darts"])
                search_seconds = r["search_seconds"]
                if "darts" in methods:
                    _add(
                        rows["darts"], r["test"][metric], r["params"], r["flops"], r["wall_seconds"]
                    )
                if "darts_supernet" in methods:
                    sup, n, flops = _supernet_test(path, c, reporter)
                    _add(rows["darts_supernet"], sup[metric], n, flops, search_seconds)
            if "random" in methods:
                rc = configs["random"]
                if budget is None:  # the same wall-clock time as this seed's DARTS search
                    rc = _with(rc, search__time_budget=max(1.0, search_seconds))
                rc = _with(rc, seed=seed)
                reporter.log(f"compare seed {seed}: random search for {rc.search.time_budget:.0f}s")
                r = run(rc, root.path / "random" / f"seed{seed}", reporter=reporter)
                _add(rows["random"], r["test"][metric], r["params"], r["flops"], r["wall_seconds"])
            for name in BASELINES_COMPARED:
                if name in methods:
                    reporter.log(f"compare seed {seed}: {name}")
                    r = train(
                        _with(configs[name], seed=seed),
                        name,
                        root.path / name / f"seed{seed}",
                        reporter=reporter,
                        plans=plans[name],
                    )
                    _add(rows[name], r["test"][metric], r["params"], r["flops"], r["wall_seconds"])
        result = _summarise(task, metric, rows, seeds, time.perf_counter() - t0)
        result["budget"] = {
            "seconds_per_method": budget,
            "search_share": cfg.compare.search_share if budget is not None else None,
            "plans": {
                name: {phase: p.to_dict() for phase, p in ps.items()} for name, ps in plans.items()
            },
        }
        root.write_json("compare.json", result)
    finally:
        root.close()
    return result


BASELINES_COMPARED = ("resnet10", "resnet18", "resnet_tiny")


def _method_configs(cfg: Config, methods: tuple[str, ...]) -> dict[str, Config]:
    """The config each method runs with (before its seed is set): its share of compare.budget."""
    b, share = cfg.compare.budget, cfg.compare.search_share
    configs: dict[str, Config] = {}
    if {"darts", "darts_supernet", "random"} & set(methods):
        configs["darts"] = (
            cfg
            if b is None
            else _with(cfg, search__time_budget=b * share, train__time_budget=b * (1 - share))
        )
    if "random" in methods:
        configs["random"] = _with(
            configs["darts"], search__strategy="random", search__budget=10_000
        )
    for name in BASELINES_COMPARED:
        if name in methods:
            configs[name] = cfg if b is None else _with(cfg, train__time_budget=b)
    return configs


def _preflight(configs: dict[str, Config], reporter):
    """Check every method's config on the data and time its budgeted phases, writing nothing.
    Returns the plans (`scinas.budget.Plan`) per method and phase, reused by every seed, and
    the task."""
    from .context import setup
    from .preflight import check_search, check_train
    from .spaces import load_genotype

    plans: dict[str, dict] = {}
    shown = False
    for name, c in configs.items():
        s = setup(c, reporter if not shown else Reporter(quiet=True))
        shown = True
        try:
            if name in ("darts", "random"):
                check_search(s)
                check_train(s)
            else:
                check_train(s, load_genotype(name))
        except UserError as e:
            if c.compare.budget is None:
                raise
            raise UserError(
                f"--budget {c.compare.budget:g} is too small for {name}: {e} Raise --budget."
            ) from None
        plans[name] = dict(s.plans)
        for phase, p in s.plans.items():
            reporter.log(f"{name}: " + describe(p, phase))
    return plans, s.task


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
    budget = result.get("budget", {}).get("seconds_per_method")
    if budget is not None:
        share = result["budget"]["search_share"]
        lines.insert(
            0,
            f"budget: {budget:g} s per method and seed (darts and random: {share:.0%} search, "
            f"the rest retraining); {result['seeds']} seeds; {result['seconds']:.0f} s in all",
        )
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
