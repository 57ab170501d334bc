"""Progressive pruning of a one-shot search: ops that stay weak leave their edge.

With ``search.prune_threshold=T`` and ``search.prune_patience=k``, an op whose weight on its
edge (its share among the edge's remaining ops, as the relaxation weights them) stays below T
for k consecutive search epochs is removed: its mask entry in the supernet goes False, the
supernet no longer computes it (each later epoch is cheaper), its weight is 0 and the remaining
ops' weights are renormalised. An edge always keeps its strongest op and at least one op that is
not `none`. Epochs before ``search.warmup_epochs`` are ended, the alphas untouched, so they do
not count.

With ``search.greedy_decisions=true`` (SGAS-style, Li et al. 2020), an edge whose strongest op
(not `none`) has at least `GREEDY_RATIO` times the weight of each other remaining op is decided:
every other op leaves it at once and the edge costs one op from then on.

Every removal is an event (``{"event": "prune", ...}`` in metrics.jsonl, a log line, a row of the
report's pruning table). The masks are buffers of the supernet, so they are saved in every
checkpoint with the model; the counters are the strategy's checkpointed state.
"""

from __future__ import annotations

import torch

from .oneshot_settings import ArchSettings

GREEDY_RATIO = 2.0  # "clearly ahead": at least twice the weight of every other op on the edge


class Pruner:
    def __init__(self, threshold: float | None, patience: int, greedy: bool):
        self.threshold, self.patience, self.greedy = threshold, patience, greedy
        self.below: dict[str, list[list[int]]] = {}  # cell -> per edge, per op: epochs below

    @classmethod
    def from_settings(cls, s) -> Pruner | None:
        """The pruner search section ``s`` asks for (None: its strategy learns no alphas, or
        neither pruning nor greedy decisions is on)."""
        own = s.own
        if not isinstance(own, ArchSettings):
            return None
        if own.prune_threshold is None and not own.greedy_decisions:
            return None
        return cls(own.prune_threshold, own.prune_patience, own.greedy_decisions)

    def state_dict(self) -> dict:
        return {"below": self.below}

    def load_state_dict(self, state: dict) -> None:
        self.below = {c: [list(r) for r in rows] for c, rows in state["below"].items()}

    @torch.no_grad()
    def update(self, model, epoch: int) -> list[dict]:
        """Count this epoch's weak ops, remove those due; returns one event per removed op."""
        names = list(model.op_names)
        events = []
        weights, masks = model.op_weights(), model.op_masks()
        for cell, w in weights.items():
            w = w.detach().double().cpu()
            mask = masks[cell].detach().cpu().clone()
            counts = self.below.setdefault(cell, [[0] * len(names) for _ in range(len(w))])
            for e in range(len(w)):
                events += self._edge(cell, e, w[e], mask[e], counts[e], names, epoch)
            if not torch.equal(mask, masks[cell].cpu()):
                model.set_op_mask(cell, mask.to(masks[cell].device))
        return events

    def _edge(self, cell, e, w, mask, counts, names, epoch) -> list[dict]:
        active = [k for k in range(len(names)) if mask[k]]
        best = max(active, key=lambda k: float(w[k]))
        out = []

        def remove(k: int, reason: str) -> None:
            mask[k] = False
            counts[k] = 0
            out.append(
                {
                    "event": "prune",
                    "epoch": epoch,
                    "cell": cell,
                    "edge": e,
                    "op": names[k],
                    "weight": round(float(w[k]), 6),
                    "reason": reason,
                    "ops_left": int(mask.sum()),
                }
            )

        if self.greedy and len(active) > 1 and names[best] != "none":
            others = [float(w[k]) for k in active if k != best]
            if float(w[best]) >= GREEDY_RATIO * max(others):
                for k in active:
                    if k != best:
                        remove(k, f"decided: {names[best]} leads (greedy)")
                return out
        if self.threshold is None:
            return out
        for k in active:
            counts[k] = counts[k] + 1 if float(w[k]) < self.threshold else 0
        due = sorted(
            (k for k in active if k != best and counts[k] >= self.patience), key=lambda k: w[k]
        )
        for k in due:
            left = [j for j in range(len(names)) if mask[j] and j != k and names[j] != "none"]
            if not left:  # the edge keeps one op that is not `none`
                continue
            remove(k, f"below {self.threshold:g} for {self.patience} epoch(s)")
        return out


def ops_left(model) -> tuple[int, int]:
    """(ops still active, ops in all) over every searched edge."""
    masks = model.op_masks().values()
    return sum(int(m.sum()) for m in masks), sum(m.numel() for m in masks)


def describe_event(ev: dict) -> str:
    return (
        f"pruned {ev['op']} from {ev['cell']} edge {ev['edge']} at epoch {ev['epoch']} "
        f"(weight {ev['weight']:.4f}, {ev['reason']}); {ev['ops_left']} op(s) left on the edge"
    )
