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

import time
from collections.abc import Callable
from dataclasses import dataclass
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
from .base import STRATEGIES, SearchResult, StrategySettings, check_derive
from .samplers import RegularizedEvolutionSampler, ReinforceSampler, UniformSampler
from .studies import (  # noqa: F401
    SQLITE_HEADER,
    _check_sqlite_file,
    best_trial,
    check_storage_url,
    completed,
    counts,
    evaluated,
    open_study,
    run_study,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

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
            here = shared.owns_last_trial()
            result.ending = "retrain" if here else "elsewhere"
            ctx.reporter.log(
                f"study {study.study_name}: {len(completed(study))} trials complete, "
                f"{len(shared.mine)} by this worker; the final retrain runs "
                + ("here" if here else "on the worker that completed the last trial")
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


class BlackBoxSettings(
    hardware.HardwareSettings, fidelity.FidelitySettings, WarmStartSettings, StrategySettings
):
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

    @model_validator(mode="after")
    def _two_rungs(self):
        fidelity.check_rungs(self)
        return self


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
    lambda s, seed: UniformSampler(seed=seed),
    multi_sampler=lambda s, seed: UniformSampler(seed=seed),
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
