"""`scinas compare`: was NAS worth it on this data?

Per seed, on the same data, config and trainer, each method in `COMPARE_METHODS`:

* ``scinas``: the recommended search for this data and budget (`scinas.recommend`);
* ``hpo``: the same search with the architecture fixed at its start: only the training recipe
  is searched, so the table tells whether the architecture paid, the recipe, or neither;
* ``darts``: the DARTS search, its derived cell retrained from scratch (a normal `scinas run`);
* ``darts_supernet``: that search's continuous supernet itself as the final model;
* ``random``: random search, each candidate trained at low fidelity as the black-box strategies
  do, its best retrained;
* ``resnet10``, ``resnet18``, ``resnet_tiny``: hand-designed baselines, trained like the rest;
* ``resnet1d`` and ``minirocket`` (series, named explicitly): the deep and the non-deep standard
  for series classification (`scinas.minirocket`: fixed features and a ridge model).

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
from pathlib import Path

from .bounds import MAX_REPEATS
from .budget import describe
from .compare_methods import (  # noqa: F401
    COMPARE_METHODS,
    DEFAULT_METHODS,
    METHODS,
    Method,
    _runs_of,
    _with,
    baseline_arch,
)
from .compare_summary import FINISH_RESERVE, _State, _tests, table  # noqa: F401
from .config import Config, check_resumable, check_settings_apply, config_to_dict
from .errors import TrainingDiverged, UserError, unknown
from .progress import Reporter
from .rundir import RunDir, check_out_dir, check_resume, read_json
from .signals import STOP, Interrupted

RESULT = "compare.json"


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
    check_settings_apply(cfg)  # the methods' configs are rebuilt: the user's is the one to ask
    if budget is not None:
        reporter.log(
            f"compare: {budget:.0f}s per method and seed, for everything it does (searches: "
            f"{cfg.compare.search_share:.0%} of it planned for searching, the rest retraining)"
        )

    root = None
    try:
        with STOP.critical():  # a stop waits until the directory is locked and in hand
            if resume:
                root = RunDir.reopen(out)
            else:
                config = {"seeds": seeds, "methods": list(methods), "run": config_to_dict(cfg)}
                root = RunDir.create(out, kind="compare", config=config, overwrite=overwrite)
        if resume:
            done, seconds = stored
            reporter.log(f"resuming {root.path}: {len(done)} runs already finished")
        else:
            done, seconds = [], 0.0
        state = _State(task, methods, seeds, budget, cfg.compare.search_share, plans, done, seconds)
        t0 = time.perf_counter() - state.seconds
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
        if root is None:
            raise
        cause = str(e).split(";")[0] or "stopped"  # what stopped it, without the run's own hint
        raise Interrupted(
            f"{cause}; compare interrupted; continue it with `scinas compare --resume "
            f"{root.path}` (the finished runs are kept, the interrupted one starts again)"
        ) from None
    finally:
        if root is not None:
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
        elif method.kind == "features":
            from .context import setup
            from .minirocket import fit_and_test

            r = fit_and_test(setup(c, Reporter(quiet=True)), path, reporter)
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
            arch = baseline_arch(name, c)
            r = train(c, arch, path, reporter=reporter, plans=plans[name], deadline=deadline)
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
        # train.augment=auto's choice (a lineage's recipe is in its record)
        **({"recipe": r["recipe"]} if r.get("recipe") and not lin else {}),
    }


def _lineage(run_path: Path) -> dict | None:
    """A lineage search's outcome (`scinas.strategies.lineage`): the recipe it chose and how
    many challengers it accepted or rejected as within noise, or None."""
    metrics = run_path / "metrics.jsonl"
    if not metrics.is_file():
        return None
    for line in metrics.read_text().splitlines():
        if '"lineage_result"' in line and (e := json.loads(line))["event"] == "lineage_result":
            out = {k: e[k] for k in ("recipe_changes", "accepted", "rejected", "arch")}
            recipe = run_path / "recipe.json"  # the test-time views the trained network kept
            if recipe.is_file():
                out["recipe_changes"] = json.loads(recipe.read_text())
            return out
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

    plans: dict[str, dict] = {}
    shown = False
    for name, c in configs.items():
        method = COMPARE_METHODS.get(name)
        s = setup(c, reporter if not shown else Reporter(quiet=True))
        shown = True
        if method.kind == "features":  # no network, nothing planned: what it cannot take
            from .minirocket import check

            check(s)
            plans[name] = {}
            continue
        try:
            if method.kind == "supernet":
                continue
            if method.kind == "search":
                check_search(s)
                check_train(s)
            else:
                check_train(s, baseline_arch(name, c))
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
