"""`scinas compare`: was NAS worth it on this data?

Per seed, on the same data, config and trainer, each method in `COMPARE_METHODS`:

* ``scinas``: the recommended search for this data and budget (`scinas.recommend`);
* ``hpo``: the same search with the architecture fixed at its start: only the training recipe
  is searched, so the table tells whether the architecture paid, the recipe, or neither;
* ``darts``: the DARTS search, its derived cell retrained from scratch (a normal `scinas run`);
* ``darts_supernet``: that search's continuous supernet itself as the final model;
* ``random``: random search, each candidate trained at low fidelity as the black-box strategies
  do, its best retrained;
* ``resnet10``, ``resnet18``, ``resnet_tiny``: hand-designed baselines, trained like the rest.

One compute budget per method and seed (``compare.budget`` seconds, set by the ``tiny`` preset)
covers everything the method does: loading the data, the checks, searching
(``compare.search_share`` of the budget, planned), retraining and testing. The retraining is
planned after the search, on the network it found, for the time actually left, so a search that
overran its share shortens its own retraining instead of the budget growing. Each method's
``used_seconds`` per seed are in ``compare.json``. Without a budget, DARTS runs its configured
epochs, random search gets that seed's DARTS search time and the ResNets train ``train.epochs``.

A method that cannot use its budget on a seed (say, the network it found is too slow to train
ten steps in the time left) is recorded as failed for that seed, with the reason, and the
compare goes on. ``compare.json`` is rewritten after every finished run (``complete`` tells
whether all are done), and ``scinas compare --resume DIR`` continues an interrupted compare: the
finished runs are kept, an unfinished one starts again from scratch with its full budget.

Every method's test metric over seeds goes into ``compare.json`` with mean, standard deviation,
a 95% Student-t interval, parameters, FLOPs and times, plus Welch's t-test of each method
against ``darts`` and, when it runs, against ``scinas``. Each run is a normal run directory under
``DIR/<method>/seed<k>``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bounds import MAX_REPEATS
from .budget import describe
from .config import Config, check_resumable, check_settings_apply, config_to_dict
from .errors import TrainingDiverged, UserError, unknown
from .progress import Reporter
from .registry import Registry
from .rundir import RunDir, check_out_dir, check_resume, read_json
from .signals import Interrupted
from .stats import ci95, mean_std, welch

RESULT = "compare.json"


def _with(cfg: Config, **changes) -> Config:
    tree = cfg.model_dump()
    for key, value in changes.items():
        node = tree
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return Config.model_validate(tree)


# ----------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """A method of `scinas compare`.

    ``kind``: "search" (a `scinas run` of ``configure(cfg)``), "baseline" (a `scinas train` of the
    named architecture) or "supernet" (the supernet of this seed's ``darts`` run, tested as
    it is). ``configure(cfg) -> Config`` gives the config the method runs with (its seed is set
    per run); with a budget, a search's config carries its search share in
    ``search.time_budget``."""

    name: str
    description: str
    kind: str
    configure: Callable[[Config], Config]


COMPARE_METHODS: Registry[Method] = Registry("compare method")


def _searched(cfg: Config) -> Config:
    """A search method's share of the budget: ``search.time_budget``. The retraining gets the
    time left, planned after the search; its nominal share in ``train.time_budget`` lets the
    checks before the compare refuse a budget too small for the space's stand-in network."""
    b, share = cfg.compare.budget, cfg.compare.search_share
    if b is None:
        return cfg
    return _with(cfg, search__time_budget=b * share, train__time_budget=b * (1 - share))


def _darts(cfg: Config) -> Config:
    return _searched(_with(cfg, search__strategy="darts"))


def _random(cfg: Config) -> Config:
    # without a budget, the search gets the same wall-clock time as the seed's DARTS search
    return _searched(_with(cfg, search__strategy="random", search__budget=10_000))


def _recommended(cfg: Config) -> Config:
    """`scinas.recommend`'s recipe, with its own share of the budget for searching."""
    from .recommend import recommended

    return recommended(cfg)


def _hpo(cfg: Config) -> Config:
    """The recommended search's start network with only its training recipe searched."""
    from .recommend import recommended

    return recommended(cfg, architecture=False)


def _baseline(cfg: Config) -> Config:
    return cfg if cfg.compare.budget is None else _with(cfg, train__time_budget=cfg.compare.budget)


for _m in (
    Method("scinas", "the recommended search for this data and budget", "search", _recommended),
    Method(
        "hpo",
        "the recommended search's start network, its training recipe searched the same way",
        "search",
        _hpo,
    ),
    Method("darts", "DARTS, its derived cell retrained from scratch", "search", _darts),
    Method("darts_supernet", "the DARTS run's trained supernet, as it is", "supernet", _darts),
    Method("random", "random search at low fidelity, its best retrained", "search", _random),
    Method("resnet10", "ResNet-10, hand-designed", "baseline", _baseline),
    Method("resnet18", "ResNet-18, hand-designed", "baseline", _baseline),
    Method("resnet_tiny", "a 78k-parameter ResNet, hand-designed", "baseline", _baseline),
):
    COMPARE_METHODS.register(_m.name, _m)

METHODS = tuple(COMPARE_METHODS.names())
DEFAULT_METHODS = METHODS


def _runs_of(methods: tuple[str, ...], budget: float | None) -> list[str]:
    """The runs to do per seed, in order. darts runs first when a method needs it: its supernet
    is darts_supernet, and without a budget random search gets its search time; when darts is
    not itself compared it still runs (a helper run, not in the table)."""
    order = [m for m in METHODS if m in methods and m != "darts"]
    if (
        "darts" in methods
        or "darts_supernet" in methods
        or (budget is None and "random" in methods)
    ):
        order.insert(0, "darts")
    return order


# ----------------------------------------------------------------------------- the compare


def compare(
    cfg: Config,
    out,
    *,
    seeds: int = 3,
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resume: bool = False,
) -> dict:
    """Run every method on every seed into ``out`` and return (and write) compare.json."""
    reporter = reporter or Reporter()
    methods = tuple(methods)
    if not methods:
        raise UserError("--methods is empty; choose among " + ", ".join(METHODS) + ".")
    for m in methods:
        if m not in COMPARE_METHODS:
            raise unknown("method", m, METHODS)
    if not 1 <= seeds <= MAX_REPEATS:
        raise UserError(
            f"--seeds must be at least 1 and at most {MAX_REPEATS} (scinas' bound on repeats; "
            f"got {seeds})."
        )
    stored = _check_resume(out, cfg, seeds, methods) if resume else None
    if not resume:
        check_out_dir(out, overwrite=overwrite)
    budget = cfg.compare.budget
    runs = _runs_of(methods, budget)
    configs = {m: COMPARE_METHODS.get(m).configure(cfg) for m in runs}
    # validate the data and every method's config (and time the budgeted phases) up front
    plans, task = _preflight(configs, reporter)
    for c in configs.values():
        check_settings_apply(c)
    if budget is not None:
        reporter.log(
            f"compare: {budget:.0f}s per method and seed, for everything it does (searches: "
            f"{cfg.compare.search_share:.0%} of it planned for searching, the rest retraining)"
        )
    from .config import config_to_dict

    if resume:
        root = RunDir.reopen(out)
        done, seconds = stored
        reporter.log(f"resuming {root.path}: {len(done)} runs already finished")
    else:
        root = RunDir.create(
            out,
            kind="compare",
            config={"seeds": seeds, "methods": list(methods), "run": config_to_dict(cfg)},
            overwrite=overwrite,
        )
        done, seconds = [], 0.0
    state = _State(task, methods, seeds, budget, cfg.compare.search_share, plans, done, seconds)
    t0 = time.perf_counter() - state.seconds
    try:
        for seed in range(seeds):
            for name in runs:
                if state.find(name, seed) is not None:
                    continue
                record = _run_one(name, seed, configs[name], plans, root.path, state, reporter)
                state.add(record)
                state.seconds = time.perf_counter() - t0
                root.write_json(RESULT, state.summary(complete=False))
        result = state.summary(complete=True)
        root.write_json(RESULT, result)
    except Interrupted as e:
        cause = str(e).split(";")[0] or "stopped"  # what stopped it, without the run's own hint
        raise Interrupted(
            f"{cause}; compare interrupted; continue it with `scinas compare --resume "
            f"{root.path}` (the finished runs are kept, the interrupted one starts again)"
        ) from None
    finally:
        root.close()
    return result


def _check_resume(out, cfg: Config, seeds: int, methods: tuple[str, ...]):
    """The compare in ``out`` can be continued with this config: returns its finished runs and
    the seconds spent so far."""
    old = check_resume(out, "compare")
    if old.get("seeds") != seeds or tuple(old.get("methods", ())) != methods:
        raise UserError(
            f"{out} compares {', '.join(old.get('methods', []))} over {old.get('seeds')} seeds; "
            "resume it with the same --methods and --seeds (or leave them out)."
        )
    check_resumable(old["run"], config_to_dict(cfg), False)
    path = Path(out) / RESULT
    if not path.is_file():
        return [], 0.0
    saved = read_json(path)
    if saved.get("complete"):
        raise UserError(f"{out} is a finished compare ({RESULT} is complete): nothing to resume.")
    return list(saved.get("runs", [])) + list(saved.get("helper_runs", [])), saved["seconds"]


def _run_one(name, seed, c, plans, root: Path, state, reporter) -> dict:
    """One method on one seed: its record (test metric, sizes, times), or the reason it failed
    when the method could not use its budget."""
    from .pipeline import run, train

    method = COMPARE_METHODS.get(name)
    c = _with(c, seed=seed)
    budget = c.compare.budget
    path = root / name / f"seed{seed}"
    record = {"method": name, "seed": seed, "budget_seconds": budget}
    if path.exists():  # an unfinished run of an interrupted compare: start it again
        shutil.rmtree(path)
    reporter.log(f"compare seed {seed}: {name}")
    t_start = time.perf_counter()
    reserve = state.finish_reserve.get(name, FINISH_RESERVE)
    deadline = None if budget is None else t_start + budget - reserve
    if budget is not None:  # kept after training and testing, for the report and saving
        record["finish_reserve_seconds"] = reserve
    try:
        if method.kind == "supernet":
            darts = state.find("darts", seed)
            if darts is None or darts["status"] != "done":
                raise UserError("the darts run of this seed has no trained supernet")
            metrics, params, flops = _supernet_test(root / "darts" / f"seed{seed}", c)
            r = {"test": metrics, "params": params, "flops": flops}
            r["wall_seconds"] = r["search_seconds"] = darts["search_seconds"]
        elif method.kind == "search":
            if budget is None and name == "random":  # the seed's DARTS search time
                darts = state.find("darts", seed)
                if darts is None or darts["status"] != "done":
                    raise UserError(
                        "without a budget random search gets the time of this seed's darts "
                        "search, which failed"
                    )
                c = _with(c, search__time_budget=max(1.0, darts["search_seconds"]))
            r = run(c, path, reporter=reporter, plans=plans.get(name), deadline=deadline)
        else:
            r = train(c, name, path, reporter=reporter, plans=plans[name], deadline=deadline)
    except (UserError, TrainingDiverged) as e:
        reporter.log(f"compare seed {seed}: {name} failed: {e}")
        return {**record, "status": "failed", "reason": str(e)}
    used = time.perf_counter() - t_start
    if "trained_seconds" in r and budget is not None:
        # what its report and saving cost after training and testing (the trainer keeps the
        # testing's time itself, from its measured validation passes: a ResNet-10 tests
        # Fashion-MNIST's 10,000 images in 12 s, and its first run, keeping 2 s, overran a 120 s
        # budget by 8%)
        state.finish_reserve[name] = max(0.0, used - r["trained_seconds"] - r["test_seconds"])
    return {
        **record,
        "status": "done",
        "value": float(r["test"][state.metric]),
        "test": r["test"],
        "params": r["params"],
        "flops": r["flops"],
        "used_seconds": r["wall_seconds"] if method.kind == "supernet" else used,
        "search_seconds": r.get("search_seconds"),
        **({"search_stopped": stopped} if (stopped := _search_stopped(path)) else {}),
        **({"lineage": lin} if (lin := _lineage(path)) else {}),
    }


def _lineage(run_path: Path) -> dict | None:
    """A lineage search's outcome (`scinas.strategies.lineage`): the recipe it chose and how
    many challengers it accepted or rejected as within noise, or None."""
    metrics = run_path / "metrics.jsonl"
    if not metrics.is_file():
        return None
    for line in metrics.read_text().splitlines():
        if '"lineage_result"' in line and (e := json.loads(line))["event"] == "lineage_result":
            return {k: e[k] for k in ("recipe_changes", "accepted", "rejected", "arch")}
    return None


def _search_stopped(run_path: Path) -> str | None:
    """Why a run's search stopped early (``search.min_candidates``), or None."""
    metrics = run_path / "metrics.jsonl"
    if not metrics.is_file():
        return None
    for line in metrics.read_text().splitlines():
        if '"search_stopped"' in line and (e := json.loads(line))["event"] == "search_stopped":
            from .strategies.fidelity import describe_stop

            return describe_stop(e)
    return None


def _supernet_test(run_path: Path, cfg: Config) -> tuple[dict, int, int]:
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


def _preflight(configs: dict[str, Config], reporter):
    """Check every method's config on the data and time its budgeted phases, writing nothing.
    Returns the plans (`scinas.budget.Plan`) per method and phase, reused by every seed, and
    the task. A budget too small for a method's search is refused here; one too small for the
    network a search finds can only show after the search (that seed's run fails, the rest go
    on)."""
    from .context import setup
    from .preflight import check_search, check_train
    from .spaces import load_genotype

    plans: dict[str, dict] = {}
    shown = False
    for name, c in configs.items():
        method = COMPARE_METHODS.get(name)
        s = setup(c, reporter if not shown else Reporter(quiet=True))
        shown = True
        try:
            if method.kind == "supernet":
                continue
            if method.kind == "search":
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


# ----------------------------------------------------------------------------- the summary

# seconds a method's run keeps for its report and saving, after its testing (whose time the
# trainer keeps from its measured validation passes), until its first run has measured them
FINISH_RESERVE = 2.0


class _State:
    """The finished runs of a compare and their summary (compare.json)."""

    def __init__(self, task, methods, seeds, budget, share, plans, done: list[dict], seconds):
        self.task, self.metric = task, task.primary_metric
        self.methods, self.seeds, self.budget, self.share = methods, seeds, budget, share
        self.plans = plans
        self.runs = [r for r in done if r["method"] in methods]
        self.helper_runs = [r for r in done if r["method"] not in methods]  # darts for others
        self.seconds = seconds
        self.finish_reserve: dict[str, float] = {}

    def find(self, method: str, seed: int) -> dict | None:
        for r in self.runs + self.helper_runs:
            if r["method"] == method and r["seed"] == seed:
                return r
        return None

    def add(self, record: dict) -> None:
        (self.runs if record["method"] in self.methods else self.helper_runs).append(record)

    def summary(self, complete: bool) -> dict:
        methods = {}
        for name in self.methods:
            mine = [r for r in self.runs if r["method"] == name]
            ok = [r for r in mine if r["status"] == "done"]
            values = [r["value"] for r in ok]
            entry = {"values": values, "seeds_done": [r["seed"] for r in ok]}
            entry["failed"] = {str(r["seed"]): r["reason"] for r in mine if r["status"] == "failed"}
            lineages = {str(r["seed"]): r["lineage"] for r in ok if "lineage" in r}
            if lineages:
                entry["lineage"] = lineages
            stopped = {str(r["seed"]): r["search_stopped"] for r in ok if "search_stopped" in r}
            if stopped:
                entry["search_stopped"] = stopped
            if values:
                mean, std = mean_std(values)
                lo, hi = ci95(values)
                used = [r["used_seconds"] for r in ok]
                entry.update(
                    mean=mean,
                    std=std,
                    ci95=[lo, hi],
                    params=ok[-1]["params"],
                    flops=ok[-1]["flops"],
                    used_seconds=sum(used) / len(used),
                    used_seconds_per_seed=used,
                )
                if self.budget is not None and COMPARE_METHODS.get(name).kind != "supernet":
                    entry["used_share"] = [u / self.budget for u in used]
            methods[name] = entry
        return {
            "task": self.task.name,
            "metric": self.metric,
            "higher_is_better": self.task.higher_is_better,
            "seeds": self.seeds,
            "complete": complete,
            "methods": methods,
            "vs_darts": _tests(methods, "darts"),
            "vs_scinas": _tests(methods, "scinas"),
            "seconds": self.seconds,
            "budget": {
                "seconds_per_method": self.budget,
                "search_share": self.share if self.budget is not None else None,
                "plans": {
                    name: {phase: p.to_dict() for phase, p in ps.items()}
                    for name, ps in self.plans.items()
                },
            },
            "runs": self.runs,
            "helper_runs": self.helper_runs,
        }


def _tests(methods: dict, reference: str) -> dict:
    """Welch's t-test of every method against ``reference`` (both with values)."""
    if not methods.get(reference, {}).get("values"):
        return {}
    base = methods[reference]
    tests = {}
    for name, m in methods.items():
        if name != reference and m["values"]:
            t, p = welch(m["values"], base["values"])
            tests[name] = {
                "difference": m["mean"] - base["mean"],
                "t": t,
                "p": p,
                "significant": p < 0.05,
            }
    return tests


def table(result: dict) -> str:
    """The compare as a text table (the CLI prints it)."""
    metric = result["metric"]
    reference = "scinas" if result.get("vs_scinas") else "darts"
    tests = result.get(f"vs_{reference}", {})
    lines = [
        f"{'method':<15} {metric + ' mean':>12} {'std':>8} {'95% CI':>19} {'params':>10} "
        f"{'used s':>8}  vs {reference}"
    ]
    budget = result.get("budget", {}).get("seconds_per_method")
    if budget is not None:
        share = result["budget"]["search_share"]
        lines.insert(
            0,
            f"budget: {budget:g} s per method and seed, everything included (darts and "
            f"random plan {share:.0%} of it for searching, scinas its recipe's share); "
            f"{result['seeds']} seeds; {result['seconds']:.0f} s in all",
        )
    for name, m in result["methods"].items():
        failed = m.get("failed", {})
        if not m["values"]:
            lines.append(f"{name:<15} {'failed on every seed':>41}")
        else:
            vs = tests.get(name)
            note = ""
            if vs:
                sig = ", significant" if vs["significant"] else ""
                note = f"{vs['difference']:+.4f} (p={vs['p']:.3f}{sig})"
            params = f"{m['params']:,}" if m["params"] else "-"
            lines.append(
                f"{name:<15} {m['mean']:>12.4f} {m['std']:>8.4f} "
                f"[{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}] {params:>10} "
                f"{m['used_seconds']:>8.1f}  {note}"
            )
        for seed, reason in failed.items():
            lines.append(f"  {name} seed {seed} failed: {reason}")
        for seed, why in m.get("search_stopped", {}).items():
            lines.append(f"  {name} seed {seed}: {why}")
        for seed, lin in m.get("lineage", {}).items():
            recipe = ", ".join(f"{k}={v}" for k, v in lin["recipe_changes"].items()) or "unchanged"
            lines.append(
                f"  {name} seed {seed}: {lin['accepted']} challengers accepted, "
                f"{lin['rejected']} rejected as not better beyond noise; recipe {recipe}"
            )
    if not result.get("complete", True):
        lines.append("(unfinished: continue with scinas compare --resume DIR)")
    return "\n".join(lines)
