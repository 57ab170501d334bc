"""The DARTS supernet: every edge is a softmax-weighted mixture of all candidate ops.

Where the time goes in the original DARTS code, and what this one does instead:

* ``none`` contributes zeros: it is never computed. It still takes part in the softmax, so its
  alpha gets the correct gradient (through the normalisation of the other weights).
* Every conv op starts with a ReLU of its input; a node state feeds up to 4 conv ops on each of up
  to 5 edges, so the ReLU is computed once per state and the ops are built without it.
* The weighted sum accumulates into one tensor with fused multiply-adds (``addcmul``) instead of
  a full-size temporary per op, and the sum over a node's edges goes into the same accumulator.
* A pooling op (pool, then an affine-free BatchNorm) has no weights: on every edge leaving one
  state it computes the same map, so a cell computes it once per state and op and shares it
  (each edge's BatchNorm statistics are still kept, as copies of the one computed).
* Architecture weights are ``nn.Parameter``s of the module (so they travel in ``state_dict``), but
  optimisers see them apart: `weight_parameters()` and `arch_parameters()`.
* What autograd keeps for backward is cut to what cannot be cheaply recomputed (`scinas.ops`):
  the depthwise->1×1 pairs of the conv ops keep only their input and recompute the rest, and the
  ops' BatchNorms keep their output (which the weighted sum keeps anyway) instead of their input.
  In a weight step an edge keeps 10 feature maps' worth (the max pool's int64 indices count
  two) instead of 18, of which the pooling ops' are kept once per state (above).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...errors import UserError
from ...ops import (
    OPS,
    FactorizedReduce,
    ReLUConvBN,
    create_op,
    op_takes_relu,
    search_batch_norm,
)
from .. import nd
from ..common import active_columns, expected_weights, mixing_weights
from .genotype import (
    FIXED_REDUCE,
    TOP2,
    DeriveRule,
    Genotype,
    derive_genotype,
    edge_index,
    num_edges,
)
from .network import FixedReductionCell, build_cells, make_stem, plan_reductions


class MixedOp(nn.Module):
    """All non-`none` candidate ops of one edge."""

    def __init__(self, C: int, stride: int, op_names: tuple[str, ...], d: int = 2):
        super().__init__()
        self.columns: list[int] = []  # column of each computed op in the alpha row
        self.takes_relu: list[bool] = []
        self.pooling: list[bool] = []  # no weights: the same output on every edge of a state
        self.ops = nn.ModuleList()
        for k, name in enumerate(op_names):
            if name == "none":
                continue
            op = create_op(name, C, stride, affine=False, relu_in=False, d=d)
            if "pool" in name:  # as in DARTS: normalise pooled outputs in the search
                op = nn.Sequential(op, search_batch_norm(C, False, d))
            self.ops.append(op)
            self.columns.append(k)
            self.takes_relu.append(op_takes_relu(name, stride))
            self.pooling.append("pool" in name)

    def forward(self, x, x_relu, weights, acc, active=None, shared=None):
        """Add ``sum_k weights[k] * op_k(x)`` into ``acc`` (None starts a new sum); ``active``: the
        alpha columns not pruned (None: all). Pruned ops are not computed at all. ``shared``: a
        dict of the pooling ops' outputs on ``x`` (alpha column: (output, BatchNorm)) that the
        edges leaving ``x`` fill and reuse."""
        for k, op, relu, pooling in zip(
            self.columns, self.ops, self.takes_relu, self.pooling, strict=False
        ):
            if active is not None and k not in active:
                continue
            if shared is not None and pooling:
                y = _pooled(op, x, k, shared)
            else:
                y = op(x_relu if relu else x)
            acc = y * weights[k] if acc is None else torch.addcmul(acc, weights[k], y)
        return acc

    def single(self, x, x_relu, k: int, weight, acc):
        """Add only op ``k`` (alpha column), times ``weight`` (None: 1), into ``acc``.

        Used by GDAS (one sampled op per edge) and by fixed paths (random search with weight
        sharing): the other ops are not computed at all. `none` adds nothing.
        """
        if k not in self.columns:  # `none`
            return acc
        pos = self.columns.index(k)
        y = self.ops[pos](x_relu if self.takes_relu[pos] else x)
        if weight is not None:
            y = y * weight
        return y if acc is None else acc + y


def _pooled(op: nn.Sequential, x, k: int, shared: dict):
    """``op(x)`` (pool, then BatchNorm) as another edge leaving ``x`` computed it, its
    BatchNorm's statistics copied into ``op``'s; computed and kept in ``shared`` if none did."""
    if k not in shared:
        shared[k] = (op(x), op[-1])
        return shared[k][0]
    y, bn = shared[k]
    if op.training and op[-1].track_running_stats:
        with torch.no_grad():
            for mine, theirs in zip(op[-1].buffers(), bn.buffers(), strict=True):
                mine.copy_(theirs)
    return y


class SearchCell(nn.Module):
    def __init__(
        self, steps, multiplier, C_pp, C_p, C, reduction, reduction_prev, op_names, d: int = 2
    ):
        super().__init__()
        self.reduction = reduction
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0 = (
            FactorizedReduce(C_pp, C, affine=False, d=d)
            if reduction_prev
            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False, d=d)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False, d=d)
        self.edges = nn.ModuleList()
        self.strides: list[int] = []
        for node in range(steps):
            for j in range(node + 2):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(C, stride, op_names, d))
                self.strides.append(stride)
        self.active: list[list[int]] | None = None  # per edge, the unpruned alpha columns
        self.aux_skip = 0.0  # DARTS-: weight of an extra identity on each stride-1 edge

    def forward(self, s0, s1, weights, index=None):
        """``weights`` (num_edges, num_ops) or None; ``index`` None (every op, weighted) or one
        alpha column per edge (-1: edge off), computing only that op. Pruned ops (``active``)
        are skipped; ``aux_skip`` > 0 adds that multiple of each stride-1 edge's input (DARTS-'
        auxiliary skip connection) unless the path is fixed (``weights`` None)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        relus = [F.relu(s) for s in states]
        pooled: list[dict] = [{}, {}]  # per state, the pooling ops' outputs its edges share
        aux = self.aux_skip if weights is not None else 0.0
        for node in range(self.steps):
            acc = None
            for j in range(node + 2):
                e = edge_index(node, j)
                if index is None:
                    active = None if self.active is None else self.active[e]
                    acc = self.edges[e](states[j], relus[j], weights[e], acc, active, pooled[j])
                elif index[e] >= 0:
                    w = None if weights is None else weights[e, index[e]]
                    acc = self.edges[e].single(states[j], relus[j], index[e], w, acc)
                if aux and self.strides[e] == 1:
                    acc = states[j] * aux if acc is None else torch.add(acc, states[j], alpha=aux)
            if acc is None:  # every incoming edge off or `none`
                acc = self._zeros_like_node(states)
            states.append(acc)
            relus.append(F.relu(acc))
            pooled.append({})
        return torch.cat(states[-self.multiplier :], dim=1)

    def _zeros_like_node(self, states):
        s = states[0]
        if len(states) > 2:
            return torch.zeros_like(states[2])
        if not self.reduction:
            return torch.zeros_like(s)
        return s.new_zeros(*s.shape[:2], *(-(-n // 2) for n in s.shape[2:]))


def genotype_paths(genotype: Genotype, op_names) -> tuple[list[int], list[int]]:
    """The supernet path of a genotype: per edge the alpha column of its op, -1 where the
    genotype has no edge."""
    steps = genotype.steps  # a fixed reduction cell has no edges: path all -1
    out = []
    for cell in ("normal", "reduce"):
        path = [-1] * num_edges(steps)
        for (op, j), node in zip(getattr(genotype, cell), genotype.edge_nodes(cell), strict=True):
            if op not in op_names:
                raise UserError(f"op '{op}' of the genotype is not in the search space's op list.")
            if path[edge_index(node, j)] != -1:
                raise UserError("a supernet path has one op per edge; this genotype has more.")
            path[edge_index(node, j)] = list(op_names).index(op)
        out.append(path)
    return out[0], out[1]


class Supernet(nn.Module):
    """DARTS search network over ``op_names`` for any C×H×W input (series: C×L, ``input_hw``
    (L,)) and any number of outputs."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        input_hw: tuple[int, ...],
        C: int = 16,
        layers: int = 8,
        op_names: tuple[str, ...] | list[str] = (),
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        reductions: int | None = None,
        checkpoint_cells: bool = False,
        fixed_reduce: bool = False,
        derive_rule: DeriveRule = TOP2,
    ):
        super().__init__()
        from ...ops import DARTS_OPS

        self.derive_rule = derive_rule
        self.checkpoint_cells = checkpoint_cells
        self.fixed_reduce = fixed_reduce
        if fixed_reduce and (steps != 4 or multiplier != 4):
            raise UserError(
                "the fixed GDAS reduction cell needs 4 nodes per cell (search.nodes=4)."
            )

        op_names = tuple(op_names) or DARTS_OPS
        for name in op_names:
            OPS.get(name)  # unknown op -> UserError with a suggestion
        if len(set(op_names)) != len(op_names):
            raise UserError(f"the op list {list(op_names)} names an op twice.")
        if all(name == "none" for name in op_names):
            raise UserError("the op list needs at least one op besides 'none'.")
        self.op_names = op_names
        self.steps, self.multiplier = steps, multiplier
        positions = plan_reductions(layers, input_hw, reductions)
        d = len(tuple(input_hw))
        self.stem = make_stem(in_channels, stem_multiplier * C, d)
        self.cells, channels = build_cells(
            layers,
            C,
            stem_multiplier * C,
            positions,
            multiplier,
            lambda C_pp, C_p, C_curr, red, red_prev: (
                FixedReductionCell(C_pp, C_p, C_curr, red_prev, affine=False, d=d)
                if red and fixed_reduce
                else SearchCell(steps, multiplier, C_pp, C_p, C_curr, red, red_prev, op_names, d)
            ),
        )
        C_p = channels[-1]
        self.global_pooling = nd.global_pool(d)
        self.classifier = nn.Linear(C_p, num_outputs)
        E, K = num_edges(steps), len(op_names)
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(E, K))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(E, K))
        self.sampling = "softmax"  # "gumbel": GDAS, one sampled op per edge; "dirichlet": DrNAS
        self.tau = 10.0  # Gumbel-softmax temperature (GDAS anneals it)
        self._paths: tuple[list[int], list[int]] | None = None
        # progressive pruning: False where an op was removed from its edge (buffers, so they
        # travel in state_dict: checkpoints and resumed searches keep them)
        self.register_buffer("mask_normal", torch.ones(E, K, dtype=torch.bool))
        self.register_buffer("mask_reduce", torch.ones(E, K, dtype=torch.bool))
        self.register_load_state_dict_post_hook(_after_load)
        self._full = {"normal": True, "reduce": True}  # nothing pruned yet (cells: active None)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The alphas that are searched (only the normal cell's with a fixed reduction cell)."""
        if self.fixed_reduce:
            return [self.alpha_normal]
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(self.alpha_normal), id(self.alpha_reduce)}
        return [p for p in self.parameters() if id(p) not in arch]

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Op weights of the normal and reduction edges, (num_edges, num_ops) each: softmax of
        the alphas (the Dirichlet mean under DrNAS), pruned ops at 0."""
        return (
            expected_weights(self.alpha_normal, self._mask("normal"), self.sampling),
            expected_weights(self.alpha_reduce, self._mask("reduce"), self.sampling),
        )

    # ---- the cells' op choices, by name (regularisers, pruning, decidedness)
    def op_alphas(self) -> dict[str, nn.Parameter]:
        """The searched alphas by cell (only the normal cell's with a fixed reduction cell)."""
        if self.fixed_reduce:
            return {"normal": self.alpha_normal}
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def op_masks(self) -> dict[str, torch.Tensor]:
        return {cell: getattr(self, f"mask_{cell}") for cell in self.op_alphas()}

    def op_weights(self) -> dict[str, torch.Tensor]:
        """`edge_weights` of the searched cells, by cell (differentiable)."""
        return {
            cell: expected_weights(a, self._mask(cell), self.sampling)
            for cell, a in self.op_alphas().items()
        }

    def set_op_mask(self, cell: str, mask: torch.Tensor) -> None:
        getattr(self, f"mask_{cell}").copy_(mask)
        self._refresh_active()

    def set_aux_skip(self, weight: float) -> None:
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                cell.aux_skip = float(weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # supernets saved before pruning existed have no masks: nothing was pruned
        for name in ("mask_normal", "mask_reduce"):
            state_dict.setdefault(prefix + name, torch.ones_like(getattr(self, name)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _mask(self, cell: str) -> torch.Tensor | None:
        """The cell's pruning mask, None while nothing is pruned (no masking work per step)."""
        return None if self._full[cell] else getattr(self, f"mask_{cell}")

    def _refresh_active(self) -> None:
        """Each cell's unpruned columns as Python lists (read once per mask change)."""
        self._full = {c: bool(getattr(self, f"mask_{c}").all()) for c in ("normal", "reduce")}
        lists = {
            c: None if self._full[c] else active_columns(getattr(self, f"mask_{c}"))
            for c in ("normal", "reduce")
        }
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                cell.active = lists["reduce" if cell.reduction else "normal"]

    def set_paths(self, paths) -> None:
        """Fix one discrete path: ``(normal, reduce)``, each one alpha column per edge (-1: edge
        off), or None to go back to ``sampling``. While set, only those ops run, unweighted."""
        if paths is None:
            self._paths = None
            return
        E = num_edges(self.steps)
        out = []
        for p in paths:
            p = [int(k) for k in (p.tolist() if torch.is_tensor(p) else p)]
            if len(p) != E or not all(-1 <= k < len(self.op_names) for k in p):
                raise ValueError(f"a path needs {E} entries in -1..{len(self.op_names) - 1}")
            out.append(p)
        self._paths = tuple(out)

    def set_arch(self, genotype: Genotype | None) -> None:
        """Fix the path of a DARTS genotype (its edges and ops), or None to clear it."""
        self.set_paths(None if genotype is None else genotype_paths(genotype, self.op_names))

    def _plan(self):
        """(weights, index) for normal and reduction cells, as `SearchCell.forward` takes."""
        if self._paths is not None:
            return (None, self._paths[0]), (None, self._paths[1])
        out = []
        for cell in ("normal", "reduce"):
            a = getattr(self, f"alpha_{cell}")
            w, index = mixing_weights(a, self._mask(cell), self.sampling, self.tau, self.training)
            out.append((w, None if index is None else index.tolist()))
        return out[0], out[1]

    def forward(self, x):  # x: (B, C_in, H, W) -> (B, num_outputs)
        normal, reduce = self._plan()
        s0 = s1 = self.stem(x)
        recompute = self.checkpoint_cells and torch.is_grad_enabled()
        for cell in self.cells:
            w, index = reduce if cell.reduction else normal
            if recompute:
                # Keep only the cell's inputs; its ~20 intermediates per edge are recomputed in
                # backward (about one extra forward pass for a several-fold smaller peak).
                s0, s1 = s1, checkpoint(cell, s0, s1, w, index, use_reentrant=False)
            else:
                s0, s1 = s1, cell(s0, s1, w, index)
        return self.classifier(self.global_pooling(s1).flatten(1))

    @torch.no_grad()
    def genotype(self) -> Genotype:
        """The discrete cell pair under ``self.derive_rule`` (DARTS' top2 unless set)."""
        w_normal, w_reduce = self.edge_weights()
        g = derive_genotype(w_normal, w_reduce, self.op_names, self.steps, self.derive_rule)
        if self.fixed_reduce:
            g = Genotype(
                g.normal, g.normal_concat, (), (), FIXED_REDUCE, normal_counts=g.normal_counts
            )
        return g


def _after_load(module: Supernet, incompatible_keys) -> None:
    """Loaded masks (a checkpoint of a pruned search) take effect at once."""
    module._refresh_active()
