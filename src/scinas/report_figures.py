"""The report's figures: cell drawings, architecture weights over the search, training curves and
search diagnostics, each saved as PNG and SVG and embedded in the page."""

from __future__ import annotations

import base64
import io
import math
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

DPI = 80
# fixed margins for the 3.2-inch-high plots: tight_layout draws each figure once more to
# measure them, as long again as saving it
MARGINS = {"left": 0.1, "right": 0.98, "bottom": 0.15, "top": 0.9}


class Figures:
    """Collects figures: saved as PNG+SVG under ``folder``, embedded as base64 PNG."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(exist_ok=True)
        self.items: list[tuple[str, str, str]] = []  # (section, title, data URI)

    def add(self, section: str, name: str, title: str, fig=None, png: bytes | None = None):
        if fig is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI)
            png = buf.getvalue()
            # text as SVG text, not glyph outlines: a third of the report's time went to them
            with plt.rc_context({"svg.fonttype": "none"}):
                fig.savefig(self.folder / f"{name}.svg")
            plt.close(fig)
        (self.folder / f"{name}.png").write_bytes(png)
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        self.items.append((section, title, uri))


def _draw_dot(edges) -> bytes | None:
    if shutil.which("dot") is None:
        return None
    lines = ["digraph G { rankdir=LR; node [shape=box, style=rounded];"]
    for a, b, op in edges:
        label = f' [label="{op}"]' if op else ""
        lines.append(f'"{a}" -> "{b}"{label};')
    lines.append("}")
    try:
        res = subprocess.run(
            ["dot", "-Tpng"], input="\n".join(lines).encode(), capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 and res.stdout else None


def _draw_matplotlib(edges, title: str):
    """Nodes on a left-to-right line by depth, arrows labelled with ops."""
    nodes = []
    for a, b, _ in edges:
        for n in (a, b):
            if n not in nodes:
                nodes.append(n)
    depth = {n: 0 for n in nodes}
    for _ in range(len(nodes)):
        for a, b, _ in edges:
            depth[b] = max(depth[b], depth[a] + 1)
    layers: dict[int, list[str]] = {}
    for n in nodes:
        layers.setdefault(depth[n], []).append(n)
    pos = {}
    for d, members in layers.items():
        for i, n in enumerate(members):
            pos[n] = (d * 2.2, -(i - (len(members) - 1) / 2) * 1.4)
    fig, ax = plt.subplots(
        figsize=(2.2 * (max(layers) + 1) + 1, 1.4 * max(map(len, layers.values())) + 1.2)
    )
    for k, (a, b, op) in enumerate(edges):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "#555", "shrinkA": 14, "shrinkB": 14},
        )
        if op:
            # labels along the edge, staggered so that crossing edges do not print on each other
            t = 0.28 if k % 2 == 0 else 0.62
            angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
            ax.text(
                x0 + t * (x1 - x0),
                y0 + t * (y1 - y0),
                op,
                fontsize=7,
                ha="center",
                va="bottom",
                rotation=angle,
                rotation_mode="anchor",
                color="#1f4e79",
            )
    for n, (x, y) in pos.items():
        ax.text(
            x,
            y,
            n.replace("_{", "_").replace("}", ""),
            ha="center",
            va="center",
            fontsize=9,
            bbox={"boxstyle": "round", "fc": "#eef3f8", "ec": "#1f4e79"},
        )
    ax.set_title(title)
    ax.axis("off")
    ax.set_xlim(-1, 2.2 * max(layers) + 1)
    ys = [y for _, y in pos.values()]
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    return fig


def _cells(figs: Figures, genotype: dict) -> None:
    """A drawing of each cell of the architecture (graphviz when `dot` is there), then the
    space's notes in words."""
    from .spaces import arch_from_dict, space_of

    drawing = space_of(arch_from_dict(genotype)).drawing(genotype)
    for cell, title, edges in drawing.cells:
        png = _draw_dot(edges)
        if png is not None:
            figs.add("Cells", f"cell_{cell}", f"{title} (graphviz)", png=png)
        else:
            figs.add("Cells", f"cell_{cell}", title, fig=_draw_matplotlib(edges, title))
    for note in drawing.notes:
        figs.items.append(("Cells", note, ""))


def _arch_weights(figs: Figures, records: list[dict]) -> None:
    """One heatmap per cell type: a row per (edge, op), a column per search epoch."""
    if not records:
        return
    import numpy as np

    ops = records[0]["ops"]
    epochs = [r["epoch"] for r in records]
    from .spaces import SPACES

    for _, key, title in SPACES.get(records[0].get("space", "darts")).weight_maps():
        w = np.array([r[key] for r in records])  # epochs × edges × ops
        n_epochs, n_edges, n_ops = w.shape
        grid = w.transpose(1, 2, 0).reshape(n_edges * n_ops, n_epochs)
        height = 1.2 + 0.11 * len(grid)
        fig, ax = plt.subplots(figsize=(min(12, 4 + 0.25 * n_epochs), height))
        fig.subplots_adjust(left=0.3, right=0.86, top=1 - 0.45 / height, bottom=0.5 / height)
        # the colours span the data's own range: early in a search every weight sits near 1/K,
        # and a 0..1 scale would show one flat colour
        im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        # the row labels as plain text: a tick per row costs its lines and its label twice over
        # (PNG and SVG); the ops are named in the first edge's rows only (every edge lists them
        # in the same order): a label per row was most of the report's time
        ax.set_yticks([])
        left = ax.get_yaxis_transform()  # x in axes units, y in rows
        for row, op in enumerate(ops):
            ax.text(-0.01, row, op, transform=left, ha="right", va="center", fontsize=5)
        beside = offset_copy(left, fig=fig, x=-3.2 * max(map(len, ops)) - 6, units="points")
        for e in range(n_edges):
            y = e * n_ops + (n_ops - 1) / 2
            ax.text(0, y, f"edge {e}", transform=beside, ha="right", va="center", fontsize=6)
        for e in range(1, n_edges):
            ax.axhline(e * n_ops - 0.5, color="white", lw=0.6)
        step = max(1, n_epochs // 10)
        ax.set_xticks(range(0, n_epochs, step))
        ax.set_xticklabels(epochs[::step], fontsize=7)
        ax.set_xlabel("search epoch")
        # y given: where the title goes anyway (the ticks are below), and matplotlib skips
        # measuring every row's label on each save to place it (a tenth of a second each)
        ax.set_title(f"{title}: softmax op weights per edge", fontsize=9, y=1.0)
        fig.colorbar(im, ax=ax, fraction=0.04)
        figs.add("Architecture weights", f"weights_{key}", title, fig=fig)


def _curves(figs: Figures, events: list[dict], metric: str) -> None:
    for phase, kind in (("search", "search_epoch"), ("train", "train_epoch")):
        rows = [e for e in events if e.get("event") == kind]
        # an epoch the divergence guard rolled back and ran again: its last record counts
        rows = sorted({e["epoch"]: e for e in rows}.values(), key=lambda e: e["epoch"])
        if not rows:
            continue
        ep = [e["epoch"] for e in rows]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
        for split in ("train", "val"):
            a1.plot(ep, [e[split]["loss"] for e in rows], marker="o", ms=3, label=split)
            if metric in rows[0][split]:
                a2.plot(ep, [e[split][metric] for e in rows], marker="o", ms=3, label=split)
        a1.set(xlabel="epoch", ylabel="loss", title=f"{phase}: loss")
        a2.set(xlabel="epoch", ylabel=metric, title=f"{phase}: {metric}")
        a1.legend()
        a2.legend()
        fig.subplots_adjust(**MARGINS, wspace=0.28)
        figs.add("Training", f"curves_{phase}", f"{phase} curves", fig=fig)
    trials = [e for e in events if e.get("event") == "search_trial"]
    if trials:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        scores = [t["score"] for t in trials]
        best = [max(scores[: i + 1]) for i in range(len(scores))]
        ax.plot(range(1, len(scores) + 1), scores, "o", ms=3, label="trial")
        ax.plot(range(1, len(scores) + 1), best, label="best so far")
        ax.set(xlabel="trial", ylabel=f"val {metric}", title="black-box search")
        ax.legend()
        fig.subplots_adjust(**MARGINS)
        figs.add("Training", "trials", "black-box trials", fig=fig)


def _diagnostics(figs: Figures, events: list[dict]) -> list[dict]:
    rows = [e for e in events if e.get("event") == "search_epoch" and e.get("diagnostics")]
    if not rows:
        return []
    ep = [e["epoch"] for e in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(
        ep,
        [e["diagnostics"]["parameter_free"] for e in rows],
        marker="o",
        ms=3,
        label="parameter-free share (skip/pool/none)",
    )
    ax.plot(
        ep,
        [e["diagnostics"]["mean_entropy"] for e in rows],
        marker="s",
        ms=3,
        label="mean edge entropy (1 = uniform)",
    )
    ax.axhline(0.5, color="#c00", lw=0.8, ls="--")
    ax.set(xlabel="search epoch", ylim=(-0.02, 1.02), title="search diagnostics")
    ax.legend(fontsize=8)
    fig.subplots_adjust(**MARGINS)
    figs.add("Diagnostics", "diagnostics", "search diagnostics", fig=fig)
    return rows
