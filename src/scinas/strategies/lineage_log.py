"""What a lineage search (`scinas.strategies.lineage`) writes of its rounds: one event in
``metrics.jsonl`` and one line of the log for each decision, wait and stop."""

from __future__ import annotations

import math
import time
from dataclasses import asdict

from .branch import judge, paired


def decision(lin, k: int, name: str, seg: int, ch_steps: int, inc_metrics: dict, ch_metrics,
             adv: float, se: float, verdict: str, z: float, started: float,
             priced: str) -> None:  # fmt: skip
    """Round ``k``'s challenger ``name`` against the incumbent: the advantage, the noise, the
    verdict, and how the challenger's steps were priced (``seconds`` or ``flops``)."""
    pm = lin.pm
    lin.log_event(
        {
            "event": "lineage_decision",
            "round": k,
            "move": name,
            "steps": seg,
            "challenger_steps": ch_steps,
            "priced": priced,
            "incumbent": inc_metrics[pm],
            "challenger": None if ch_metrics is None else ch_metrics[pm],
            "advantage": adv if math.isfinite(adv) else None,
            "noise": se if math.isfinite(se) else None,
            "verdict": verdict,
            "margin_z": z,
            "scores": "proper" if lin.proper else "metric",
            "seconds": time.perf_counter() - started,
        }
    )
    if ch_metrics is None:
        lin.ctx.reporter.log(f"lineage round {k}: {name}: diverged")
        return
    steps = f" ({ch_steps} steps in the incumbent's time)" if priced == "seconds" else ""
    lin.ctx.reporter.log(
        f"lineage round {k}: {name}{steps}: val {pm} "
        f"{ch_metrics[pm]:.4f} against {inc_metrics[pm]:.4f}, "
        f"advantage {adv:+.4f}{lin.units}, noise {se:.4f}"
        + (f" (margin {z:g}: favoured early)" if z != lin.s.noise_z else "")
        + f": {verdict}"
    )


def gain(lin, k: int, seg: int, scores, before, metrics: dict, started: float, z: float) -> bool:
    """Log the incumbent's gain over its segment alone; whether it was beyond ``z``."""
    g, se = paired(scores, before)
    gaining = judge(g, se, z)[0]
    lin.log_event(
        {
            "event": "lineage_segment",
            "round": k,
            "steps": seg,
            "incumbent": metrics[lin.pm],
            "gain": g,
            "noise": se,
            "gaining": gaining,
            "seconds": time.perf_counter() - started,
        }
    )
    lin.ctx.reporter.log(
        f"lineage round {k}: the incumbent trains alone: val {lin.pm} "
        f"{metrics[lin.pm]:.4f}, gain {g:+.4f}, noise {se:.4f}: "
        + ("still gaining" if gaining else "a plateau, a challenger next")
    )
    return gaining


def stop(lin, reason: str, message: str, **fields) -> None:
    """The search ends here (`lineage_stop`; a run with one deadline, as in compare, gives its
    time left to the final training)."""
    lin.log_event({"event": "lineage_stop", "reason": reason, **fields})
    lin.ctx.reporter.log(f"lineage: {message}; the search stops")


def undecidable(lin, adv: float, se: float) -> None:
    """No search: even a start right on every validation sample would not score above a
    constant prediction, so nothing could be judged; the start trains from scratch for the
    whole budget in the final training's one schedule, as it would alone."""
    stop(lin, "chance", f"a network right on all {len(lin.val_split)} validation samples would "
         f"score {adv:+.4f} above a constant prediction (noise {se:.4f}): nothing can be judged "
         "(a larger split, data.val_fraction or search.decision_val, would let it be); the start "
         "trains for the budget", best_advantage=adv, noise=se)  # fmt: skip


def result(lin, arch, recipe, changes: dict, accepted: int, rejected: int, steps: int) -> None:
    """The lineage's outcome (`lineage_result`): its network, recipe and decisions."""
    lin.log_event({"event": "lineage_result", "arch": arch.to_dict(), "recipe": asdict(recipe),
                   "recipe_changes": changes, "accepted": accepted, "rejected": rejected,
                   "steps": steps})  # fmt: skip
    lin.ctx.reporter.log(
        f"lineage: {accepted} challengers accepted, {rejected} rejected as not better beyond "
        f"noise; the network: {arch}; recipe changes: {changes or 'none'}"
    )
