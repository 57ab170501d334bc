"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020): architecture, network and supernet.

A cell is a DAG of 4 nodes: node 0 is the cell input and every later node sums one op applied to
each earlier node, 6 edges in all, each one of 5 ops, so the space has 5**6 = 15,625 cells. The
network stacks the same cell in 3 stages of ``cells_per_stage`` cells, with a ResNet basic block
halving the resolution and doubling the channels between stages. Unlike the DARTS space there are
no reduction cells to search and one architecture describes the whole network, so results can be
looked up in (or compared with) the benchmark's tables by the architecture string.

Deviations from the benchmark's own code, all for inputs the benchmark never sees: the residual
blocks use ceil-mode pooling (odd sizes halve to ceil(H/2)), and a block whose input is already
below 2 pixels on a side keeps the resolution (stride 1) but still widens the channels, so every
input size gets the same three-stage network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserError, unknown
from .base import DecisionSpace, Drawing, SearchSpace, register_space
from .common import SAMPLING_MODES, active_columns, expected_weights, mixing_weights

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


def make_op(name: str, C: int, affine: bool, track_running_stats: bool) -> nn.Module | None:
    """Build op ``name`` for C channels at stride 1; ``none`` is None because it is never run."""
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        k = int(name[-1])
        return nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, k, stride=1, padding=k // 2, bias=False),
            nn.BatchNorm2d(C, affine=affine, track_running_stats=track_running_stats),
        )
    raise unknown("NAS-Bench-201 op", name, NB201_OPS)


class ResidualReduction(nn.Module):
    """The ResNet basic block between stages: C_in -> C_out, halving H and W (ceil) at stride 2.

    At stride 1 (an input too small to halve) it only changes the channels, so the stage layout
    and the parameter count of later stages do not depend on the image size.
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResidualReduction stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.branch = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(C_out),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_out, C_out, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(C_out),
        )
        shortcut: list[nn.Module] = []
        if stride == 2:
            # ceil_mode: an odd side n gives ceil(n/2), as the stride-2 3×3 conv of the branch does
            shortcut.append(nn.AvgPool2d(2, stride=2, ceil_mode=True))
        if stride == 2 or C_in != C_out:
            shortcut.append(nn.Conv2d(C_in, C_out, 1, bias=False))
        self.shortcut = nn.Sequential(*shortcut) if shortcut else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)


class NB201Cell(nn.Module):
    """The discrete cell of one architecture; `none` edges hold no module and cost nothing."""

    def __init__(self, C: int, arch: NB201Arch):
        super().__init__()
        self.arch = arch
        self.ops = nn.ModuleList()
        # per node, its (position in self.ops, from_node) pairs for edges that are not `none`
        wiring: list[list[tuple[int, int]]] = [[] for _ in range(NUM_NODES)]
        for (dst, src), name in zip(NB201_EDGES, arch.ops, strict=True):
            op = make_op(name, C, affine=True, track_running_stats=True)
            if op is not None:
                wiring[dst].append((len(self.ops), src))
                self.ops.append(op)
        self.wiring = tuple(tuple(w) for w in wiring)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, NUM_NODES):
            acc = None
            for k, src in self.wiring[node]:
                y = self.ops[k](nodes[src])
                acc = y if acc is None else acc + y
            # a node whose edges are all `none` is zero, so disconnected cells still run
            nodes.append(torch.zeros_like(x) if acc is None else acc)
        return nodes[-1]


def _check_sizes(in_channels: int, num_outputs: int, input_hw, C: int, cells_per_stage: int):
    hw = tuple(input_hw)
    if len(hw) != 2 or any(int(s) != s or s < 1 for s in hw):
        raise UserError(f"input_hw must be two positive image sizes (H, W), got {input_hw}.")
    for what, value in (
        ("in_channels", in_channels),
        ("num_outputs", num_outputs),
        ("C", C),
        ("cells_per_stage", cells_per_stage),
    ):
        if int(value) != value or value < 1:
            raise UserError(f"{what} must be a positive integer, got {value}.")
    return int(hw[0]), int(hw[1])


def _build_backbone(
    in_channels: int,
    input_hw: tuple[int, int],
    C: int,
    cells_per_stage: int,
    make_cell,
) -> tuple[nn.Module, nn.ModuleList, int]:
    """The stem and the 3 stages of cells with a residual block between them.

    A block halves the resolution only while the map is at least 2×2 before it (8×8 -> 4 -> 2,
    2×2 -> 1 -> 1, 1×1 never); otherwise it runs at stride 1 and only widens the channels.
    """
    h, w = input_hw
    stem = nn.Sequential(
        nn.Conv2d(in_channels, C, 3, padding=1, bias=False),
        nn.BatchNorm2d(C),
    )
    layers = nn.ModuleList()
    C_curr = C
    for stage in range(3):
        if stage > 0:
            stride = 2 if min(h, w) >= 2 else 1
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
            layers.append(ResidualReduction(C_curr, 2 * C_curr, stride))
            C_curr *= 2
        layers.extend(make_cell(C_curr) for _ in range(cells_per_stage))
    return stem, layers, C_curr


class NB201Network(nn.Module):
    """The discrete NAS-Bench-201 network of one architecture, for any C×H×W input.

    ``forward`` returns ``(output, None)`` like the project's DARTS network (no auxiliary head).
    """

    def __init__(
        self,
        arch: NB201Arch,
        in_channels: int,
        num_outputs: int,
        input_hw: tuple[int, int],
        C: int = 16,
        cells_per_stage: int = 5,
    ):
        super().__init__()
        if not isinstance(arch, NB201Arch):
            raise UserError(f"NB201Network needs an NB201Arch, got {type(arch).__name__}.")
        hw = _check_sizes(in_channels, num_outputs, input_hw, C, cells_per_stage)
        self.arch = arch
        self.drop_path_prob = 0.0  # set by the trainer; NAS-Bench-201 trains without drop path
        self.stem, self.cells, C_out = _build_backbone(
            in_channels, hw, C, cells_per_stage, lambda c: NB201Cell(c, arch)
        )
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_out), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_out, num_outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        s = self.stem(x)
        for layer in self.cells:
            s = layer(s)
        s = self.lastact(s)
        return self.classifier(self.global_pooling(s).flatten(1)), None


class NB201MixedEdge(nn.Module):
    """All non-`none` candidate ops of one supernet edge, addressed by their alpha column."""

    def __init__(self, C: int, op_names: tuple[str, ...]):
        super().__init__()
        self.ops = nn.ModuleList()
        self.columns: list[int] = []  # alpha column of each op in self.ops
        self.slot: dict[int, int] = {}  # alpha column -> position in self.ops
        for k, name in enumerate(op_names):
            op = make_op(name, C, affine=False, track_running_stats=True)
            if op is not None:
                self.slot[k] = len(self.ops)
                self.columns.append(k)
                self.ops.append(op)

    def mixed(self, x: torch.Tensor, w: Sequence[torch.Tensor], acc, active=None):
        """Add ``sum_k w[k] * op_k(x)`` into ``acc`` (None starts a new sum); ``active``: the
        unpruned alpha columns (None: all). Pruned ops are not computed at all."""
        for k, op in zip(self.columns, self.ops, strict=True):
            if active is not None and k not in active:
                continue
            y = op(x)
            acc = y * w[k] if acc is None else torch.addcmul(acc, w[k], y)
        return acc

    def single(self, x: torch.Tensor, k: int, w: torch.Tensor | None, acc):
        """Add ``w * op_k(x)`` (or ``op_k(x)`` when w is None) into ``acc``; `none` adds nothing."""
        slot = self.slot.get(k)
        if slot is None:
            return acc
        y = self.ops[slot](x)
        if w is None:
            return y if acc is None else acc + y
        return y * w if acc is None else torch.addcmul(acc, w, y)


class NB201SearchCell(nn.Module):
    """The supernet cell: each of the 6 edges mixes (or samples) the candidate ops."""

    def __init__(self, C: int, op_names: tuple[str, ...]):
        super().__init__()
        self.edges = nn.ModuleList(NB201MixedEdge(C, op_names) for _ in NB201_EDGES)
        self.active: list[list[int]] | None = None  # per edge, the unpruned alpha columns
        self.aux_skip = 0.0  # DARTS-: weight of an extra identity on each edge

    def forward(self, x: torch.Tensor, weights, index: list[int] | None) -> torch.Tensor:
        """``index`` None: ``weights[e][k]`` mixes every unpruned op (DARTS). Otherwise edge e
        runs only op ``index[e]``, scaled by ``weights[e]`` (a scalar, GDAS) or unscaled (weights
        None: a fixed path, which also drops DARTS-' auxiliary skip)."""
        nodes = [x]
        aux = self.aux_skip if weights is not None else 0.0
        for node in range(1, NUM_NODES):
            acc = None
            for e, src in _INCOMING[node]:
                edge = self.edges[e]
                if index is None:
                    active = None if self.active is None else self.active[e]
                    acc = edge.mixed(nodes[src], weights[e], acc, active)
                else:
                    w = None if weights is None else weights[e]
                    acc = edge.single(nodes[src], index[e], w, acc)
                if aux:
                    s = nodes[src]
                    acc = s * aux if acc is None else torch.add(acc, s, alpha=aux)
            nodes.append(torch.zeros_like(x) if acc is None else acc)
        return nodes[-1]


class NB201Supernet(nn.Module):
    """Weight-sharing supernet of the NAS-Bench-201 space, one alpha shared by all cells.

    ``sampling`` picks how edges combine ops: ``"softmax"`` (DARTS, every op weighted by
    softmax(alpha)) or ``"gumbel"`` (GDAS, one op per edge sampled per forward pass, with a
    straight-through weight so alpha learns; ``tau`` is set by the strategy). `set_paths` fixes one
    discrete path instead (random search with weight sharing), overriding ``sampling``.
    ``forward`` returns the output tensor, as the DARTS supernet does.
    """

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        input_hw: tuple[int, int],
        C: int = 16,
        cells_per_stage: int = 5,
        op_names: Sequence[str] = NB201_OPS,
    ):
        super().__init__()
        op_names = tuple(op_names)
        for name in op_names:
            if name not in NB201_OPS:
                raise unknown("NAS-Bench-201 op", name, NB201_OPS)
        if len(set(op_names)) != len(op_names):
            raise UserError(f"the op list {list(op_names)} names an op twice.")
        if all(name == "none" for name in op_names):
            raise UserError("the op list needs at least one op besides 'none'.")
        hw = _check_sizes(in_channels, num_outputs, input_hw, C, cells_per_stage)
        self.op_names = op_names
        self.sampling = "softmax"
        self.tau = 10.0
        self._path: list[int] | None = None
        self.stem, self.cells, C_out = _build_backbone(
            in_channels, hw, C, cells_per_stage, lambda c: NB201SearchCell(c, op_names)
        )
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_out), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_out, num_outputs)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(NB201_EDGES), len(op_names)))
        # progressive pruning: False where an op was removed from its edge (a buffer: it
        # travels in state_dict, so checkpoints and resumed searches keep it)
        self.register_buffer("mask", torch.ones(len(NB201_EDGES), len(op_names), dtype=torch.bool))
        self.register_load_state_dict_post_hook(_after_load)
        self._full = True  # nothing pruned yet (cells: active None)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p is not self.alpha]

    def edge_weights(self) -> torch.Tensor:
        """(6, len(op_names)): the mixing weights and derivation scores, softmax(alpha) (the
        Dirichlet mean under DrNAS), pruned ops at 0."""
        return expected_weights(self.alpha, self._mask(), self.sampling)

    # ---- the cell's op choices, by name (regularisers, pruning, decidedness)
    def op_alphas(self) -> dict[str, nn.Parameter]:
        return {"cell": self.alpha}

    def op_masks(self) -> dict[str, torch.Tensor]:
        return {"cell": self.mask}

    def op_weights(self) -> dict[str, torch.Tensor]:
        return {"cell": self.edge_weights()}

    def set_op_mask(self, cell: str, mask: torch.Tensor) -> None:
        self.mask.copy_(mask)
        self._refresh_active()

    def set_aux_skip(self, weight: float) -> None:
        for layer in self.cells:
            if isinstance(layer, NB201SearchCell):
                layer.aux_skip = float(weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # supernets saved before pruning existed have no mask: nothing was pruned
        state_dict.setdefault(prefix + "mask", torch.ones_like(self.mask))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _mask(self) -> torch.Tensor | None:
        return None if self._full else self.mask

    def _refresh_active(self) -> None:
        self._full = bool(self.mask.all())
        active = None if self._full else active_columns(self.mask)
        for layer in self.cells:
            if isinstance(layer, NB201SearchCell):
                layer.active = active

    @property
    def path(self) -> list[int] | None:
        """The fixed path of `set_paths`, or None while ``sampling`` decides."""
        return None if self._path is None else list(self._path)

    def set_paths(self, indices: torch.Tensor | Sequence[int] | None) -> None:
        """Fix each edge to one op (6 indices into ``op_names``), or None to mix/sample again.

        On a fixed path every edge runs only its op with weight 1: the weights along the path
        train and alpha gets no gradient.
        """
        if indices is None:
            self._path = None
            return
        idx = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        K = len(self.op_names)
        if len(idx) != len(NB201_EDGES) or any(int(i) != i or not 0 <= i < K for i in idx):
            raise UserError(
                f"a path needs {len(NB201_EDGES)} op indices in 0..{K - 1} "
                f"(into {list(self.op_names)}), got {idx}."
            )
        self._path = [int(i) for i in idx]

    def set_arch(self, arch: NB201Arch | None) -> None:
        """Fix the path of an architecture (its op on every edge), or None to clear it."""
        if arch is None:
            self.set_paths(None)
            return
        missing = [op for op in arch.ops if op not in self.op_names]
        if missing:
            raise UserError(f"op(s) {missing} of {arch} are not in the supernet's op list.")
        self.set_paths([self.op_names.index(op) for op in arch.ops])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._path is not None:
            weights, index = None, self._path
        elif self.sampling in SAMPLING_MODES:
            w, sampled = mixing_weights(
                self.alpha, self._mask(), self.sampling, self.tau, self.training
            )
            if sampled is not None:
                # each edge needs only its sampled column; one gather, one .tolist() per forward
                weights = w.gather(1, sampled.unsqueeze(1)).squeeze(1).unbind(0)
                index = sampled.tolist()
            else:
                weights, index = [row.unbind(0) for row in w.unbind(0)], None
        else:
            raise UserError(
                f"unknown supernet sampling '{self.sampling}'; use one of "
                f"{', '.join(SAMPLING_MODES)}."
            )
        s = self.stem(x)
        for layer in self.cells:
            s = layer(s, weights, index) if isinstance(layer, NB201SearchCell) else layer(s)
        s = self.lastact(s)
        return self.classifier(self.global_pooling(s).flatten(1))

    @torch.no_grad()
    def genotype(self) -> NB201Arch:
        """The argmax op of each edge over all of ``op_names``, `none` included, as the
        benchmark's DARTS derivation does (so a `none`-dominated edge is reported as such);
        pruned ops never win."""
        best = self.edge_weights().argmax(dim=-1).tolist()
        return NB201Arch(tuple(self.op_names[k] for k in best))


@register_space
class NB201Space(SearchSpace):
    name = "nb201"
    description = "the NAS-Bench-201 cell space: one cell of 4 nodes, 6 edges, 5 ops (15,625)"
    has_supernet = True
    has_alphas = True

    def from_dict(self, data, source: str = "architecture") -> NB201Arch:
        return NB201Arch.from_dict(data, source=source)

    def parse(self, text: str, source: str = "architecture") -> NB201Arch | None:
        return NB201Arch.parse(text, source=source) if text.startswith("|") else None

    def default_ops(self) -> tuple[str, ...]:
        return NB201_OPS

    def decisions(self, s) -> DecisionSpace:
        return nb201_decisions(self.op_names(s))

    def build_supernet(self, s, input_shape, num_outputs: int, device=None) -> NB201Supernet:
        C_in, H, W = input_shape
        return NB201Supernet(
            C_in,
            num_outputs,
            (H, W),
            C=s.C,
            cells_per_stage=max(1, s.layers // 3),
            op_names=self.op_names(s),
        )

    def arch_record(self, model) -> dict:
        return {
            "ops": list(model.op_names),
            "space": "nb201",
            "edges": model.edge_weights().detach().cpu().tolist(),
            "alpha": model.alpha.detach().cpu().tolist(),
            "genotype": model.genotype().to_dict(),
        }

    def weight_maps(self) -> list[tuple[str, str, str]]:
        return [("cell", "edges", "cell")]

    def build_network(self, arch: NB201Arch, t, input_shape, num_outputs: int) -> NB201Network:
        """The benchmark's macro skeleton: ``train.layers`` cells in 3 stages."""
        C_in, H, W = input_shape
        return NB201Network(
            arch, C_in, num_outputs, (H, W), C=t.C, cells_per_stage=max(1, t.layers // 3)
        )

    def network_summary(self, arch, t) -> str:
        return f"C={t.C} cells per stage={max(1, t.layers // 3)}"

    def inherit_sizes(self, s, t):
        return t.model_copy(update={"C": s.C, "layers": s.layers})

    def inherit_weights(self, supernet: NB201Supernet, network: NB201Network, arch) -> list:
        """Stem, the residual blocks between stages, each cell's op of every edge that is not
        `none`, the last BatchNorm and the classifier."""
        from ..weights import copy_weights

        pairs = []
        for name in ("stem", "lastact", "classifier"):
            pairs += copy_weights(getattr(supernet, name), getattr(network, name), name, name)
        for i, (sc, nc) in enumerate(zip(supernet.cells, network.cells, strict=True)):
            at = f"cells.{i}"
            if not isinstance(sc, NB201SearchCell):  # a residual block
                pairs += copy_weights(sc, nc, at, at)
                continue
            kept = 0  # the network's ops hold the edges that are not `none`, in edge order
            for e, op in enumerate(arch.ops):
                if op == "none":
                    continue
                edge = sc.edges[e]
                slot = edge.slot[supernet.op_names.index(op)]
                pairs += copy_weights(
                    edge.ops[slot], nc.ops[kept], f"{at}.edges.{e}.ops.{slot}", f"{at}.ops.{kept}"
                )
                kept += 1
        return pairs

    def drawing(self, data: dict) -> Drawing:
        arch = NB201Arch.from_dict(data)
        edges = tuple(
            (f"n{frm}", f"n{to}", op)
            for (to, frm), op in zip(NB201_EDGES, arch.ops, strict=True)
            if op != "none"
        )
        return Drawing((("cell", "NAS-Bench-201 cell", edges),))

    def cell_ops(self, data: dict) -> dict[str, list[str]]:
        return {"cell": list(NB201Arch.from_dict(data).ops)}


def _after_load(module: NB201Supernet, incompatible_keys) -> None:
    """A loaded mask (a checkpoint of a pruned search) takes effect at once."""
    module._refresh_active()


def nb201_decisions(op_names: tuple[str, ...] | None = None) -> DecisionSpace:
    """One decision per edge: its op."""
    ops = tuple(op_names or NB201_OPS)
    names = [f"{to}<-{frm}" for to, frm in NB201_EDGES]
    return DecisionSpace(
        "nb201",
        tuple((n, ops) for n in names),
        lambda p: NB201Arch(tuple(p[n] for n in names)),
    )
