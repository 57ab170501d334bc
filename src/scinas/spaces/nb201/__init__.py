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

Its pieces, as in the DARTS space's package: `arch` (the architecture and its string form),
`network` (the discrete network) and `supernet` (every op on every edge).
"""

from __future__ import annotations

from .. import nd
from ..base import DecisionSpace, Drawing, SearchSpace, register_space
from .arch import NB201_EDGES, NB201_OPS, NB201Arch
from .network import NB201Cell, NB201Network, ResidualReduction, make_op
from .supernet import NB201SearchCell, NB201Supernet

# the pieces stay importable from the space's package
__all__ = [
    "NB201_EDGES",
    "NB201_OPS",
    "NB201Arch",
    "NB201Cell",
    "NB201Network",
    "NB201SearchCell",
    "NB201Space",
    "NB201Supernet",
    "ResidualReduction",
    "make_op",
    "nb201_decisions",
]


@register_space
class NB201Space(SearchSpace):
    name = "nb201"
    description = "the NAS-Bench-201 cell space: one cell of 4 nodes, 6 edges, 5 ops (15,625)"
    has_supernet = True
    has_alphas = True
    dims = nd.DIMS  # series: the same cells with 1-D layers

    def from_dict(self, data, source: str = "architecture") -> NB201Arch:
        return NB201Arch.from_dict(data, source=source)

    def parse(self, text: str, source: str = "architecture") -> NB201Arch | None:
        return NB201Arch.parse(text, source=source) if text.startswith("|") else None

    def default_ops(self) -> tuple[str, ...]:
        return NB201_OPS

    def decisions(self, s) -> DecisionSpace:
        return nb201_decisions(self.op_names(s))

    def build_supernet(self, s, input_shape, num_outputs: int, device=None) -> NB201Supernet:
        C_in, *sizes = input_shape
        return NB201Supernet(
            C_in,
            num_outputs,
            tuple(sizes),
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
        C_in, *sizes = input_shape
        return NB201Network(
            arch, C_in, num_outputs, tuple(sizes), C=t.C, cells_per_stage=max(1, t.layers // 3)
        )

    def network_summary(self, arch, t) -> str:
        return f"C={t.C} cells per stage={max(1, t.layers // 3)}"

    def inherit_sizes(self, s, t):
        return t.model_copy(update={"C": s.C, "layers": s.layers})

    def inherit_weights(self, supernet: NB201Supernet, network: NB201Network, arch) -> list:
        """Stem, the residual blocks between stages, each cell's op of every edge that is not
        `none`, the last BatchNorm and the classifier."""
        from ...weights import copy_weights

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


def nb201_decisions(op_names: tuple[str, ...] | None = None) -> DecisionSpace:
    """One decision per edge: its op."""
    ops = tuple(op_names or NB201_OPS)
    names = [f"{to}<-{frm}" for to, frm in NB201_EDGES]
    return DecisionSpace(
        "nb201",
        tuple((n, ops) for n in names),
        lambda p: NB201Arch(tuple(p[n] for n in names)),
    )
