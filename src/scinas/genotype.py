"""Genotypes in the DARTS format, their JSON files, published genotypes, and derivation.

A genotype lists, for each intermediate node of a cell, its incoming edges as ``(op_name,
input_index)`` pairs (index 0 and 1 are the two cell inputs, 2.. the earlier nodes), two per node
in DARTS; ``*_concat`` names the states concatenated into the cell output. The JSON form is
``{"normal": [[op, idx], ...], "normal_concat": [...], "reduce": [...], "reduce_concat": [...]}``,
which is what every DARTS-family paper and tool reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .errors import UserError, unknown
from .ops import OPS

Edge = tuple[str, int]


FIXED_REDUCE = "gdas_fixed"  # the hand-designed reduction cell of GDAS (network.FixedReductionCell)


@dataclass(frozen=True)
class Genotype:
    """A DARTS cell pair. With ``reduce_cell="gdas_fixed"`` the reduction cell is GDAS'
    hand-designed one and ``reduce``/``reduce_concat`` are empty (JSON: ``"reduce": []`` plus
    ``"reduce_cell": "gdas_fixed"``)."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    reduce_cell: str = "searched"

    @property
    def fixed_reduce(self) -> bool:
        return self.reduce_cell == FIXED_REDUCE

    def to_dict(self) -> dict:
        d = {
            "normal": [[op, idx] for op, idx in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, idx] for op, idx in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.fixed_reduce:
            d["reduce_cell"] = FIXED_REDUCE
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
            if not edges or len(edges) % 2:
                raise UserError(
                    f"{source}: '{cell}' must list two edges per node, got {len(edges)}."
                )
            n_nodes = len(edges) // 2
            for k, (op, idx) in enumerate(edges):
                if op not in OPS:
                    raise unknown("operation", op, OPS.names())
                if op == "none":
                    raise UserError(
                        f"{source}: '{cell}' uses 'none', which a final cell cannot have."
                    )
                node = k // 2
                if not 0 <= idx < node + 2:
                    raise UserError(
                        f"{source}: '{cell}' edge {k} of node {node} reads state {idx}; "
                        f"node {node} can read states 0..{node + 1}."
                    )
            if not concat or any(not 0 <= c < n_nodes + 2 for c in concat):
                raise UserError(f"{source}: '{cell}_concat' {list(concat)} is out of range.")

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def to_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _published_dir():
    return resources.files("scinas") / "genotypes"


def published_genotypes() -> list[str]:
    return sorted(p.name[:-5] for p in _published_dir().iterdir() if p.name.endswith(".json"))


def arch_from_dict(data, source: str = "genotype"):
    """A DARTS `Genotype`, or an `NB201Arch` for ``{"space": "nb201", "arch": "|...|"}``."""
    if isinstance(data, dict) and data.get("space") == "baseline":
        from .baselines import BaselineArch

        return BaselineArch.from_dict(data, source=source)
    if isinstance(data, dict) and data.get("space") == "nb201":
        from .spaces.nb201 import NB201Arch

        return NB201Arch.from_dict(data, source=source)
    if isinstance(data, dict) and data.get("space", "darts") != "darts":
        raise UserError(f"{source}: unknown search space {data.get('space')!r} (darts | nb201).")
    if not isinstance(data, dict):
        raise UserError(f"{source} is not a genotype: expected a JSON object.")
    return Genotype.from_dict(data, source=source)


def load_genotype(name_or_path: str | os.PathLike):
    """Load an architecture: a published name (``DARTS_V2``), a JSON file, a run directory, or a
    NAS-Bench-201 string (``|nor_conv_3x3~0|+|...|``). DARTS-space files give a `Genotype`,
    NAS-Bench-201 ones an `NB201Arch`."""
    text = str(name_or_path)
    if text.startswith("|"):
        from .spaces.nb201 import NB201Arch

        return NB201Arch.parse(text)
    path = Path(name_or_path)
    if path.is_dir() and (path / "genotype.json").is_file():
        path = path / "genotype.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(
                f"cannot read genotype file {path}: {e}. Give a JSON genotype."
            ) from None
        return arch_from_dict(data, source=str(path))
    name = str(name_or_path)
    from .baselines import BASELINES, BaselineArch

    if name in BASELINES:
        return BaselineArch(name)
    published = published_genotypes()
    if name in published:
        data = json.loads((_published_dir() / f"{name}.json").read_text())
        return Genotype.from_dict(data, source=name)
    raise unknown("genotype", name, [*published, *BASELINES.names()])


def edge_index(node: int, inp: int) -> int:
    """Row of the alpha matrix for the edge from state ``inp`` into intermediate node ``node``."""
    return node * (node + 3) // 2 + inp  # sum_{k<node} (k + 2) + inp


def num_edges(steps: int) -> int:
    return edge_index(steps, 0)


def derive_cell(
    weights: torch.Tensor,
    ops: tuple[str, ...] | list[str],
    steps: int,
    *,
    exclude_none: bool = True,
) -> tuple[Edge, ...]:
    """Pick, for each node, the two incoming edges whose strongest op weighs most, and that op.

    Args:
        weights: (num_edges, num_ops) op weights (softmax of alpha), rows ordered by `edge_index`.
        ops: the op names of the columns.
        steps: number of intermediate nodes.
        exclude_none: ignore the `none` column when ranking edges and choosing ops (DARTS).
    """
    w = weights.detach().float().cpu()
    allowed = [k for k, op in enumerate(ops) if not (exclude_none and op == "none")]
    cell: list[Edge] = []
    for node in range(steps):
        rows = [edge_index(node, j) for j in range(node + 2)]
        strength = [max(w[r, k].item() for k in allowed) for r in rows]
        best_inputs = sorted(range(node + 2), key=lambda j: -strength[j])[:2]
        for j in best_inputs:
            r = rows[j]
            k = max(allowed, key=lambda k, r=r: w[r, k].item())
            cell.append((ops[k], j))
    return tuple(cell)


def derive_genotype(
    normal_weights: torch.Tensor,
    reduce_weights: torch.Tensor,
    ops: tuple[str, ...] | list[str],
    steps: int,
) -> Genotype:
    concat = tuple(range(2, steps + 2))
    return Genotype(
        normal=derive_cell(normal_weights, ops, steps),
        normal_concat=concat,
        reduce=derive_cell(reduce_weights, ops, steps),
        reduce_concat=concat,
    )
