"""A NAS-Bench-201 architecture: one op on each of the cell's 6 edges, read from and written as the
benchmark's architecture string."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...errors import UserError, unknown

NB201_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)


# (to_node, from_node) of each edge, in the order the benchmark's architecture string lists them.
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


NUM_NODES = 4


_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"


_EXPECTED = (
    "Expected the NAS-Bench-201 form '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' "
    f"(e.g. '{_EXAMPLE}') with ops among {', '.join(NB201_OPS)}."
)


# Incoming edges of each node as (edge position, from_node), so cells need no search at run time.
_INCOMING: tuple[tuple[tuple[int, int], ...], ...] = tuple(
    tuple((e, src) for e, (dst, src) in enumerate(NB201_EDGES) if dst == node)
    for node in range(NUM_NODES)
)


@dataclass(frozen=True)
class NB201Arch:
    """One cell of the space: the op of each edge, in ``NB201_EDGES`` order.

    Always valid once built (the constructor checks), so networks and result tables can trust it.
    """

    space: ClassVar[str] = "nb201"

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.ops, str):
            raise UserError(
                f"NB201Arch takes a tuple of 6 op names, got the string '{self.ops}'; "
                "use NB201Arch.parse() for the benchmark's string form."
            )
        ops = tuple(self.ops)
        if len(ops) != len(NB201_EDGES):
            raise UserError(
                f"a NAS-Bench-201 architecture has {len(NB201_EDGES)} edges, got {len(ops)} ops "
                f"{list(ops)}. {_EXPECTED}"
            )
        for name in ops:
            if name not in NB201_OPS:
                raise unknown("NAS-Bench-201 op", str(name), NB201_OPS)
        object.__setattr__(self, "ops", ops)

    @classmethod
    def parse(cls, s: str, source: str = "architecture") -> NB201Arch:
        """Read the benchmark's string form, strictly: a wrong string must not silently mean
        another architecture (the string is the key into the benchmark's tables)."""
        if not isinstance(s, str):
            raise UserError(f"{source} must be a string, got {type(s).__name__}. {_EXPECTED}")
        where = f"{source} '{s}'"
        groups = s.strip().split("+")
        if len(groups) != NUM_NODES - 1:
            raise UserError(
                f"{where} has {len(groups)} node group(s) separated by '+', but needs "
                f"{NUM_NODES - 1} (one each for nodes 1, 2 and 3). {_EXPECTED}"
            )
        ops: list[str] = []
        for node, group in enumerate(groups, start=1):
            if len(group) < 2 or not group.startswith("|") or not group.endswith("|"):
                raise UserError(
                    f"{where}: the group of node {node}, '{group}', must start and end with '|'. "
                    f"{_EXPECTED}"
                )
            entries = group[1:-1].split("|")
            if len(entries) != node:
                raise UserError(
                    f"{where}: node {node} must have {node} incoming edge(s), one from each of "
                    f"nodes {_listing(range(node))}, but its group '{group}' lists "
                    f"{len(entries)}. {_EXPECTED}"
                )
            for want, entry in enumerate(entries):
                name, sep, src = entry.partition("~")
                if not sep or not name or not src:
                    raise UserError(
                        f"{where}: entry '{entry}' of node {node} is not of the form 'op~input'. "
                        f"{_EXPECTED}"
                    )
                if src != str(want):
                    raise UserError(
                        f"{where}: edge {want + 1} of node {node} ('{entry}') reads input "
                        f"'{src}', but must read node {want} (node {node} reads nodes "
                        f"{_listing(range(node))}, in that order). {_EXPECTED}"
                    )
                if name not in NB201_OPS:
                    err = unknown("NAS-Bench-201 op", name, NB201_OPS)
                    raise UserError(f"{where}: {err}") from None
                ops.append(name)
        return cls(tuple(ops))

    def __str__(self) -> str:
        groups = []
        for node in range(1, NUM_NODES):
            entries = "|".join(f"{self.ops[e]}~{src}" for e, src in _INCOMING[node])
            groups.append(f"|{entries}|")
        return "+".join(groups)

    def to_dict(self) -> dict:
        return {"space": "nb201", "arch": str(self)}

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "architecture") -> NB201Arch:
        """Read ``{"space": "nb201", "arch": "<string>"}``; ``space`` may be left out, but any
        other space is refused so a DARTS genotype file is not misread as an NB201 one."""
        shape = '{"space": "nb201", "arch": "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"}'
        if not isinstance(d, Mapping):
            raise UserError(
                f"{source} is not a NAS-Bench-201 architecture: expected a dict {shape}, "
                f"got {type(d).__name__}."
            )
        space = d.get("space", "nb201")
        if space != "nb201":
            raise UserError(
                f"{source} is for the search space '{space}', not 'nb201'; expected {shape}."
            )
        if "arch" not in d:
            raise UserError(f"{source} has no 'arch' entry; expected {shape}.")
        return cls.parse(d["arch"], source=source)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The JSON text of `to_dict` (also written to ``path`` when one is given)."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def op_shares(self) -> dict[str, float]:
        """Fraction of the 6 edges using each op (every op a key), for summaries of searches."""
        return {name: self.ops.count(name) / len(self.ops) for name in NB201_OPS}

    @classmethod
    def from_indices(cls, indices: Iterable[int]) -> NB201Arch:
        """Build from 6 indices into ``NB201_OPS`` (the 0..15,624 enumeration's digits)."""
        idx = [int(i) for i in indices]
        if len(idx) != len(NB201_EDGES) or any(not 0 <= i < len(NB201_OPS) for i in idx):
            raise UserError(
                f"a NAS-Bench-201 architecture needs {len(NB201_EDGES)} op indices in "
                f"0..{len(NB201_OPS) - 1} (into {list(NB201_OPS)}), got {idx}."
            )
        return cls(tuple(NB201_OPS[i] for i in idx))

    def indices(self) -> tuple[int, ...]:
        return tuple(NB201_OPS.index(name) for name in self.ops)


def _listing(nodes: Iterable[int]) -> str:
    nodes = [str(n) for n in nodes]
    return nodes[0] if len(nodes) == 1 else ", ".join(nodes[:-1]) + " and " + nodes[-1]
