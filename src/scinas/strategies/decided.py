"""How decided a one-shot search is: how far each edge's op weights are from uniform.

A search whose architecture weights never moved derives a cell that is no better than a random
one (the default `scinas run` on digits ended with every edge's strongest op at 0.1256 against
0.1250 for uniform). Two numbers say how far the weights have moved, per edge, then averaged:

- the **margin**: the strongest op's weight minus 1/K (K: the edge's ops, pruned ones included),
  0 for uniform weights and 1 - 1/K when one op has all the weight;
- the normalised **entropy** of the weights, 1 for uniform and 0 for one op.

A search that ends with a mean margin below `DECIDED_MARGIN` is called undecided: the log and
the report say that its derived cell is close to a random one, and what to change
(`undecided_advice`). Small weights need not mean a random ranking, though: β-DARTS' Beta-Decay
keeps the alphas small by design, and on NAS-Bench-201 its cell stayed the same from epoch 5 to
50 at a final margin of 0.055. So the message also says since which epoch the derived cell has
not changed (`stable_since`) when that covers the second half of the search. Anything that
wants to judge whether a setting makes the alphas decide (the automatic learning rates, a
benchmark) uses `margin_entropy`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

# The mean margin over uniform below which a finished search is called undecided. 0.10 is the
# figure the default searches are held to: with the 8 DARTS ops the strongest op then
# holds at least 0.225 of an edge's weight on average (uniform: 0.125), with NB201's 5 at least 0.3.
DECIDED_MARGIN = 0.10


def _rows(weights) -> list[torch.Tensor]:
    if isinstance(weights, Mapping):
        weights = list(weights.values())
    if torch.is_tensor(weights):
        weights = [weights]
    out = []
    for w in weights if isinstance(weights, Iterable) else [weights]:
        w = torch.as_tensor(w, dtype=torch.float64).detach().cpu()
        out.append(w.reshape(-1, w.shape[-1]))
    return out


def margin_entropy(weights, *, logits: bool = False) -> tuple[float, float]:
    """(mean margin of each edge's strongest op over 1/K, mean normalised edge entropy).

    ``weights``: one (edges, K) tensor or nested list of op weights, a list of them or a mapping
    (cell -> weights, e.g. a supernet's ``op_weights()``); each row is one edge and sums to 1.
    ``logits=True``: the rows are alphas, softmaxed first."""
    margins, entropies = [], []
    for w in _rows(weights):
        if logits:
            w = torch.softmax(w, dim=-1)
        k = w.shape[-1]
        margins += (w.max(-1).values - 1.0 / k).tolist()
        p = w.clamp_min(1e-12)
        h = -(w * p.log()).sum(-1) / math.log(k) if k > 1 else torch.zeros(len(w))
        entropies += h.tolist()
    if not margins:
        return 0.0, 1.0
    return sum(margins) / len(margins), sum(entropies) / len(entropies)


def is_decided(margin: float) -> bool:
    return margin >= DECIDED_MARGIN


def stable_since(genotypes: list) -> int | None:
    """The first epoch (1-based) from which every epoch's derived cell equals the last one;
    None for no epochs."""
    if not genotypes:
        return None
    first = len(genotypes)
    while first > 1 and genotypes[first - 2] == genotypes[-1]:
        first -= 1
    return first


def undecided_advice(margin: float, epochs: int, arch_lr=None, stable: int | None = None) -> str:
    """The message for a search that ended undecided: what its cell is, and what to change.
    ``stable``: the epoch since which the derived cell has not changed (`stable_since`)."""
    lr = f" (now {arch_lr:g})" if isinstance(arch_lr, (int, float)) else ""
    consistent = stable is not None and epochs >= 4 and stable <= epochs // 2 + 1
    what = (
        "so the supernet mixes its ops almost evenly and its validation metric says little "
        f"about the derived network, though the derived cell has been the same since epoch "
        f"{stable} of {epochs} (a consistent ranking, not a random one)"
        if consistent
        else "so the derived cell is close to a random one"
    )
    return (
        f"the search ended undecided: each edge's strongest op is on average only {margin:.4f} "
        f"above uniform (decided: >= {DECIDED_MARGIN}), {what}. Search longer (search.epochs, "
        f"now {epochs}), raise the architecture learning rate search.arch_lr{lr} or let "
        "search.lr=auto set it, or add a sparsity term (search.entropy_weight=0.1); "
        "search.prune_threshold also forces decisions."
    )
