"""Black-box strategies: random search, regularised evolution, TPE and REINFORCE, through optuna.

Each architecture is a set of categorical decisions (a `DecisionSpace`, from the search space);
a strategy is an optuna sampler (registered with `register_black_box`), and the search is an
ask/tell loop against a study in a storage (by default an SQLite file in the run directory). A
search that stops for any reason resumes from its storage: finished trials are kept, and the loop
runs until ``budget`` trials are complete. The same study can take several workers pointing at
one storage URL.

The objective differs by setting: on real data it trains the discrete network for a low-fidelity
budget and scores it on the validation split (`scinas.fit.low_fidelity_objective`); in the
tabular benchmark it looks the architecture's 12-epoch validation accuracy up (`scinas.bench`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import optuna
from optuna.trial import TrialState
from pydantic import Field, model_validator

from .. import hardware
from ..bounds import MAX_CANDIDATES, MAX_EPOCHS, MAX_REPEATS, MAX_SECONDS
from ..errors import UserError
from ..fit import low_fidelity_objective
from ..proxies import WarmStartSettings
from ..run_context import SearchContext
from ..signals import STOP
from ..spaces import SPACES, DecisionSpace, arch_from_dict
from ..workers import (
    SharedStudy,
    check_shared_storage,
    compare_signature,
    make_storage,
    signature,
    study_name,
)
from . import fidelity
from .base import STRATEGIES, SearchResult, check_derive
from .samplers import RegularizedEvolutionSampler, ReinforceSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

# ----------------------------------------------------------------------------- studies


def open_study(
    storage: str | None,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    *,
    direction: str | list[str] = "maximize",
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create or load a study (a list of directions: multi-objective); a storage that cannot be
    opened is a UserError."""
    many = {"directions": direction} if isinstance(direction, list) else {"direction": direction}
    try:
        return optuna.create_study(
            storage=storage,
            study_name=name,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
            **many,
        )
    except ValueError as e:  # e.g. the stored study's direction differs
        raise UserError(f"optuna storage {storage}: {e}") from None
    except Exception as e:  # SQLAlchemy / file errors: unopenable URL, unwritable path
        raise UserError(
            f"cannot open the optuna storage {storage!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}). Give a URL optuna can open, e.g. "
            "sqlite:///path/to/study.db, or leave search.storage unset for a file in the run "
            "directory."
        ) from None


def check_storage_url(url: str) -> None:
    """Validate a storage URL before anything is written (opens it read-only where possible)."""
    if url.startswith("sqlite:///"):
        _check_sqlite_file(url, Path(url[len("sqlite:///") :].split("?", 1)[0]).expanduser())
        return
    if url.startswith("sqlite:"):
        raise UserError(
            f"cannot open the optuna storage {url!r}: SQLite URLs look like "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db."
        )
    if "://" not in url:
        raise UserError(
            f"search.storage {url!r} is not a URL; use e.g. sqlite:///study.db, or a "
            "database URL such as postgresql://user@host/db."
        )
    try:
        optuna.storages.get_storage(url)
    except Exception as e:
        raise UserError(
            f"cannot open the optuna storage {url!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]})."
        ) from None


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(url: str, path: Path) -> None:
    """The file of a SQLite URL can be opened as a database: its folder exists and is writable,
    and it is absent, empty, or a SQLite database (not a directory, not some other file)."""
    where = f"cannot open the optuna storage {url!r}"
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UserError(
            f"{where}: the folder {parent} does not exist. "
            "Create it first or give another search.storage URL."
        )
    if path.is_dir():
        raise UserError(
            f"{where}: {path} is a directory; the URL must name the database file "
            f"(e.g. sqlite:///{path / 'study.db'})."
        )
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise UserError(f"{where}: {path} cannot be read ({e.strerror}).") from None
        if head and head != SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise UserError(
                f"{where}: {path} exists but is not a SQLite database. Give a new file name "
                "(it is created) or an existing study's database."
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"{where}: {path} is not writable.")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"{where}: the folder {parent} is not writable, so the database cannot be created."
        )


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def counts(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards the budget: complete, or stopped early by a pruner (not
    those over a hardware limit, also PRUNED but never trained: `scinas.hardware`)."""
    done = t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    return done and "infeasible" not in t.user_attrs


def evaluated(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the budget (`counts`)."""
    return [t for t in study.get_trials(deepcopy=False) if counts(t)]


def run_study(
    study: optuna.Study,
    space: DecisionSpace,
    objective: Callable[[object], tuple[float, dict]],
    budget: int,
    on_trial: Callable[[optuna.trial.FrozenTrial, object, dict], None] | None = None,
    time_budget: float | None = None,
    shared: SharedStudy | None = None,
    stop: Callable[[optuna.Study, float | None], bool] | None = None,
) -> None:
    """Ask/tell until ``budget`` trials are complete (counting those already in the study), or,
    with ``time_budget`` seconds, until that much time has passed (at least one trial runs).
    ``shared`` (a `scinas.workers.SharedStudy`): other workers share the study; trials are
    claimed so that exactly ``budget`` complete, and each keeps a heartbeat while it runs.

    ``objective(arch) -> (score, info)``; ``info`` is stored as trial user attributes. An
    exception fails the trial in the storage and propagates. ``stop(study, deadline)``, asked
    before each new trial of a search of its own (not shared), ends it early when true
    (`scinas.strategies.fidelity.affordability_check`).
    """
    t_start = time.perf_counter()
    deadline = None if time_budget is None else t_start + time_budget
    while True:
        trial = None
        try:
            if shared is not None:  # several workers: the claim rule of scinas.workers
                trial = shared.claim(deadline)  # a stop inside never leaves a trial running
                if trial is None:
                    break
            else:
                if len(evaluated(study)) >= budget or (
                    deadline is not None and completed(study) and time.perf_counter() >= deadline
                ):
                    break
                if stop is not None and stop(study, deadline):
                    break
                with STOP.critical():
                    trial = study.ask()
            arch = space.suggest(trial)
        except BaseException:
            if trial is not None:  # never left running in the storage by a stop
                study.tell(trial, state=TrialState.FAIL)
            raise
        t0 = time.perf_counter()
        with STOP.critical():  # a stop from here on fails the trial (the except below)
            running = fidelity.CURRENT_TRIAL.set(trial)  # the objective's epochs report to it
            limit = fidelity.DEADLINE.set(deadline)  # and stop when the search's time is up
        try:
            with shared.beating(trial) if shared is not None else contextlib.nullcontext():
                value, info = objective(arch)
        except hardware.Infeasible as e:  # over a hardware limit: never trained, not counted
            with STOP.critical():
                hardware.tell_infeasible(study, trial, arch, e)
            continue
        except optuna.TrialPruned:  # stopped at a rung (scinas.strategies.fidelity)
            with STOP.critical():
                trial.set_user_attr("arch", arch.to_dict())
                trial.set_user_attr("seconds", time.perf_counter() - t0)
                study.tell(trial, state=TrialState.PRUNED)
                if shared is not None:
                    shared.mine.append(trial.number)
            continue
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            fidelity.CURRENT_TRIAL.reset(running)
            fidelity.DEADLINE.reset(limit)
        with STOP.critical():  # the trained result is recorded whole before a stop
            if shared is not None and shared.lost(trial):
                continue
            trial.set_user_attr("arch", arch.to_dict())
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            for k, v in info.items():
                trial.set_user_attr(k, v)
            study.tell(trial, value)
            if shared is not None:
                shared.mine.append(trial.number)
        if on_trial is not None:
            on_trial(study.trials[trial.number], arch, info)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best complete trial by the first objective; ties go to the better later objectives
    (multi-objective: so the choice lies on the Pareto front), then to the earliest."""
    trials = sorted(completed(study), key=lambda t: t.number)
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]

    def key(t):
        return (*(s * v for s, v in zip(signs, t.values, strict=True)), -t.number)

    return max(trials, key=key)


# ----------------------------------------------------------------------------- real data


def decision_space(s) -> DecisionSpace:
    """The decision space of a search section ``s`` (its space's decisions)."""
    return SPACES.get(s.space).decisions(s)


class BlackBoxStrategy:
    """A black-box search on real data: each candidate is trained from scratch for
    ``search.eval_epochs`` epochs on ``search.eval_fraction`` of the training split and scored by
    the task's primary metric on the validation split, the candidates proposed by the entry's
    sampler."""

    def __init__(self, entry: BlackBox):
        self.entry = entry
        self.name = entry.name

    def preflight(self, ctx: SearchContext) -> None:
        sc = ctx.cfg.search
        if sc.storage:
            if sc.storage.startswith("sqlite"):
                check_storage_url(sc.storage)
            # driver, server, and the study's search space and objective
            name = study_name(sc, ctx.cfg.seed)
            check_shared_storage(sc.storage, name, _signature(ctx))
        hardware.preflight(ctx)  # a limit no network of the space meets
        known_starts(sc)  # search.start_from: architectures of this space, in its choices
        from .warmstart import preflight as proxies_preflight

        proxies_preflight(ctx, decision_space(sc))  # a proxy the task's networks cannot feed
        n_eval = len(ctx.data.train) * sc.eval_fraction
        if sc.max_samples is not None:
            n_eval = min(n_eval, sc.max_samples)
        if n_eval < 2 * ctx.data.num_outputs and ctx.task.name == "classification":
            raise UserError(
                f"search.eval_fraction={sc.eval_fraction} leaves {int(n_eval)} training images "
                f"per candidate for {ctx.data.num_outputs} classes: too few to train anything. "
                "Raise search.eval_fraction (or search.max_samples)."
            )

    def search(self, ctx: SearchContext) -> SearchResult:
        s, cfg = ctx.cfg.search, ctx.cfg
        t_start = time.perf_counter()
        space = decision_space(s)
        storage = s.storage
        if storage is None and ctx.run is not None:
            storage = f"sqlite:///{(ctx.run.path / 'study.db').resolve()}"
        study = open_study(
            storage if s.storage is None else make_storage(s.storage, s),
            study_name(s, cfg.seed),
            self.entry.make_sampler(s, cfg.seed),
            direction=hardware.directions(s, ctx.task.higher_is_better),
            pruner=fidelity.make_pruner(s),
        )
        shared = None
        if s.storage is not None:  # other workers may share the study (scinas.workers)
            mine = _signature(ctx)
            for key, value in mine.items():
                if key not in study.user_attrs:
                    study.set_user_attr(key, value)
            # again, now that it is stored: a worker started at the same time may differ
            compare_signature(study.study_name, s.storage, study.user_attrs, mine)
            study.sampler.reseed_rng()  # seeded samplers would draw the same as other workers
            shared = SharedStudy(study, s.budget, ctx.reporter, counts=counts)
        if ctx.resume and ctx.run is not None:
            _reconcile(study, ctx, private=s.storage is None)
        done = len(completed(study))
        ctx.reporter.log(
            f"search: {self.name} on the {s.space} space, {s.budget} architectures "
            f"({done} already in the study), each trained {s.eval_epochs} epoch(s) on "
            f"{s.eval_fraction:.0%} of the training data; storage {storage or 'in memory'}"
        )
        from .warmstart import warm_start

        fresh = not study.trials  # a new study: nothing queued or tried yet
        history = [record] if (record := warm_start(study, space, ctx)) else []
        if fresh:
            for params in known_starts(s):
                study.enqueue_trial(params)
        hooks = fidelity.objective_hooks(ctx)  # per-epoch reports, the winner's checkpoints
        objective = hardware.hardware_objective(ctx, low_fidelity_objective(ctx, **hooks))

        def on_trial(t, arch, info):
            event = {
                "event": "search_trial",
                "trial": t.number,
                "arch": arch.to_dict(),
                "score": t.values[0],
                "seconds": t.user_attrs.get("seconds"),
                **info,
            }
            history.append(event)
            if ctx.run is not None:
                ctx.run.log_event(event)
            best = best_trial(study)
            fidelity.drop_trial_checkpoints(ctx, t.number, keep=best.number)
            ctx.reporter.log(
                f"trial {t.number + 1}/{s.budget}: val {ctx.task.primary_metric} "
                f"{t.values[0]:.4f} (best {best.values[0]:.4f}) | {event['seconds']:.1f}s"
            )

        def log_event(event: dict) -> None:
            history.append(event)
            if ctx.run is not None:
                ctx.run.log_event(event)

        stop = fidelity.affordability_check(
            s,
            len(known_starts(s)),
            ctx.reporter,
            log_event,
            fidelity.candidate_cost_ratio(space, hardware.meta_cost(ctx, "flops"), seed=cfg.seed),
        )
        run_study(study, space, objective, s.budget, on_trial, s.time_budget, shared, stop)
        best = best_trial(study)
        fidelity.keep_winner(ctx, study, best.number)
        if (front := hardware.pareto_event(study, s, best.number)) is not None:
            history.append(front)
            if ctx.run is not None:
                ctx.run.log_event(front)
        result = SearchResult(
            genotype=arch_from_dict(best.user_attrs["arch"]),
            history=history,
            val_metrics=best.user_attrs.get("val"),
            seconds=time.perf_counter() - t_start,
        )
        if shared is not None:  # the final retrain runs once: on the last trial's worker
            result.retrain = shared.owns_last_trial()
            ctx.reporter.log(
                f"study {study.study_name}: {len(completed(study))} trials complete, "
                f"{len(shared.mine)} by this worker; the final retrain runs "
                + ("here" if result.retrain else "on the worker that completed the last trial")
            )
        return result


def _signature(ctx: SearchContext) -> dict:
    """What the workers of a shared study must agree on (`scinas.workers.signature`)."""
    return signature(ctx.cfg.model_dump(mode="json"), decision_space(ctx.cfg.search).decisions)


def known_starts(s) -> list[dict]:
    """The decisions of the architectures ``search.start_from`` names (UserError when one is
    not of the searched space or not within its options)."""
    from ..spaces import load_genotype

    if not s.start_from:
        return []
    space = decision_space(s)
    out = []
    for name in s.start_from:
        arch = load_genotype(name)
        if arch.space != s.space:
            raise UserError(
                f"search.start_from: {name} is an architecture of the {arch.space} space, but "
                f"the search runs on the {s.space} space; give architectures of that space "
                "(`scinas spaces` lists their names)."
            )
        params = space.encode(arch) if space.encode is not None else None
        if params is None:
            raise UserError(
                f"search.start_from: {name} is not within this search's options of the "
                f"{s.space} space (or the space cannot start from given architectures); widen "
                "the options (e.g. search.widths, search.depths) or leave it out."
            )
        out.append(params)
    return out


def _reconcile(study: optuna.Study, ctx: SearchContext, *, private: bool) -> None:
    """Resuming: the log gets exactly one event per finished trial (cut back, then rewritten
    from the study); a trial left RUNNING by the killed process is failed and its architecture
    queued again, when the study is this run's own (a shared storage may have live workers)."""
    from ..checkpoint import Checkpointer

    Checkpointer(ctx.run, "search").truncate_logs({"metrics.jsonl": 0})
    for t in sorted(completed(study), key=lambda t: t.number):
        ctx.run.log_event(
            {
                "event": "search_trial",
                "trial": t.number,
                "arch": t.user_attrs.get("arch"),
                "score": t.values[0],
                "seconds": t.user_attrs.get("seconds"),
                **{k: v for k, v in t.user_attrs.items() if k not in ("arch", "seconds")},
            }
        )
    fidelity.relog(study, ctx)  # the rung events, from the study
    hardware.relog(study, ctx)  # the candidates over a hardware limit, from the study
    if private:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)


# ----------------------------------------------------------------------------- registration


class BlackBoxSettings(hardware.HardwareSettings, fidelity.FidelitySettings, WarmStartSettings):
    """What every black-box strategy needs: how many candidates, and how each is trained."""

    budget: int = Field(20, ge=1, le=MAX_CANDIDATES, description="architectures evaluated")
    eval_epochs: int = Field(1, ge=1, le=MAX_EPOCHS, description="training epochs per candidate")
    eval_fraction: float = Field(
        0.25, gt=0, le=1, description="share of the training data per candidate"
    )
    storage: str | None = Field(
        None,
        description="optuna storage URL shared by workers: postgresql://…, sqlite:///f.db, "
        "journal:///f.log (None: an SQLite file in the run directory)",
    )
    study: str | None = Field(
        None, description="study name in the storage (None: scinas-STRATEGY-SPACE-seedSEED)"
    )
    heartbeat: int = Field(
        30,
        ge=1,
        le=MAX_SECONDS,
        description="seconds between a running trial's heartbeats (search.storage)",
    )
    grace_period: int | None = Field(
        None,
        ge=1,
        le=MAX_SECONDS,
        description="seconds without a heartbeat before a trial is failed and "
        "retried (None: 2 × heartbeat)",
    )
    max_retry: int = Field(
        3, ge=0, le=MAX_REPEATS, description="retries of a trial whose worker died"
    )
    start_from: list[str] | None = Field(
        None,
        description="architectures evaluated first, before the sampler proposes its own: names "
        "such as macro:resnet_tiny (`scinas spaces`) or JSON files of the search space",
    )


@dataclass(frozen=True)
class BlackBox:
    """A registered black-box strategy: an optuna sampler factory and its settings."""

    name: str
    description: str
    Settings: type[BlackBoxSettings]
    sampler: Callable[[object, int], optuna.samplers.BaseSampler]  # (search section, seed)
    # the sampler of a multi-objective search (search.objectives); None: it has none
    multi_sampler: Callable[[object, int], optuna.samplers.BaseSampler] | None = None
    kind: ClassVar[str] = "black-box"
    derive_kinds: ClassVar[tuple[str, ...]] = ()

    def check_search(self, s, space) -> None:
        check_derive(s, self.derive_kinds)
        able = [n for n in STRATEGIES if getattr(STRATEGIES.get(n), "multi_sampler", None)]
        hardware.check_objectives(s, self, able)

    def make_sampler(self, s, seed: int) -> optuna.samplers.BaseSampler:
        """The sampler for a search section ``s`` (its settings) and a seed."""
        if hardware.extra_objectives(s):
            return self.multi_sampler(s, seed)
        return self.sampler(s, seed)

    def __call__(self) -> BlackBoxStrategy:
        return BlackBoxStrategy(self)


def register_black_box(name, description, settings, sampler, multi_sampler=None) -> BlackBox:
    """Register a black-box strategy: ``sampler(search_section, seed)`` makes its optuna
    sampler, ``settings`` (a `BlackBoxSettings` subclass) declares its own settings, and
    ``multi_sampler`` (optional) the sampler of a multi-objective search."""
    return STRATEGIES.register(name, BlackBox(name, description, settings, sampler, multi_sampler))


class EvolutionSettings(BlackBoxSettings):
    population: int = Field(20, ge=2, le=MAX_CANDIDATES, description="population size")
    sample_size: int = Field(5, ge=1, le=MAX_CANDIDATES, description="tournament size")

    @model_validator(mode="after")
    def _tournament_fits(self):
        if self.sample_size > self.population:
            raise ValueError(
                f"search.sample_size ({self.sample_size}) cannot exceed search.population "
                f"({self.population})"
            )
        return self


class TpeSettings(BlackBoxSettings):
    startup_trials: int = Field(
        10, ge=1, le=MAX_CANDIDATES, description="random trials before modelling"
    )


class ReinforceSettings(BlackBoxSettings):
    reinforce_lr: float = Field(0.05, gt=0, description="policy learning rate")
    baseline_decay: float = Field(0.9, ge=0, lt=1, description="moving-average baseline momentum")


def _tpe(s, seed: int) -> optuna.samplers.TPESampler:
    """TPE models one objective or several (MOTPE), and the hardware constraints' values."""
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=s.startup_trials,
        multivariate=True,
        constraints_func=hardware.constraints_func(s),
    )


register_black_box(
    "random",
    "uniform random architectures (Li & Talwalkar 2019's baseline)",
    BlackBoxSettings,
    lambda s, seed: optuna.samplers.RandomSampler(seed=seed),
    multi_sampler=lambda s, seed: optuna.samplers.RandomSampler(seed=seed),
)
register_black_box(
    "evolution",
    "regularised (aging) evolution: tournament selection, one-decision mutations",
    EvolutionSettings,
    lambda s, seed: RegularizedEvolutionSampler(s.population, s.sample_size, seed=seed),
    multi_sampler=lambda s, seed: optuna.samplers.NSGAIISampler(
        population_size=s.population, seed=seed, constraints_func=hardware.constraints_func(s)
    ),
)
register_black_box(
    "tpe",
    "optuna's multivariate tree-structured Parzen estimator",
    TpeSettings,
    _tpe,
    multi_sampler=_tpe,
)
register_black_box(
    "reinforce",
    "a categorical policy trained with REINFORCE and a moving-average baseline",
    ReinforceSettings,
    lambda s, seed: ReinforceSampler(s.reinforce_lr, s.baseline_decay, seed=seed),
)
