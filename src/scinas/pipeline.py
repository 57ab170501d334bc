"""The verbs: `run` (search, then train the found architecture), `search`, `train`, `evaluate`.

`run` shows the whole flow on one screen: data -> task -> space -> strategy -> architecture ->
network -> results. Each verb validates all of its input (data, config, architecture, network
sizes, time budgets) before it creates the run directory, so bad input leaves nothing behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from . import allocator, parallel
from .budget import TIMINGS_ONLY, budget_plan, describe, plan, save_plan
from .checkpoint import LOGS, Checkpointer
from .config import Config, check_settings_apply
from .context import load_data, setup
from .errors import UserError
from .export import load_trained
from .fit import Inheritance, auto_augment, auto_recipe, fit, plan_training, subset, trainer_for
from .inherit import inherits, refuse_without_search, train_section
from .lr_finder import auto_train, log_event
from .placement import Placement
from .preflight import check_search
from .progress import Reporter
from .run_context import SearchContext
from .run_end import (
    final_results,
    finish,
    format_metrics,
    run_recipe,
    supernet_results,
    trained_supernet,
    write_run_report,
)
from .run_start import begin, working
from .rundir import (
    RunDir,
    read_json,
)
from .spaces import load_genotype, space_of
from .strategies import STRATEGIES, SearchResult, create_strategy
from .symmetry import symmetrised
from .tasks import make_task
from .train import predict

SEARCH_DONE = "search_result.json"


def _search(s: SearchContext, run: RunDir | None) -> SearchResult:
    """Run the strategy (or, resuming after it finished, read what it found)."""
    finished = None
    if s.resume and run is not None and run.file(SEARCH_DONE).is_file():
        finished = (load_genotype(run.path), read_json(run.file(SEARCH_DONE)))
    finished = parallel.from_rank0(finished)  # DDP: process 0 has the run directory
    if finished is not None:
        genotype, done = finished
        s.reporter.log("search already finished: using its genotype")
        return SearchResult(
            genotype=genotype,
            val_metrics=done["val"],
            seconds=done["seconds"],
            recipe=done.get("recipe"),
            ending=done.get("ending") or ("supernet" if s.cfg.search.keeps_supernet else "retrain"),
        )
    result = create_strategy(s.cfg.search.strategy).search(replace(s, run=run))
    if run is not None:
        result.genotype.to_json(run.file("genotype.json"))
        if result.model is not None:
            run.save_state("supernet.pt", result.model)
        run.write_json(
            SEARCH_DONE,
            {
                "genotype": result.genotype.to_dict(),
                "val": result.val_metrics,
                "seconds": result.seconds,
                "recipe": result.recipe,
                "ending": result.ending,
                "logs": {name: _size(run.file(name)) for name in LOGS},
            },
        )
        if result.recipe is not None:
            run.write_json("recipe.json", result.recipe)
        Checkpointer(run, "search").clear()
    s.reporter.log(f"searched genotype: {result.genotype.to_dict()}")
    return result


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _train(
    s: SearchContext,
    genotype,
    run: RunDir | None,
    deadline: float | None = None,
    timed: bool = False,
    supernet: torch.nn.Module | None = None,
    confirm_views: bool = False,
) -> tuple[torch.nn.Module, dict]:
    """Train the discrete network from scratch (or, ``train.init=supernet``, from ``supernet``'s
    weights: `scinas.inherit`), then evaluate it once on the test split. ``train.lr=auto``: a
    range test first (`scinas.lr_finder`), its seconds off a time budget.

    ``deadline`` (a `time.perf_counter` instant): training is planned to end then, whatever the
    steps before it cost (`scinas compare` gives each method one budget for everything it
    does); the plan takes the network's timings from the checks before the run when ``timed``
    (they timed this very architecture), else times it now. ``confirm_views``: train.tta came
    from the search, and each view is kept only if it helps the trained network
    (`run_end.confirmed_views`)."""
    cfg, t, data, task = s.cfg, train_section(s.cfg), s.data, s.task
    t_start = time.perf_counter()
    # a run's deadline (compare) covers the testing after training too: the trainer keeps the
    # time of this many validation passes, as its epochs measure them, for the test split
    finish_passes = len(data.test) / len(data.val) if deadline is not None and len(data.val) else 0
    # train.time_budget: the phase (range test included) ends at t_start + budget; the epochs
    # planned from a few timed steps are re-planned after each one from the measured epochs
    # (`scinas.train.Trainer.fit_to_deadline`): the steps slow down as the run goes on (a
    # small-preset training overran its 1,380 s by 18% on 2 cores before this)
    budget_end = None if t.time_budget is None else t_start + t.time_budget
    x, y = subset(data.train.x, data.train.y, t.max_samples, cfg.seed)
    inherit = None if supernet is None else Inheritance(s, genotype, supernet, x, y, t.batch_size)
    t = auto_train(
        replace(s, run=run),
        lambda tt: trainer_for(
            s, genotype, tt, x, y, aug_seed=0, init=inherit.start if inherit else None
        ),
        t,
    )
    if deadline is not None:
        p = _plan_to_deadline(s, genotype, t, len(x), deadline, timed)
        save_plan(run, "train", p)
        s.reporter.log(describe(p, "train"))
        t = t.model_copy(update={"epochs": p.epochs, "steps_per_epoch": p.steps_per_epoch})
    elif t.time_budget is not None:
        p = budget_plan(s, run, "train", lambda: plan_training(s, genotype, t, len(x)))
        s.reporter.log(describe(p, "train"))
        t = t.model_copy(update={"epochs": p.epochs, "steps_per_epoch": p.steps_per_epoch})
    if len(data.input_shape) == 3:  # images (series have no cutout)
        H, W = data.input_shape[1:]
        if min(t.cutout, min(H, W) // 2) < t.cutout and (H, W) != (1, 1):  # vectors: no cutout
            s.reporter.log(
                f"cutout {t.cutout} is more than half the image side: using {min(H, W) // 2}"
            )
    pm = task.primary_metric

    def on_epoch(e):
        if run is not None:
            run.log_event(
                {
                    "event": "train_epoch",
                    "epoch": e.epoch,
                    "lr": e.lr,
                    "train": e.train,
                    "val": e.val,
                    "seconds": e.seconds,
                    "epochs": e.epochs,  # planned when it ended (a deadline re-plans them)
                }
            )
        s.reporter.log(
            f"train epoch {e.epoch}/{e.epochs or t.epochs}: train loss {e.train['loss']:.4f} {pm} "
            f"{e.train[pm]:.4f} | val loss {e.val['loss']:.4f} {pm} {e.val[pm]:.4f} | "
            f"{e.seconds:.1f}s"
        )

    what = space_of(genotype).network_summary(genotype, t)
    s.reporter.log(f"train: {what}, {t.epochs} epochs on {len(x)} images")
    ckpt = Checkpointer(run, "train", s.reporter)
    # not when resuming a training: the time it spent before is not known here (under DDP
    # process 0 alone sees the checkpoints, and every process must agree on a deadline)
    if (
        deadline is None
        and budget_end is not None
        and not parallel.from_rank0(bool(s.resume and ckpt.exists()))
    ):
        deadline = budget_end
    if s.resume and run is not None and not ckpt.exists():
        # killed before the first training checkpoint: cut the logs back to the phase start
        done = run.file(SEARCH_DONE)
        ckpt.truncate_logs(
            read_json(done)["logs"] if done.is_file() else {name: 0 for name in LOGS}
        )
    from .strategies.fidelity import winner_state  # a multi-fidelity search's winner

    auto = auto_augment(s, t, run)
    net, history = fit(
        s,
        genotype,
        t,
        x,
        y,
        on_epoch=on_epoch,
        track=s.reporter.track,
        checkpointer=ckpt,
        init_state=winner_state(s, run),
        init=inherit.score if inherit else None,
        on_event=lambda event: log_event(replace(s, run=run), event),
        deadline=deadline,
        finish_passes=finish_passes,
        # the views testing averages: train.tta (set, or found by the search), else auto's
        finish_views=lambda: len(t.tta) if t.tta else len(auto.symmetries) if auto else 0,
        auto_augment=auto,
    )
    train_seconds = time.perf_counter() - t_start
    if auto is not None and auto.symmetries and not t.tta:  # test-time views, if they help
        s = replace(
            s, cfg=s.cfg.model_copy(update={"train": t.model_copy(update={"tta": auto.symmetries})})
        )
        confirm_views = True
    results = final_results(s, net, genotype, run, history[-1].val, confirm_views=confirm_views)
    if auto is not None:
        results.update(auto_recipe(auto, results, run))
    results["train_seconds"] = train_seconds
    results["test_seconds"] = time.perf_counter() - t_start - train_seconds
    results["init"] = t.init
    if inherit is not None:
        results["inherited"] = inherit.record()
    results["trained_at"] = t_start + train_seconds  # perf_counter instant, for finish
    return net, results


def _plan_to_deadline(s: SearchContext, genotype, t, n_train: int, deadline: float, timed):
    """The training plan that ends at ``deadline``: with the timings of the plan the checks
    made (``timed``: on this very architecture), else freshly timed ones."""
    p = s.plans.get("train") if timed else None
    if p is None:
        p = plan_training(s, genotype, t.model_copy(update={"time_budget": TIMINGS_ONLY}), n_train)
    left = deadline - time.perf_counter()
    try:
        return plan(left, p.step_seconds, p.eval_seconds, p.full_epoch_steps, "train.time_budget")
    except UserError:
        raise UserError(
            f"{max(0.0, left):.0f} s of the run's budget are left to train the network found, "
            f"and one step of it takes {p.step_seconds:.2f} s (a validation pass "
            f"{p.eval_seconds:.2f} s): fewer than 10 steps. Give a larger budget, or search "
            "for less of it."
        ) from None


def _retrain(s: SearchContext, searched: SearchResult, run: RunDir | None, deadline) -> dict:
    """The found architecture trained from scratch (or from the supernet's weights, with
    train.init=supernet) and tested once."""
    supernet = trained_supernet(s, searched, run) if inherits(s.cfg) else None
    confirm = "tta" in (searched.recipe or {})  # views the search found, not the user's
    return _train(s, searched.genotype, run, deadline, supernet=supernet, confirm_views=confirm)[1]


def _elsewhere(s: SearchContext, searched: SearchResult, run: RunDir | None, deadline) -> dict:
    """A shared study's worker that did not complete the last trial: another one retrains."""
    s.reporter.log("no retrain here: the worker that completed the last trial runs it")
    return {
        "task": s.task.name,
        "dataset": s.data.name,
        "genotype": searched.genotype.to_dict(),
        "final_model": "retrained by another worker of the study",
    }


#: How a run ends, by `SearchResult.ending` (the strategy's say).
ENDINGS = {
    "retrain": _retrain,
    "supernet": lambda s, searched, run, _deadline: supernet_results(s, searched, run),
    "elsewhere": _elsewhere,
}


def run(
    cfg: Config,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resume: bool = False,
    allow_changes: bool = False,
    plans: dict | None = None,
    deadline: float | None = None,
) -> dict:
    """Search a cell, derive its genotype, train it from scratch and evaluate it on the test set.

    ``resume=True`` continues the run in ``out`` from its checkpoints (same config; with
    ``allow_changes`` the harmless fields in `config.HARMLESS_CHANGES` may differ). ``plans``
    hands in time-budget plans already measured (`scinas.budget`, as `scinas compare` does);
    ``deadline`` (a `time.perf_counter` instant) plans the final training to end then."""
    t0 = time.perf_counter()
    # data -> task: loaded, checked and split (context.setup); the space and the strategy check
    # they can run on it, the final network that it fits its budget (preflight); only then is
    # the run directory created
    s, run_dir = begin(
        cfg,
        out,
        overwrite,
        reporter,
        "run",
        search=True,
        train=not cfg.search.keeps_supernet,  # search.derive=supernet: no retraining
        resume=resume,
        allow_changes=allow_changes,
        plans=plans,
    )
    with working(run_dir):
        # space -> strategy -> architecture (genotype.json)
        searched = _search(s, run_dir)
        if searched.recipe:  # the training recipe the search chose (`strategies.lineage`)
            train = s.cfg.train.model_copy(update=searched.recipe)
            s = replace(s, cfg=s.cfg.model_copy(update={"train": train}))
            s.reporter.log(
                "recipe: " + ", ".join(f"train.{k}={v}" for k, v in searched.recipe.items())
            )
        # architecture -> network -> results, as the strategy says the run ends
        results = ENDINGS[searched.ending](s, searched, run_dir, deadline)
        recipe = run_recipe(searched.recipe, results, run_dir)
        results.update(
            recipe=recipe,
            search_seconds=searched.seconds,
            supernet={"val": searched.val_metrics},
            device=str(s.device),
            processes=parallel.world(),
        )
        return finish(run_dir, results, t0)


def search(
    cfg: Config,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resume: bool = False,
    allow_changes: bool = False,
):
    """Search only: writes the genotype (and the supernet) to the run directory."""
    t0 = time.perf_counter()
    s, run_dir = begin(
        cfg,
        out,
        overwrite,
        reporter,
        "search",
        search=True,
        train=False,
        resume=resume,
        allow_changes=allow_changes,
    )
    with working(run_dir):
        searched = _search(s, run_dir)
        if run_dir is None:  # DDP: not process 0
            return searched.genotype
        run_dir.write_json(
            "results.json",
            {
                "task": s.task.name,
                "dataset": s.data.name,
                "genotype": searched.genotype.to_dict(),
                "supernet": {"val": searched.val_metrics},
                "search_seconds": searched.seconds,
                "wall_seconds": time.perf_counter() - t0,
                "device": str(s.device),
                "processes": parallel.world(),
            },
        )
        write_run_report(run_dir)
        return searched.genotype


def worker(url: str, study: str, make_config, reporter: Reporter | None = None) -> dict:
    """One more worker on the shared black-box study ``study`` in the storage ``url``: it
    evaluates trials until the study's budget is complete; no run directory, no retrain.

    ``make_config(base)`` builds the config from the study's stored one (``base``; None for a
    new study) and the options given now (`scinas.workers` checks that they agree). Returns a
    summary: the study's completed trials, those this worker completed, the best one."""
    import optuna

    from .strategies.blackbox import best_trial, completed
    from .workers import check_url, journal_path, make_storage, stored_config

    check_url(url)
    exists = not url.startswith("journal:") or journal_path(url).exists()
    base = stored_config(url, study) if exists else None
    cfg = make_config(base)
    if base is None and STRATEGIES.get(cfg.search.strategy).kind != "black-box":
        raise UserError(
            f"there is no study {study!r} in {url} yet. Start it with `scinas search --strategy "
            f"random --storage URL --study {study} ...`, or give --strategy (a black-box one: "
            + ", ".join(n for n in STRATEGIES if STRATEGIES.get(n).kind == "black-box")
            + ") and its settings here."
        )
    t0 = time.perf_counter()
    s = setup(cfg, reporter)
    check_search(s)  # the strategy's preflight compares this worker with the study
    check_settings_apply(cfg)
    result = create_strategy(cfg.search.strategy).search(s)
    shared = optuna.load_study(study_name=study, storage=make_storage(url))
    best = best_trial(shared)
    return {
        "study": study,
        "completed": len(completed(shared)),
        "budget": cfg.search.budget,
        "by_this_worker": [e["trial"] for e in result.history],
        "best": {"trial": best.number, "value": best.value, "arch": best.user_attrs["arch"]},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def train(
    cfg: Config,
    genotype,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resume: bool = False,
    allow_changes: bool = False,
    plans: dict | None = None,
    deadline: float | None = None,
) -> dict:
    """Train a given architecture (an architecture object of any space, a JSON file, a run
    directory, or a short form such as a published name or a NAS-Bench-201 string) and evaluate
    it. Resuming, ``genotype`` may be None (the
    run's own genotype.json)."""
    t0 = time.perf_counter()
    refuse_without_search(cfg)  # train.init=supernet: no supernet here
    if genotype is None:
        if not resume:
            raise UserError("train needs --genotype (a file, run directory or published name).")
        genotype = out
    if isinstance(genotype, str | os.PathLike):
        genotype = load_genotype(genotype)
    s, run_dir = begin(
        cfg,
        out,
        overwrite,
        reporter,
        "train",
        search=False,
        train=True,
        arch=genotype,
        resume=resume,
        allow_changes=allow_changes,
        plans=plans,
    )
    with working(run_dir):
        if run_dir is not None:  # (DDP: process 0 writes)
            if resume and load_genotype(run_dir.path).to_dict() != genotype.to_dict():
                raise UserError(
                    f"{run_dir.path} trains another genotype; resume it without --genotype."
                )
            genotype.to_json(run_dir.file("genotype.json"))
        _, results = _train(s, genotype, run_dir, deadline, timed=True)
        results["device"] = str(s.device)
        return finish(run_dir, results, t0)


def evaluate(
    run_dir: str | os.PathLike,
    data: str | None = None,
    *,
    data_dir: str | None = None,
    split: str = "test",
    reporter: Reporter | None = None,
) -> dict:
    """Evaluate a trained run on a split of its own dataset, or of another dataset of the same
    shape (normalised with the training statistics of the run)."""
    reporter = reporter or Reporter()
    allocator.tune()  # a split's batches reuse their blocks, as a run's testing does
    net, info, cfg = load_trained(run_dir)
    dataset = load_data(cfg, dataset=data, data_dir=data_dir, task=info["task"])
    if tuple(dataset.input_shape) != tuple(info["input_shape"]):
        raise UserError(
            f"the data's images are {tuple(dataset.input_shape)} but the network was "
            f"trained on {tuple(info['input_shape'])}."
        )
    if split not in ("train", "val", "test"):
        raise UserError(f"unknown split '{split}': use train, val or test.")
    task = make_task(
        info["task"],
        info["num_outputs"],
        info["target_mean"],
        info["target_std"],
        loss=cfg.data.loss,
        output_groups=cfg.data.output_groups,
    )
    part = getattr(dataset, split)
    place = Placement(torch.device("cpu"), False, info["mean"], info["std"])  # as trained
    model = symmetrised(place.module(net), cfg.train.tta, task)  # test-time views, if any
    outputs, targets = predict(model, place.batches(part.x, part.y, 256))
    metrics = task.metrics(outputs, targets)
    reporter.log(f"{split} ({len(part)} samples of {dataset.name}): {format_metrics(metrics)}")
    return {"split": split, "dataset": dataset.name, "n": len(part), **metrics}
