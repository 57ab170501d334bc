"""A rejected recipe challenger's compute kept: the incumbent takes the average of its weights
and the challenger's when that average scores no lower on the decision split (a greedy soup,
Wortsman et al. 2022).

Both branches trained the same architecture for the same time from the incumbent's weights
before the round, and branches of one parent past the first steps of training are linearly
connected (Frankle et al. 2020): their average behaves like a longer weight average (SWA), not
like a third network. Without it, the challenger's segment is compute the final network never
gets whenever the challenger is not accepted."""

from __future__ import annotations

import copy

import torch

from .branch import Branch, paired


@torch.no_grad()
def mean_weights(into: torch.nn.Module, other: torch.nn.Module) -> torch.nn.Module:
    """``into`` with its floating-point weights and buffers averaged with ``other``'s (same
    architecture); integer buffers (BatchNorm's step counts) stay ``into``'s."""
    pairs = zip(into.state_dict().values(), other.state_dict().values(), strict=True)
    for a, b in pairs:
        if a.is_floating_point():
            a.lerp_(b.to(a.dtype), 0.5)
    return into


def offer(lin, k: int, name: str, inc: Branch, ch: Branch, inc_scores, inc_metrics):
    """Round ``k``: score the average of the two branches as they were scored (their segment's
    weight averages); where it is not below the incumbent (paired mean advantage >= 0), average
    the incumbent's weights with the challenger's. Returns the incumbent's scores and metrics."""
    scores, metrics = lin.score(mean_weights(copy.deepcopy(inc.scored), ch.scored))
    adv, se = paired(scores, inc_scores)
    adopted = bool(adv >= 0)
    lin.log_event({"event": "lineage_soup", "round": k, "move": name,
                   "incumbent": inc_metrics[lin.pm], "soup": metrics[lin.pm],
                   "advantage": adv, "noise": se, "adopted": adopted})  # fmt: skip
    lin.ctx.reporter.log(
        f"lineage round {k}: the incumbent averaged with the {name} challenger: val {lin.pm} "
        f"{metrics[lin.pm]:.4f}, advantage {adv:+.4f}{lin.units}, noise {se:.4f}: "
        + ("adopted (no lower)" if adopted else "not adopted")
    )
    if not adopted:
        return inc_scores, inc_metrics
    mean_weights(inc.net, ch.net)
    return scores, metrics
