"""Hardware-aware black-box search: parameters, FLOPs and latency of each candidate, constraints
on them, and a second objective.

Every black-box strategy has the settings of `HardwareSettings`. With any of them set, each
candidate's network, built at the final training sizes (the train section: what the user keeps),
is measured before it is trained, cheapest first: parameters, then FLOPs (`scinas.flops`), then
latency on the run's device (`measure_latency`: batch 1 and the training batch, warm-up runs, the
median of repeats, under ``torch.inference_mode`` with the run's threads). A candidate over a
limit (``search.max_params``, ``max_flops``, ``max_latency_ms``) is never trained: its trial is
told PRUNED, so the samplers avoid it (TPE and NSGA-II also get the constraint values through
optuna's ``constraints_func``), and it does not count towards ``search.budget``. A limit no network
of the space can meet is refused before anything is written, naming the smallest network.

``search.objectives=accuracy,latency`` (or params, flops) makes the study multi-objective: the
primary metric first, then the others minimised, with optuna's multi-objective samplers (random,
NSGA-II for evolution, TPE). The chosen network is the best primary metric among the trials that
met the constraints (ties: the lower second objective), which lies on the Pareto front; the front
is logged (``pareto_front`` in metrics.jsonl) and drawn in the report.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import UserError
from .flops import count_flops, count_parameters
from .spaces import SPACES, space_of

if TYPE_CHECKING:
    import optuna

    from .run_context import SearchContext

PRIMARY = ("accuracy", "score")  # the task's primary metric (accuracy, r2, ...), maximised or not
SECONDARY = {"latency": "latency_ms", "params": "params", "flops": "flops"}  # all minimised
LIMITS = {"params": "max_params", "flops": "max_flops", "latency_ms": "max_latency_ms"}
MAX_INFEASIBLE_IN_A_ROW = 200


class HardwareSettings(BaseModel):
    """Constraints and objectives on the cost of the networks a black-box search proposes (a
    base of every black-box strategy's settings; plain pydantic, like `StrategySettings`, so
    that this module imports nothing of the strategies)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_params: int | None = Field(
        None, ge=1, description="skip candidates with more parameters (final network)"
    )
    max_flops: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="skip candidates with more FLOPs per sample"
    )
    max_latency_ms: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="skip candidates slower than this per sample at batch 1 on the run's device",
    )
    objectives: list[str] | None = Field(
        None,
        description="accuracy,latency (or params, flops): multi-objective search (random, "
        "evolution, tpe); None: the task's primary metric alone",
    )
    hardware: bool = Field(
        False, description="measure params, FLOPs and latency of every candidate without limits"
    )

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, v):
        if isinstance(v, str):
            v = [p.strip() for p in v.split(",") if p.strip()]
        if v is None:
            return v
        if not isinstance(v, list) or not v or not all(isinstance(o, str) for o in v):
            raise ValueError("search.objectives is a list such as accuracy,latency")
        if v[0] not in PRIMARY:
            raise ValueError(
                f"search.objectives starts with the task's metric ({' or '.join(PRIMARY)}), "
                f"got {v[0]!r}; e.g. accuracy,latency"
            )
        for o in v[1:]:
            if o not in SECONDARY:
                raise ValueError(
                    f"unknown objective {o!r} in search.objectives: the second and later ones "
                    f"are among {', '.join(SECONDARY)}"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"search.objectives {v} names an objective twice")
        return v


def _settings(s) -> HardwareSettings | None:
    """The hardware settings of search section ``s`` (None: its strategy has none)."""
    own = s.own
    return own if isinstance(own, HardwareSettings) else None


def limits(s) -> dict[str, float]:
    """The hardware limits a search section sets: measurement key -> limit."""
    own = _settings(s)
    if own is None:
        return {}
    return {k: getattr(own, f) for k, f in LIMITS.items() if getattr(own, f) is not None}


def extra_objectives(s) -> list[str]:
    """The measurement keys of the objectives after the primary metric ([] single-objective)."""
    own = _settings(s)
    return [SECONDARY[o] for o in (own.objectives or [])[1:]] if own is not None else []


def directions(s, higher_is_better: bool) -> str | list[str]:
    """The study's direction, or its directions when multi-objective (the others minimised)."""
    first = "maximize" if higher_is_better else "minimize"
    extra = extra_objectives(s)
    return [first, *["minimize"] * len(extra)] if extra else first


def active(s) -> bool:
    own = _settings(s)
    return own is not None and bool(limits(s) or extra_objectives(s) or own.hardware)


def check_objectives(s, entry, able: list[str]) -> None:
    """A multi-objective setting needs a strategy with a multi-objective sampler (``able``: the
    strategies that have one); ValueError: the config's one message."""
    if extra_objectives(s) and entry.multi_sampler is None:
        raise ValueError(
            f"search.objectives={','.join(s.objectives)} needs a multi-objective sampler, which "
            f"strategy {entry.name} has not: use {', '.join(able)}"
        )


def constraints_func(s):
    """optuna's ``constraints_func`` for samplers that take one (None without limits): the
    measured value minus the limit of each constraint (feasible: all ≤ 0)."""
    if not limits(s):
        return None
    keys = list(limits(s))

    def func(trial: optuna.trial.FrozenTrial) -> list[float]:
        return list(trial.user_attrs.get("constraints", [0.0] * len(keys)))

    return func


# ----------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_latency(
    net: torch.nn.Module,
    input_shape,
    batch: int = 1,
    *,
    warmup: int = 2,
    repeats: int = 5,
    channels_last: bool = False,
) -> float:
    """Median milliseconds of one forward pass of ``batch`` samples, in eval mode, on the
    network's device with torch's current threads, after ``warmup`` passes."""
    device = next(net.parameters()).device
    x = torch.randn(batch, *input_shape, device=device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = net.training
    net.eval()
    try:
        for _ in range(warmup):
            net(x)
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    finally:
        net.train(was_training)
    return 1000.0 * statistics.median(times)


class Infeasible(Exception):
    """A candidate over a hardware limit: never trained; ``measured`` holds what was measured."""

    def __init__(self, key: str, value: float, limit: float, measured: dict):
        super().__init__(f"{key} {value:.4g} over the limit {limit:.4g}")
        self.key, self.value, self.limit, self.measured = key, value, limit, measured
        self.constraints: list[float] = []


def measure(
    net, input_shape, *, train_batch: int, limit: dict | None = None, channels_last=False
) -> dict:
    """Parameters, FLOPs per sample and latency of ``net`` (cheapest first), stopping with
    `Infeasible` at the first measurement over its limit in ``limit``."""
    limit = limit or {}
    out: dict = {"device": str(next(net.parameters()).device), "threads": torch.get_num_threads()}

    def check(key, value):
        out[key] = value
        if key in limit and value > limit[key]:
            raise Infeasible(key, value, limit[key], out)

    check("params", count_parameters(net))
    check("flops", count_flops(net, tuple(input_shape)))
    check("latency_ms", measure_latency(net, input_shape, 1, channels_last=channels_last))
    batch_ms = measure_latency(
        net, input_shape, train_batch, warmup=1, repeats=3, channels_last=channels_last
    )
    out["train_batch"] = train_batch
    out["latency_ms_per_sample_train_batch"] = batch_ms / train_batch
    return out


def _final_network(ctx: SearchContext, arch, device=None):
    """The network the architecture becomes (the train section's sizes), placed as the run places
    it, or built on ``device`` (e.g. "meta")."""
    data = ctx.data

    def build():
        net = space_of(arch).build_network(
            arch, ctx.cfg.train, tuple(data.input_shape), data.num_outputs
        )
        return net

    if device is None:
        return ctx.place.module(build())
    with torch.device(device):
        return build()


def hardware_objective(ctx: SearchContext, objective):
    """``objective`` (arch -> (score, info)) with the candidate measured first: over a limit it
    raises `Infeasible` untrained (and logs a ``search_infeasible`` event); otherwise ``info``
    gains ``hardware`` (the measurements) and ``constraints``, and a multi-objective search gets
    ``[score, *other objectives]``."""
    s = ctx.cfg.search
    if not active(s):
        return objective
    lim, extra = limits(s), extra_objectives(s)
    shape = tuple(ctx.data.input_shape)
    in_a_row = [0]

    def wrapped(arch):
        net = _final_network(ctx, arch)
        try:
            hw = measure(
                net,
                shape,
                train_batch=ctx.cfg.train.batch_size,
                limit=lim,
                channels_last=ctx.place.channels_last,
            )
        except Infeasible as e:
            in_a_row[0] += 1
            # the broken limit positive, the others as far as measured (0: not measured)
            e.constraints = [e.measured[k] - v if k in e.measured else 0.0 for k, v in lim.items()]
            event = infeasible_event(arch.to_dict(), e.measured, e.key)
            if ctx.run is not None:
                ctx.run.log_event(event)
            ctx.reporter.log(f"skipped (not trained): {e} (search.{LIMITS[e.key]})")
            if in_a_row[0] >= MAX_INFEASIBLE_IN_A_ROW:
                raise UserError(
                    f"{in_a_row[0]} proposed architectures in a row broke the hardware limits "
                    f"({', '.join(f'search.{LIMITS[k]}={v:g}' for k, v in lim.items())}): "
                    "loosen them or narrow the space's options."
                ) from None
            raise
        finally:
            del net
        in_a_row[0] = 0
        score, info = objective(arch)
        info = {**info, "hardware": hw, "constraints": [hw[k] - v for k, v in lim.items()]}
        if extra:
            return [score, *(hw[k] for k in extra)], info
        return score, info

    return wrapped


def tell_infeasible(study, trial, arch, e: Infeasible) -> None:
    """Record a candidate over a limit as PRUNED (it does not count towards the budget)."""
    from optuna.trial import TrialState

    trial.set_user_attr("arch", arch.to_dict())
    trial.set_user_attr("hardware", e.measured)
    trial.set_user_attr("infeasible", f"search.{LIMITS[e.key]}")
    trial.set_user_attr("constraints", e.constraints)
    study.tell(trial, state=TrialState.PRUNED)


def infeasible_event(arch: dict, measured: dict, key: str) -> dict:
    return {
        "event": "search_infeasible",
        "arch": arch,
        "hardware": measured,
        "violates": f"search.{LIMITS[key]}",
    }


def relog(study, ctx: SearchContext) -> None:
    """Resuming: the ``search_infeasible`` events again, from the study's trials over a limit."""
    from optuna.trial import TrialState

    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)), key=_number):
        if "infeasible" in t.user_attrs:
            key = next(k for k, f in LIMITS.items() if f"search.{f}" == t.user_attrs["infeasible"])
            ctx.run.log_event(infeasible_event(t.user_attrs["arch"], t.user_attrs["hardware"], key))


def _number(trial) -> int:
    return trial.number


# ----------------------------------------------------------------------------- before the run


def meta_cost(ctx: SearchContext, key: str):
    """Parameters or FLOPs of an architecture's final network, built on the meta device (no
    memory, no initialisation cost)."""
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(ctx.data.input_shape)

    def cost(arch) -> float:
        net = _final_network(ctx, arch, device="meta")
        if key == "params":
            return float(count_parameters(net))
        net.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.zeros(1, *shape, device="meta"))
        return float(counter.get_total_flops())

    return cost


def preflight(ctx: SearchContext) -> None:
    """Refuse (UserError) a limit no network of the space can meet, naming the smallest one;
    runs before anything is written."""

    s = ctx.cfg.search
    lim = limits(s)
    if not lim:
        return
    space = SPACES.get(s.space)
    fastest = None  # the latency check times the smallest network found (by FLOPs if limited)
    for key in ("params", "flops"):
        if key not in lim and not (key == "params" and "latency_ms" in lim and "flops" not in lim):
            continue
        ctx.reporter.log(f"hardware limits: finding the {s.space} space's network of least {key}")
        cost = meta_cost(ctx, key)
        arch = space.smallest(s, cost)  # seconds; ~30 s for FLOPs in the DARTS space
        fastest, least = arch, cost(arch)
        if key in lim and least > lim[key]:
            raise UserError(
                f"search.{LIMITS[key]}={lim[key]:g} cannot be met: the smallest network of the "
                f"{s.space} space under this search section has {least:,.0f} {key} at this "
                f"input ({json.dumps(arch.to_dict())}). Raise search.{LIMITS[key]} to at least "
                f"{least:,.0f}."
            )
    if "latency_ms" in lim:
        net = _final_network(ctx, fastest)
        ms = measure_latency(
            net, tuple(ctx.data.input_shape), channels_last=ctx.place.channels_last
        )
        if ms > lim["latency_ms"]:
            raise UserError(
                f"search.max_latency_ms={lim['latency_ms']:g} cannot be met: the smallest "
                f"network of the {s.space} space ({json.dumps(fastest.to_dict())}) takes "
                f"{ms:.3g} ms per sample "
                f"at batch 1 on {ctx.device}. Raise search.max_latency_ms above {ms:.3g}."
            )


# ----------------------------------------------------------------------------- afterwards


def pareto_event(study: optuna.Study, s, chosen: int) -> dict | None:
    """The Pareto front of a multi-objective study, for metrics.jsonl (None single-objective)."""
    extra = extra_objectives(s)
    if not extra:
        return None
    front = sorted(study.best_trials, key=lambda t: t.number)
    return {
        "event": "pareto_front",
        "objectives": list(s.objectives),
        "keys": ["score", *extra],
        "trials": [
            {"trial": t.number, "values": list(t.values), "arch": t.user_attrs.get("arch")}
            for t in front
        ],
        "chosen": chosen,
        "higher_is_better": study.directions[0].name == "MAXIMIZE",
    }


def pareto_points(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points (score, cost) that no other point beats in both (cost minimised)."""
    sign = 1 if higher_is_better else -1
    front = []
    for i, (a, c) in enumerate(points):
        dominated = any(
            sign * b >= sign * a and d <= c and (sign * b > sign * a or d < c)
            for j, (b, d) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def draw_pareto(figs, events: list[dict], metric: str, genotype: dict | None) -> None:
    """Score against latency of every measured trial, the Pareto front and the chosen network."""
    import matplotlib.pyplot as plt

    trials = [
        e
        for e in events
        if e.get("event") == "search_trial" and "latency_ms" in e.get("hardware", {})
    ]
    if not trials:
        return
    skipped = [e for e in events if e.get("event") == "search_infeasible"]
    higher = next((e["higher_is_better"] for e in events if "higher_is_better" in e), True)
    pts = [(t["score"], t["hardware"]["latency_ms"]) for t in trials]
    front = sorted(pareto_points(pts, higher), key=lambda i: pts[i][1])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([p[1] for p in pts], [p[0] for p in pts], "o", ms=4, alpha=0.5, label="trial")
    ax.plot(
        [pts[i][1] for i in front], [pts[i][0] for i in front], "-s", ms=5, label="Pareto front"
    )
    chosen = [i for i, t in enumerate(trials) if genotype is not None and t["arch"] == genotype]
    if chosen:
        i = chosen[0]
        ax.plot(pts[i][1], pts[i][0], "*", ms=16, color="crimson", label="chosen")
    ax.set(
        xlabel="latency per sample at batch 1 (ms)",
        ylabel=f"val {metric}",
        title=f"accuracy–latency ({len(skipped)} over a limit, not trained)",
    )
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figs.add("Training", "pareto", "accuracy–latency Pareto front", fig=fig)
