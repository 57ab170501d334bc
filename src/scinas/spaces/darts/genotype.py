"""Genotypes in the DARTS format, their JSON files, published genotypes, and derivation.

A genotype lists, for each intermediate node of a cell, its incoming edges as ``(op_name,
input_index)`` pairs (index 0 and 1 are the two cell inputs, 2.. the earlier nodes), two per node
in DARTS; ``*_concat`` names the states concatenated into the cell output. The JSON form is
``{"normal": [[op, idx], ...], "normal_concat": [...], "reduce": [...], "reduce_concat": [...]}``,
which is what every DARTS-family paper and tool reads.

Derivation rules other than DARTS' top-2 (`DeriveRule`) give nodes other numbers of edges, and
a threshold can keep several ops on one input. Such a genotype adds
``"normal_edges_per_node": [k0, k1, ...]`` (and ``reduce_...``); the pairs stay in node order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

import torch

from ...errors import UserError, unknown
from ...ops import OPS

Edge = tuple[str, int]


FIXED_REDUCE = "gdas_fixed"  # the hand-designed reduction cell of GDAS (network.FixedReductionCell)


@dataclass(frozen=True)
class Genotype:
    """A DARTS cell pair. With ``reduce_cell="gdas_fixed"`` the reduction cell is GDAS'
    hand-designed one and ``reduce``/``reduce_concat`` are empty (JSON: ``"reduce": []`` plus
    ``"reduce_cell": "gdas_fixed"``)."""

    space: ClassVar[str] = "darts"

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    reduce_cell: str = "searched"
    normal_counts: tuple[int, ...] = ()  # edges per node; () means two each (DARTS)
    reduce_counts: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("normal", "reduce"):  # one form per genotype: two-per-node is ()
            counts, edges = getattr(self, f"{name}_counts"), getattr(self, name)
            if counts and all(c == 2 for c in counts) and 2 * len(counts) == len(edges):
                object.__setattr__(self, f"{name}_counts", ())

    @property
    def fixed_reduce(self) -> bool:
        return self.reduce_cell == FIXED_REDUCE

    def counts(self, cell: str) -> tuple[int, ...]:
        """Edges per intermediate node of ``cell`` ("normal" or "reduce")."""
        edges, counts = getattr(self, cell), getattr(self, f"{cell}_counts")
        return counts or (2,) * (len(edges) // 2)

    def node_edges(self, cell: str) -> list[list[int]]:
        """For each intermediate node of ``cell``, the indices of its edges in the edge list."""
        out, k = [], 0
        for c in self.counts(cell):
            out.append(list(range(k, k + c)))
            k += c
        return out

    def edge_nodes(self, cell: str) -> list[int]:
        """The node each edge of ``cell`` feeds."""
        return [n for n, ks in enumerate(self.node_edges(cell)) for _ in ks]

    def to_dict(self) -> dict:
        d = {
            "normal": [[op, idx] for op, idx in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, idx] for op, idx in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.fixed_reduce:
            d["reduce_cell"] = FIXED_REDUCE
        for cell in ("normal", "reduce"):
            if getattr(self, f"{cell}_counts"):
                d[f"{cell}_edges_per_node"] = list(getattr(self, f"{cell}_counts"))
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "genotype") -> Genotype:
        """Parse and validate a DARTS-format dict (from JSON)."""
        try:
            g = cls(
                normal=tuple((str(op), int(i)) for op, i in d["normal"]),
                normal_concat=tuple(int(i) for i in d["normal_concat"]),
                reduce=tuple((str(op), int(i)) for op, i in d["reduce"]),
                reduce_concat=tuple(int(i) for i in d["reduce_concat"]),
                reduce_cell=str(d.get("reduce_cell", "searched")),
                normal_counts=tuple(int(c) for c in d.get("normal_edges_per_node", ())),
                reduce_counts=tuple(int(c) for c in d.get("reduce_edges_per_node", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(
                f"{source} is not a DARTS genotype ({type(e).__name__}: {e}); expected "
                '{"normal": [[op, input_index], ...], "normal_concat": [...], "reduce": [...], '
                '"reduce_concat": [...]}.'
            ) from None
        g.validate(source)
        return g

    def validate(self, source: str = "genotype") -> None:
        if self.reduce_cell not in ("searched", FIXED_REDUCE):
            raise UserError(
                f"{source}: unknown reduce_cell '{self.reduce_cell}' (searched | {FIXED_REDUCE})."
            )
        cells = [("normal", self.normal, self.normal_concat)]
        if self.fixed_reduce:
            if self.reduce or self.reduce_concat:
                raise UserError(
                    f"{source}: with reduce_cell '{FIXED_REDUCE}' the reduce lists must be empty."
                )
            if len(self.normal_concat) != 4:
                raise UserError(
                    f"{source}: the fixed GDAS reduction cell outputs 4 states; the normal cell "
                    f"concatenates {len(self.normal_concat)}."
                )
        else:
            cells.append(("reduce", self.reduce, self.reduce_concat))
        for cell, edges, concat in cells:
            counts = getattr(self, f"{cell}_counts")
            if counts:
                if any(c < 1 for c in counts) or sum(counts) != len(edges):
                    raise UserError(
                        f"{source}: '{cell}_edges_per_node' {list(counts)} must be positive and "
                        f"add up to the {len(edges)} edges of '{cell}'."
                    )
            elif not edges or len(edges) % 2:
                raise UserError(
                    f"{source}: '{cell}' must list two edges per node, got {len(edges)} (or give "
                    f"'{cell}_edges_per_node')."
                )
            n_nodes = len(self.counts(cell))
            for k, ((op, idx), node) in enumerate(zip(edges, self.edge_nodes(cell), strict=True)):
                if op not in OPS:
                    raise unknown("operation", op, OPS.names())
                if not 0 <= idx < node + 2:
                    raise UserError(
                        f"{source}: '{cell}' edge {k} of node {node} reads state {idx}; "
                        f"node {node} can read states 0..{node + 1}."
                    )
            if not concat or any(not 0 <= c < n_nodes + 2 for c in concat):
                raise UserError(f"{source}: '{cell}_concat' {list(concat)} is out of range.")

    @property
    def steps(self) -> int:
        return len(self.counts("normal"))

    def to_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def published_dir():
    return resources.files("scinas.spaces.darts") / "genotypes"


def published_genotypes() -> list[str]:
    return sorted(p.name[:-5] for p in published_dir().iterdir() if p.name.endswith(".json"))


def edge_index(node: int, inp: int) -> int:
    """Row of the alpha matrix for the edge from state ``inp`` into intermediate node ``node``."""
    return node * (node + 3) // 2 + inp  # sum_{k<node} (k + 2) + inp


def num_edges(steps: int) -> int:
    return edge_index(steps, 0)


@dataclass(frozen=True)
class DeriveRule:
    """How a discrete cell is read off the op weights (``search.derive`` / ``--derive``).

    ``topK``: per node the K inputs whose strongest op weighs most, each with that op (DARTS:
    top2). ``ranksA-B``: the inputs ranked A..B instead (the 2nd/3rd or 3rd/4th ranked edges
    studied for GDAS); a node with fewer inputs keeps those it has, at least its weakest.
    ``threshold:X``: every op weighing at least X on every input (several ops may share an input),
    at least the strongest one per node. ``supernet``: no discrete cell; the trained supernet is
    the final model. Suffix ``+none`` lets ``none`` compete (DARTS excludes it): an edge whose
    strongest op is ``none`` is kept as ``none`` (it adds zeros)."""

    kind: str  # "top" | "ranks" | "threshold" | "supernet"
    lo: int = 1  # ranks lo..hi (top K: 1..K)
    hi: int = 2
    threshold: float = 0.0
    with_none: bool = False

    @classmethod
    def parse(cls, text: str) -> DeriveRule:
        spec = text.strip()
        with_none = spec.endswith("+none")
        base = spec.removesuffix("+none")
        try:
            if base.startswith("top") and base[3:].isdigit() and int(base[3:]) >= 1:
                rule = cls("top", 1, int(base[3:]), with_none=with_none)
            elif base.startswith("ranks") and base[5:].count("-") == 1:
                lo, hi = (int(v) for v in base[5:].split("-"))
                if not 1 <= lo <= hi:
                    raise ValueError
                rule = cls("ranks", lo, hi, with_none=with_none)
            elif base.startswith("threshold:"):
                x = float(base[len("threshold:") :])
                if not 0 < x < 1:
                    raise ValueError
                rule = cls("threshold", threshold=x, with_none=with_none)
            elif base == "supernet" and not with_none:
                rule = cls("supernet")
            else:
                raise ValueError
        except ValueError:
            raise UserError(
                f"unknown derivation '{text}': use topK (top2 is DARTS'), ranksA-B (e.g. "
                "ranks2-3), threshold:X with 0<X<1, or supernet; add +none to let 'none' "
                "compete, e.g. top2+none."
            ) from None
        return rule

    def __str__(self) -> str:
        base = {
            "top": f"top{self.hi}",
            "ranks": f"ranks{self.lo}-{self.hi}",
            "threshold": f"threshold:{self.threshold:g}",
            "supernet": "supernet",
        }[self.kind]
        return base + ("+none" if self.with_none else "")


TOP2 = DeriveRule("top", 1, 2)


def derive_cell(
    weights: torch.Tensor,
    ops: tuple[str, ...] | list[str],
    steps: int,
    rule: DeriveRule = TOP2,
) -> tuple[tuple[Edge, ...], tuple[int, ...]]:
    """The discrete cell of one op-weight matrix under ``rule``: its (op, input) pairs in node
    order and the number per node.

    Args:
        weights: (num_edges, num_ops) op weights (softmax of alpha), rows ordered by `edge_index`.
        ops: the op names of the columns.
        steps: number of intermediate nodes.
        rule: a `DeriveRule` other than ``supernet`` (DARTS: top2 without ``none``).
    """
    if rule.kind == "supernet":
        raise ValueError("the supernet rule derives no cell; derive its top2 cell for display")
    w = weights.detach().float().cpu()
    allowed = [k for k, op in enumerate(ops) if rule.with_none or op != "none"]
    if not allowed:
        raise UserError("no op besides 'none' to derive a cell from.")
    cell: list[Edge] = []
    counts: list[int] = []
    for node in range(steps):
        rows = [edge_index(node, j) for j in range(node + 2)]
        strength = [max(w[r, k].item() for k in allowed) for r in rows]
        ranked = sorted(range(node + 2), key=lambda j: -strength[j])
        if rule.kind == "threshold":
            picked = [
                (ops[k], j)
                for j in ranked
                for k in sorted(allowed, key=lambda k, j=j: -w[rows[j], k].item())
                if w[rows[j], k].item() >= rule.threshold
            ]
            if not picked:  # nothing reaches the threshold: the strongest op of the node
                j = ranked[0]
                picked = [(ops[max(allowed, key=lambda k: w[rows[j], k].item())], j)]
        else:
            chosen = ranked[rule.lo - 1 : rule.hi] or ranked[-1:]
            picked = [
                (ops[max(allowed, key=lambda k, j=j: w[rows[j], k].item())], j) for j in chosen
            ]
        cell.extend(picked)
        counts.append(len(picked))
    return tuple(cell), tuple(counts)


def derive_genotype(
    normal_weights: torch.Tensor,
    reduce_weights: torch.Tensor,
    ops: tuple[str, ...] | list[str],
    steps: int,
    rule: DeriveRule = TOP2,
) -> Genotype:
    if rule.kind == "supernet":
        rule = TOP2  # the cell shown for a supernet kept as the final model
    concat = tuple(range(2, steps + 2))
    normal, normal_counts = derive_cell(normal_weights, ops, steps, rule)
    reduce, reduce_counts = derive_cell(reduce_weights, ops, steps, rule)
    return Genotype(
        normal=normal,
        normal_concat=concat,
        reduce=reduce,
        reduce_concat=concat,
        normal_counts=normal_counts,
        reduce_counts=reduce_counts,
    )
