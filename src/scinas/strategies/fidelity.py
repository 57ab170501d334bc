"""Multi-fidelity black-box search: candidates report their validation score after every epoch and
optuna's pruners stop the weak ones early; the winner keeps its weights for the final training.

- ``search.pruner=asha``: optuna's `SuccessiveHalvingPruner`, which is asynchronous successive
  halving (ASHA, Li et al. 2020): a trial reaching a rung (epoch ``min_epochs * eta**k``) goes on
  only if its score is in the top 1/eta of the scores reported at that rung so far. No trial
  waits for others, so it runs unchanged with several workers on one storage.
- ``search.pruner=hyperband``: optuna's `HyperbandPruner` (Li et al. 2018): several brackets of
  successive halving with different first rungs (each bracket's rungs lie on the same ladder
  ``min_epochs * eta**k``), trials assigned to brackets by a hash of their number.
- ``search.pruner=none`` (default): every candidate trains ``search.eval_epochs``.

The maximum resource is ``search.eval_epochs``; the ladder must hold at least two rungs
(``min_epochs * eta <= eval_epochs``), else the setting is refused. Pruned trials count towards
``search.budget`` (the architectures evaluated). Each report is logged to ``metrics.jsonl`` as a
``search_rung`` event (trial, epoch, score, whether the epoch is a rung, whether it was pruned
there) and the report draws the candidates' curves with the rungs. The study lives in the run's
(or the given) optuna storage, so a pruned search resumes and takes several workers as any
black-box search does.

Continuing the winner (``search.continue_winner``, on by default with a pruner): candidates are
built at the final network's sizes (``train.C``, ``train.layers``, ...) and checkpointed after
each epoch; the best trial's last weights are kept as ``winner.pt`` and the final training starts
from them instead of from a fresh initialisation (its own epochs and schedule, on all the
training data). Off, candidates use the search sizes and the winner is retrained from scratch.
"""

from __future__ import annotations

import contextvars
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..bounds import MAX_CANDIDATES, MAX_EPOCHS
from ..checkpoint import Checkpointer
from ..rundir import atomic_write, load_state, safe_torch_load

# the trial whose objective is running (set by `run_study`): the epoch callback reports to it
CURRENT_TRIAL: contextvars.ContextVar[optuna.trial.Trial | None] = contextvars.ContextVar(
    "scinas_current_trial", default=None
)
# when the search's time is up (`run_study` with a time budget): a candidate still training then
# stops at its next epoch, so one slow candidate cannot overrun the search by its whole training
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "scinas_search_deadline", default=None
)
WINNER = "winner.pt"
PRUNERS = ("none", "asha", "hyperband")


class FidelitySettings(BaseModel):
    """Pruner settings shared by every black-box strategy (flat ``search.KEY`` names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pruner: str = Field(
        "none",
        description="none, asha (asynchronous successive halving) or hyperband: stop weak "
        "candidates at rungs min_epochs*reduction_factor**k epochs (up to search.eval_epochs)",
    )
    min_epochs: int = Field(
        1, ge=1, le=MAX_EPOCHS, description="pruner: epochs before the first rung"
    )
    reduction_factor: int = Field(
        3, ge=2, le=MAX_EPOCHS, description="pruner: 1/eta of a rung goes on"
    )
    continue_winner: bool | None = Field(
        None,
        description="the final training starts from the best candidate's weights (candidates "
        "built at train.C/train.layers); None: on with a pruner, false: retrain from scratch",
    )

    min_candidates: int = Field(
        0,
        ge=0,
        le=MAX_CANDIDATES,
        description="with search.time_budget: once the first architectures (search.start_from, "
        "else the first one) are evaluated, stop the search if the time left affords fewer "
        "than this many more candidates at their estimated cost (the first architectures' "
        "seconds per epoch x the space's mean FLOPs over theirs x the epochs a candidate "
        "trains on average under the pruner); the best so far then gets the time as "
        "training. 0: off",
    )

    @model_validator(mode="after")
    def _known_pruner(self):
        if self.pruner not in PRUNERS:
            raise ValueError(f"search.pruner={self.pruner}: choose one of {', '.join(PRUNERS)}")
        return self

    @property
    def continues_winner(self) -> bool:
        """Whether the final training starts from the best candidate's weights (on by default
        with a pruner)."""
        flag = self.continue_winner
        return self.pruner != "none" if flag is None else bool(flag)


def check_rungs(s) -> None:
    """A pruner needs two rungs within ``eval_epochs`` and a single objective (``s``: a
    black-box strategy's settings, which have both); ValueError otherwise."""
    epochs = s.eval_epochs
    low = s.min_epochs * s.reduction_factor > epochs
    if s.pruner != "none" and low:
        raise ValueError(
            f"search.pruner={s.pruner} needs at least two rungs, at epochs "
            f"{s.min_epochs} and {s.min_epochs * s.reduction_factor} "
            f"(search.min_epochs × search.reduction_factor), but candidates train "
            f"search.eval_epochs={epochs}: raise search.eval_epochs to "
            f"{s.min_epochs * s.reduction_factor} or more, or lower "
            "search.min_epochs / search.reduction_factor"
        )
    if s.pruner != "none" and len(s.objectives or []) > 1:
        raise ValueError(
            f"search.pruner={s.pruner} prunes on one score, but search.objectives makes "
            "the search multi-objective (optuna's pruners do not support it): leave "
            "search.pruner=none, or use constraints (search.max_params...) instead"
        )


def expected_epochs(s) -> float:
    """The epochs a candidate trains on average: ``eval_epochs`` without a pruner; with one,
    every candidate trains to the first rung (``min_epochs``) and each later stretch of the
    ladder ``min_epochs * eta**k`` is trained by the 1/eta share that passed the rung before it
    (successive halving's promotion rate). For Hyperband, whose other brackets start higher up
    the same ladder, this is a lower bound. With min_epochs 1, eta 3 and 3 epochs: 1 + 2/3."""
    if s.pruner == "none":
        return float(s.eval_epochs)
    eta = s.reduction_factor
    total, done, share, rung = 0.0, 0, 1.0, s.min_epochs
    while rung < s.eval_epochs:
        total += share * (rung - done)
        done, share, rung = rung, share / eta, rung * eta
    return total + share * (s.eval_epochs - done)


def affordability_check(s, starts: int, reporter, log_event, relative_cost=None):
    """``search.min_candidates``: a ``stop(study, deadline)`` for `run_study`, or None when off.

    Asked before each new trial; it decides once, right after the first ``starts`` architectures
    are evaluated. The cost of one more candidate is their measured seconds per epoch, times
    ``relative_cost(first trials)`` (how much more a random candidate of the space costs than
    they do, `candidate_cost_ratio`; 1 without it), times the epochs a candidate trains on
    average (`expected_epochs`). When the time left affords fewer than ``min_candidates`` of
    them, the search cannot get past a handful of random draws (an evolution's first
    population, TPE's start-up trials), so it stops there and says so: a ``search_stopped``
    event and a log line. Its time then goes to the final training (the retraining is planned
    on the time actually left). Either way the decision and its figures are logged."""
    if not s.min_candidates or s.time_budget is None:
        return None
    starts = max(1, starts)
    decided = []

    def stop(study: optuna.Study, deadline: float | None) -> bool:
        done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        if decided or deadline is None or len(done) < starts:
            return False
        decided.append(True)
        first = done[:starts]
        per_epoch = sum(
            t.user_attrs.get("seconds", 0.0) / max(1, len(t.intermediate_values) or s.eval_epochs)
            for t in first
        ) / len(first)
        ratio, how = relative_cost(first) if relative_cost is not None else (1.0, "")
        epochs = expected_epochs(s)
        per_candidate = max(1e-9, per_epoch * ratio * epochs)
        left = max(0.0, deadline - time.perf_counter())
        affordable = int(left // per_candidate)
        figures = (
            f"{per_epoch:.1f}s per epoch of the first architecture(s)"
            + (f" × {ratio:.2f} ({how})" if how else "")
            + f" × {epochs:.2f} epochs expected per candidate"
        )
        if affordable >= s.min_candidates:
            reporter.log(
                f"search goes on: the {left:.0f}s left afford about {affordable} candidates at "
                f"{per_candidate:.1f}s each ({figures}), at least "
                f"search.min_candidates={s.min_candidates}"
            )
            return False
        needed = s.min_candidates * per_candidate - left
        event = {
            "event": "search_stopped",
            "after_trials": len(done),
            "seconds_left": left,
            "seconds_per_candidate": per_candidate,
            "seconds_per_epoch": per_epoch,
            "cost_ratio": ratio,
            "expected_epochs": epochs,
            "affordable": affordable,
            "min_candidates": s.min_candidates,
            "seconds_short": needed,
        }
        log_event(event)
        reporter.log(
            f"{describe_stop(event)} ({figures}), too few for a search to pay. About "
            f"{needed:.0f}s more search time (a larger budget) would let it search"
        )
        return True

    return stop


def candidate_cost_ratio(space, cost, *, samples: int = 32, seed: int = 0):
    """For `affordability_check`: ``first trials -> (ratio, how)``, the mean ``cost`` (e.g. the
    FLOPs of the network an architecture becomes) of ``samples`` uniformly random architectures
    of ``space`` (a `DecisionSpace`, seeded) over the mean cost of the trials' architectures. A
    search's start architectures (`scinas.recommend`: ``resnet_tiny``) are often the small end
    of the space, so their own seconds understate what the candidates after them cost. Time per
    epoch is taken as proportional to FLOPs; small networks' fixed per-layer costs make that
    an overestimate for the larger candidates (docs, benchmarks, "Was NAS worth it?")."""
    import numpy as np

    from ..spaces import arch_from_dict

    def ratio(first) -> tuple[float, str]:
        rng = np.random.RandomState(seed)
        try:
            drawn = [cost(space.sample(rng)) for _ in range(samples)]
            mine = [cost(arch_from_dict(t.user_attrs["arch"])) for t in first]
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
            # an estimate only: a network the FLOP counter cannot run keeps the measured cost
            return 1.0, f"FLOPs not countable here ({type(e).__name__}): taken as equal"
        base = sum(mine) / len(mine)
        if base <= 0:
            return 1.0, "the first architectures' cost is unknown"
        return sum(drawn) / len(drawn) / base, f"the FLOPs of {samples} random candidates"

    return ratio


def describe_stop(e: dict) -> str:
    """One line for a ``search_stopped`` event (the log and `scinas compare`'s table)."""
    return (
        f"search stopped after {e['after_trials']} architecture(s): the {e['seconds_left']:.0f}s "
        f"left afford about {e['affordable']} more candidates at "
        f"{e['seconds_per_candidate']:.1f}s each, fewer than "
        f"search.min_candidates={e['min_candidates']}; the best so far takes the time as training"
    )


def continues_winner(s) -> bool:
    """Whether the final training starts from the best candidate's weights."""
    return s.own.continues_winner


def make_pruner(s) -> optuna.pruners.BasePruner:
    """The optuna pruner of a search section (NopPruner without one)."""
    if s.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=s.min_epochs, reduction_factor=s.reduction_factor
        )
    if s.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=s.min_epochs,
            max_resource=s.eval_epochs,
            reduction_factor=s.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def rungs(s) -> list[int]:
    """The ladder of rung epochs: min_epochs * eta**k up to eval_epochs."""
    out, r = [], s.min_epochs
    while r <= s.eval_epochs:
        out.append(r)
        r *= s.reduction_factor
    return out


def candidate_sizes(ctx) -> dict:
    """Sizes of the candidates' networks that differ from the search's: the final network's
    when the winner is continued (its weights must fit the final network)."""
    if not continues_winner(ctx.cfg.search):
        return {}
    t = ctx.cfg.train
    return {
        "C": t.C,
        "layers": t.layers,
        "reductions": t.reductions,
        "auxiliary": t.auxiliary,
        "batch_size": t.batch_size,
    }


def trial_checkpointer(ctx):
    """A per-trial checkpointer (when the winner is continued): the trial's weights after each
    epoch, under the phase name ``trialN``."""
    if ctx.run is None or not continues_winner(ctx.cfg.search):
        return None
    trial = CURRENT_TRIAL.get()
    return None if trial is None else Checkpointer(ctx.run, f"trial{trial.number}")


def epoch_callback(ctx):
    """The low-fidelity training's per-epoch callback: report the validation score to the
    running trial, log it, and stop the trial (optuna.TrialPruned) when the pruner says so."""
    s = ctx.cfg.search
    if s.pruner == "none" and not continues_winner(s) and s.time_budget is None:
        return None
    ladder = set(rungs(s)) if s.pruner != "none" else set()
    pm = ctx.task.primary_metric

    def on_epoch(e) -> None:
        trial = CURRENT_TRIAL.get()
        if trial is None:
            return
        value = float(e.val[pm])
        trial.report(value, e.epoch)
        pruned = s.pruner != "none" and e.epoch < s.eval_epochs and trial.should_prune()
        deadline = DEADLINE.get()
        if (  # the search's time is up and another candidate has finished
            not pruned
            and e.epoch < s.eval_epochs
            and deadline is not None
            and time.perf_counter() >= deadline
            and trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ):
            pruned = True
            ctx.reporter.log(f"trial {trial.number + 1}: the search's time is up")
        if ctx.run is not None and (ladder or continues_winner(s) or pruned):
            ctx.run.log_event(rung_event(trial.number, e.epoch, value, e.epoch in ladder, pruned))
        if pruned:
            drop_trial_checkpoints(ctx, trial.number, keep=None)
            ctx.reporter.log(
                f"trial {trial.number + 1}: pruned after epoch {e.epoch} (val {pm} {value:.4f})"
            )
            raise optuna.TrialPruned(f"pruned at epoch {e.epoch}")

    return on_epoch


def objective_hooks(ctx) -> dict:
    """What `scinas.fit.low_fidelity_objective` takes from this module: the per-epoch callback,
    the per-trial checkpointer, and the candidates' sizes."""
    return {
        "on_epoch": epoch_callback(ctx),
        "checkpointer": lambda: trial_checkpointer(ctx),
        "sizes": candidate_sizes(ctx),
    }


def rung_event(trial: int, epoch: int, score: float, rung: bool, pruned: bool) -> dict:
    return {
        "event": "search_rung",
        "trial": trial,
        "epoch": epoch,
        "score": score,
        "rung": rung,
        "pruned": pruned,
    }


def relog(study: optuna.Study, ctx) -> None:
    """Resuming: the rung events of every finished trial, rewritten from the study's
    intermediate values (the log was cut back)."""
    s = ctx.cfg.search
    if s.pruner == "none" or ctx.run is None:
        return
    ladder = set(rungs(s))
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in sorted(study.get_trials(deepcopy=False, states=states), key=lambda t: t.number):
        steps = sorted(t.intermediate_values)
        for step in steps:
            pruned = t.state == optuna.trial.TrialState.PRUNED and step == steps[-1]
            event = rung_event(t.number, step, t.intermediate_values[step], step in ladder, pruned)
            ctx.run.log_event(event)


def keep_winner(ctx, study: optuna.Study, best_number: int) -> None:
    """Save the best trial's last weights as ``winner.pt`` and delete every trial checkpoint."""
    if ctx.run is None or not continues_winner(ctx.cfg.search):
        return
    state = _newest_checkpoint(ctx.run, best_number)
    if state is not None:
        weights = {k: v.detach().cpu() for k, v in _plain(state["model"]).items()}
        atomic_write(ctx.run.path / WINNER, lambda f: torch.save(weights, f))
        ctx.reporter.log(
            f"the winner (trial {best_number + 1}) keeps its weights: the final training "
            "starts from them"
        )
    folder = ctx.run.path / "checkpoints"
    if folder.is_dir():
        for path in folder.glob("trial*-*.pt"):
            path.unlink(missing_ok=True)


def _newest_checkpoint(run, number: int) -> dict | None:
    """Trial ``number``'s newest checkpoint, read without touching the logs (unlike
    `Checkpointer.load`, which cuts them back to it)."""
    files = sorted(
        (run.path / "checkpoints").glob(f"trial{number}-*.pt"),
        key=lambda p: int(p.stem.rsplit("-", 1)[1]),
    )
    return safe_torch_load(files[-1], "a checkpoint") if files else None


def drop_trial_checkpoints(ctx, number: int, keep: int | None) -> None:
    """Delete trial ``number``'s checkpoints unless it is ``keep`` (the best so far)."""
    if ctx.run is None or number == keep:
        return
    Checkpointer(ctx.run, f"trial{number}").clear()


def _plain(state: dict) -> dict:
    """A state dict without a torch.compile prefix."""
    return {k.removeprefix("_orig_mod."): v for k, v in state.items()}


def winner_state(ctx, run) -> dict | None:
    """The winner's weights for the final training (None: it starts from scratch)."""
    if run is None or not continues_winner(ctx.cfg.search):
        return None
    path = Path(run.path) / WINNER
    if not path.is_file():
        return None
    return load_state(path)


# ----------------------------------------------------------------------------- report


def draw_rungs(figs, events: list[dict], metric: str) -> None:
    """Each candidate's validation score per epoch; pruned trials end in a cross, rung epochs
    are dotted lines."""
    rows = [e for e in events if e.get("event") == "search_rung"]
    if not rows:
        return
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    by_trial: dict[int, list[dict]] = {}
    for e in rows:
        by_trial.setdefault(e["trial"], []).append(e)
    for r in sorted({e["epoch"] for e in rows if e.get("rung")}):
        ax.axvline(r, color="grey", ls=":", lw=1)
    n_pruned = 0
    for _, es in sorted(by_trial.items()):
        es.sort(key=lambda e: e["epoch"])
        ep, sc = [e["epoch"] for e in es], [e["score"] for e in es]
        pruned = es[-1].get("pruned", False)
        n_pruned += pruned
        ax.plot(ep, sc, "-", lw=1, alpha=0.6, color="tab:red" if pruned else "tab:blue")
        if pruned:
            ax.plot(ep[-1], sc[-1], "x", color="tab:red")
    ax.set(
        xlabel="epoch",
        ylabel=f"val {metric}",
        title=f"multi-fidelity: {len(by_trial)} candidates, {n_pruned} pruned (x); rungs dotted",
    )
    fig.tight_layout()
    figs.add("Training", "rungs", "multi-fidelity rungs", fig=fig)
