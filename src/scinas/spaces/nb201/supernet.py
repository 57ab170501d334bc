"""The NAS-Bench-201 supernet: every op on every edge, mixed by the architecture weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...errors import UserError, unknown
from .. import nd
from ..common import SAMPLING_MODES, active_columns, expected_weights, mixing_weights
from .arch import (
    _INCOMING,
    NB201_EDGES,
    NB201_OPS,
    NUM_NODES,
    NB201Arch,
)
from .network import (
    _build_backbone,
    _check_sizes,
    make_op,
)


class NB201MixedEdge(nn.Module):
    """All non-`none` candidate ops of one supernet edge, addressed by their alpha column."""

    def __init__(self, C: int, op_names: tuple[str, ...], d: int = 2):
        super().__init__()
        self.ops = nn.ModuleList()
        self.columns: list[int] = []  # alpha column of each op in self.ops
        self.slot: dict[int, int] = {}  # alpha column -> position in self.ops
        for k, name in enumerate(op_names):
            op = make_op(name, C, affine=False, track_running_stats=True, d=d)
            if op is not None:
                self.slot[k] = len(self.ops)
                self.columns.append(k)
                self.ops.append(op)

    def mixed(self, x: torch.Tensor, w: Sequence[torch.Tensor], acc, active=None, shared=None):
        """Add ``sum_k w[k] * op_k(x)`` into ``acc`` (None starts a new sum); ``active``: the
        unpruned alpha columns (None: all). Pruned ops are not computed at all. ``shared``: a dict
        that the edges leaving ``x`` fill and reuse with what does not depend on an edge's
        weights: the ReLU that starts each conv op, and the average pool."""
        for k, op in zip(self.columns, self.ops, strict=True):
            if active is not None and k not in active:
                continue
            if shared is None:
                y = op(x)
            elif isinstance(op, nn.Sequential):  # ReLU -> conv -> BatchNorm
                if "relu" not in shared:
                    shared["relu"] = op[0](x)
                y = op[2](op[1](shared["relu"]))
            elif isinstance(op, nn.Identity):
                y = op(x)
            else:  # the average pool
                if k not in shared:
                    shared[k] = op(x)
                y = shared[k]
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

    def __init__(self, C: int, op_names: tuple[str, ...], d: int = 2):
        super().__init__()
        self.edges = nn.ModuleList(NB201MixedEdge(C, op_names, d) for _ in NB201_EDGES)
        self.active: list[list[int]] | None = None  # per edge, the unpruned alpha columns
        self.aux_skip = 0.0  # DARTS-: weight of an extra identity on each edge

    def forward(self, x: torch.Tensor, weights, index: list[int] | None) -> torch.Tensor:
        """``index`` None: ``weights[e][k]`` mixes every unpruned op (DARTS). Otherwise edge e
        runs only op ``index[e]``, scaled by ``weights[e]`` (a scalar, GDAS) or unscaled (weights
        None: a fixed path, which also drops DARTS-' auxiliary skip)."""
        nodes = [x]
        shared: list[dict] = [{} for _ in range(NUM_NODES)]  # per node, for its edges (`mixed`)
        aux = self.aux_skip if weights is not None else 0.0
        for node in range(1, NUM_NODES):
            acc = None
            for e, src in _INCOMING[node]:
                edge = self.edges[e]
                if index is None:
                    active = None if self.active is None else self.active[e]
                    acc = edge.mixed(nodes[src], weights[e], acc, active, shared[src])
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
        input_hw: tuple[int, ...],
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
            in_channels, hw, C, cells_per_stage, lambda c, d: NB201SearchCell(c, op_names, d)
        )
        d = len(hw)
        self.lastact = nn.Sequential(nd.batch_norm(d, C_out), nn.ReLU(inplace=True))
        self.global_pooling = nd.global_pool(d)
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


def _after_load(module: NB201Supernet, incompatible_keys) -> None:
    """A loaded mask (a checkpoint of a pruned search) takes effect at once."""
    module._refresh_active()
