"""The DARTS cell space (Liu et al., ICLR 2019): a normal and a reduction cell, each a DAG of
``search.nodes`` intermediate nodes with two inputs each, chosen among the candidate ops.

Its pieces: `genotype` (the DARTS JSON format, published genotypes, derivation rules), `network`
(the discrete evaluation network) and `supernet` (the weight-sharing mixture of every op on
every edge). The op library itself is `scinas.ops`, which other spaces may draw on.
"""

from __future__ import annotations

import itertools
import json

from ...errors import UserError
from ...memory import available_memory, search_step_bytes, use_checkpointing
from ...ops import DARTS_OPS, OPS
from ...weights import copy_weights
from .. import nd
from ..base import DecisionSpace, Drawing, SearchSpace, register_space
from .genotype import (
    FIXED_REDUCE,
    DeriveRule,
    Genotype,
    edge_index,
    published_dir,
    published_genotypes,
)
from .network import FixedReductionCell, Network, plan_reductions
from .supernet import Supernet

# The candidate ops on 1×1 inputs: zero, identity, a linear layer (ReLU-linear-BN) and a two-layer
# block (sep_conv_3x3 at 1×1: twice ReLU, per-feature scale, linear, BN).
VECTOR_OPS = ("none", "skip_connect", "conv_1x1", "sep_conv_3x3")

_STATE_NAMES = {0: "c_{k-2}", 1: "c_{k-1}"}


@register_space
class DartsSpace(SearchSpace):
    name = "darts"
    description = "the DARTS cell space: a normal and a reduction cell of 4 nodes, 8 ops"
    has_supernet = True
    has_alphas = True
    settings = ("nodes", "reductions", "fixed_reduce", "derive", "checkpoint_cells")
    dims = nd.DIMS  # series: the same cells with 1-D ops

    # ---- architectures
    def from_dict(self, data, source: str = "genotype") -> Genotype:
        if not isinstance(data, dict):
            raise UserError(f"{source} is not a genotype: expected a JSON object.")
        return Genotype.from_dict(data, source=source)

    def parse(self, text: str, source: str = "architecture") -> Genotype | None:
        if text in published_genotypes():
            data = json.loads((published_dir() / f"{text}.json").read_text())
            return Genotype.from_dict(data, source=text)
        return None

    def named(self) -> list[str]:
        return published_genotypes()

    # ---- config
    def default_ops(self) -> tuple[str, ...]:
        return DARTS_OPS

    def valid_ops(self) -> list[str]:
        return OPS.names()

    def check_search(self, s) -> None:
        super().check_search(s)
        if s.fixed_reduce and s.nodes != 4:
            raise ValueError("search.fixed_reduce needs search.nodes=4 (the cell outputs 4 states)")
        DeriveRule.parse(s.derive)  # unknown rule: one clear message

    def adapt_to_input(self, s, input_shape):
        if tuple(input_shape[1:]) == (1, 1) and s.ops is None:
            # On 1×1 inputs (feature vectors) pooling is the identity and a k×k convolution only
            # its centre tap: the distinct ops are these.
            note = f"1×1 inputs: search.ops defaults to {list(VECTOR_OPS)}"
            return s.model_copy(update={"ops": list(VECTOR_OPS)}), note
        return s, None

    # ---- black-box
    def decisions(self, s) -> DecisionSpace:
        return darts_decisions(self.op_names(s), s.nodes, s.fixed_reduce)

    # ---- weight sharing
    def check_search_sizes(self, s, input_shape) -> None:
        plan_reductions(s.layers, tuple(input_shape[1:]), s.reductions)

    def build_supernet(self, s, input_shape, num_outputs: int, device=None) -> Supernet:
        """The supernet of a search section for inputs of ``input_shape``; cell checkpointing as
        `scinas.memory.use_checkpointing` decides for ``device`` (the host when None)."""
        C_in, *sizes = input_shape
        return Supernet(
            C_in,
            num_outputs,
            tuple(sizes),
            C=s.C,
            layers=s.layers,
            op_names=self.op_names(s),
            steps=s.nodes,
            multiplier=s.nodes,
            reductions=s.reductions,
            checkpoint_cells=use_checkpointing(s, input_shape, available_memory(device)),
            fixed_reduce=s.fixed_reduce,
            derive_rule=DeriveRule.parse(s.derive),
        )

    def supernet_note(self, s, model, input_shape, device) -> str:
        on = "on" if model.checkpoint_cells else "off"
        why = ""
        free = available_memory(device) if s.checkpoint_cells is None else None
        if free is not None:
            need = search_step_bytes(s, input_shape)
            why = (
                f" (auto: a step needs ~{need / 2**30:.1f} GiB without it, "
                f"{free / 2**30:.1f} GiB free)"
            )
        return f", cell checkpointing {on}{why}"

    def arch_record(self, model) -> dict:
        w_normal, w_reduce = (w.detach().cpu().tolist() for w in model.edge_weights())
        return {
            "ops": list(model.op_names),
            "space": "darts",
            "normal": w_normal,
            "reduce": w_reduce,
            "alpha_normal": model.alpha_normal.detach().cpu().tolist(),
            "alpha_reduce": model.alpha_reduce.detach().cpu().tolist(),
            "genotype": model.genotype().to_dict(),
        }

    def weight_maps(self) -> list[tuple[str, str, str]]:
        return [("normal", "normal", "normal cell"), ("reduce", "reduce", "reduction cell")]

    # ---- weight inheritance
    def inherit_sizes(self, s, t):
        return t.model_copy(update={"C": s.C, "layers": s.layers, "reductions": s.reductions})

    def inherit_weights(self, supernet: Supernet, network: Network, arch: Genotype) -> list:
        """Stem, each cell's preprocessing, the op of every kept edge (from its node's input j
        and op, the supernet's edge ``edge_index(node, j)`` and alpha column), GDAS' fixed
        reduction cells whole, the classifier; the auxiliary head has no twin and stays fresh."""
        pairs = copy_weights(supernet.stem, network.stem, "stem", "stem")
        for i, (sc, nc) in enumerate(zip(supernet.cells, network.cells, strict=True)):
            at = f"cells.{i}"
            if isinstance(sc, FixedReductionCell):
                pairs += copy_weights(sc, nc, at, at)
                continue
            for name in ("preprocess0", "preprocess1"):
                pairs += copy_weights(getattr(sc, name), getattr(nc, name), *(f"{at}.{name}",) * 2)
            cell = "reduce" if sc.reduction else "normal"
            edges = getattr(arch, cell)
            for k, ((op, j), node) in enumerate(zip(edges, arch.edge_nodes(cell), strict=True)):
                e = edge_index(node, j)
                mixed = sc.edges[e]
                column = list(supernet.op_names).index(op)
                if column not in mixed.columns:  # `none`: nothing to inherit
                    continue
                src = mixed.ops[mixed.columns.index(column)]
                pairs += copy_weights(
                    src,
                    nc.ops[k],
                    f"{at}.edges.{e}.ops.{mixed.columns.index(column)}",
                    f"{at}.ops.{k}",
                )
        pairs += copy_weights(supernet.classifier, network.classifier, "classifier", "classifier")
        return pairs

    # ---- discrete networks
    def check_network(self, arch, t, input_shape) -> None:
        plan_reductions(t.layers, tuple(input_shape[1:]), t.reductions)

    def build_network(self, arch: Genotype, t, input_shape, num_outputs: int) -> Network:
        C_in, *sizes = input_shape
        return Network(
            arch,
            C_in,
            num_outputs,
            tuple(sizes),
            C=t.C,
            layers=t.layers,
            auxiliary=t.auxiliary,
            reductions=t.reductions,
        )

    def planning_stand_in(self) -> Genotype:
        return self.parse("DARTS_V2")

    # ---- describing
    def drawing(self, data: dict) -> Drawing:
        g = Genotype.from_dict(data)
        cells = []
        for cell, title in (("normal", "normal cell"), ("reduce", "reduction cell")):
            if not getattr(g, cell):
                continue
            edges = [
                (_STATE_NAMES.get(j, str(j - 2)), str(node), op)
                for (op, j), node in zip(getattr(g, cell), g.edge_nodes(cell), strict=True)
            ]
            edges += [
                (_STATE_NAMES.get(c, str(c - 2)), "c_{k}", "") for c in getattr(g, f"{cell}_concat")
            ]
            cells.append((cell, title, tuple(edges)))
        notes = ("reduction cell: GDAS' fixed hand-designed cell",) if g.fixed_reduce else ()
        return Drawing(tuple(cells), notes)

    def cell_ops(self, data: dict) -> dict[str, list[str]]:
        return {
            cell: [op for op, _ in data[cell]] for cell in ("normal", "reduce") if data.get(cell)
        }


def darts_decisions(op_names, steps: int = 4, fixed_reduce: bool = False) -> DecisionSpace:
    """Per node and cell type: which two earlier states feed it, and the op on each of the two
    edges (never `none`, which the derived DARTS cells exclude). With ``fixed_reduce`` only the
    normal cell is searched (GDAS' hand-designed reduction cell)."""
    ops = tuple(o for o in op_names if o != "none")
    if not ops:
        raise UserError("the op list needs at least one op besides 'none'.")
    cell_types = ("normal",) if fixed_reduce else ("normal", "reduce")
    decisions = []
    for cell in cell_types:
        for node in range(steps):
            pairs = tuple(f"{a},{b}" for a, b in itertools.combinations(range(node + 2), 2))
            decisions.append((f"{cell}/node{node}/inputs", pairs))
            decisions += [(f"{cell}/node{node}/op{k}", ops) for k in range(2)]

    def decode(p: dict) -> Genotype:
        cells = {"reduce": ()}
        for cell in cell_types:
            edges = []
            for node in range(steps):
                inputs = [int(i) for i in p[f"{cell}/node{node}/inputs"].split(",")]
                edges += [(p[f"{cell}/node{node}/op{k}"], inputs[k]) for k in range(2)]
            cells[cell] = tuple(edges)
        concat = tuple(range(2, steps + 2))
        if fixed_reduce:
            return Genotype(cells["normal"], concat, (), (), FIXED_REDUCE)
        return Genotype(cells["normal"], concat, cells["reduce"], concat)

    return DecisionSpace("darts", tuple(decisions), decode)


__all__ = ["VECTOR_OPS", "DartsSpace", "Genotype", "darts_decisions"]
