"""`scinas report DIR`: one self-contained HTML page (and PNG/SVG figures) for a run directory.

The page opens from disk without a server: figures are embedded as base64 PNG, styles inline, no
scripts. Every string that comes from the user or the run (dataset names, paths, class names,
config values) is HTML-escaped. Figures are also written to ``DIR/figures/`` as PNG and SVG.

Contents: results table (test metrics, parameters, FLOPs, times, the supernet-vs-retrained gap),
the normal and reduction cells drawn as graphs (graphviz ``dot`` when installed, matplotlib
otherwise), every edge's op weights over the search epochs, training/validation curves, the
search diagnostics (parameter-free share, edge entropy), and the resolved config.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .errors import UserError  # noqa: E402
from .report_figures import (  # noqa: F401
    DPI,
    Figures,
    _arch_weights,
    _cells,
    _curves,
    _diagnostics,
    _draw_dot,
    _draw_matplotlib,
)
from .rundir import check_output_file, is_run_dir, read_json, write_json  # noqa: E402


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return out


def _search_progress(events: list[dict]) -> list[str]:
    """An undecided search said in words, each search epoch's time, ops left, decidedness and
    skip/pool/none share, and every pruning event (`scinas.strategies.pruning`)."""
    parts = []
    for e in events:
        if e.get("event") == "undecided":
            parts.append(f"<p class='warn'>Undecided search: {html.escape(e['message'])}</p>")
    rows = [e for e in events if e.get("event") == "search_epoch" and e.get("diagnostics")]
    if rows:
        head = ["epoch", "seconds", "ops", "margin", "entropy", "skip", "pool", "none"]
        body = []
        for e in rows:
            d = e["diagnostics"]
            shares = next(iter(d["cells"].values()))
            ops = f"{e['ops_left']}/{e['ops_total']}" if "ops_left" in e else ""
            cells = [
                e["epoch"],
                f"{e['seconds']:.1f}",
                ops,
                d.get("margin", ""),
                d["mean_entropy"],
                shares["skip"],
                shares["pool"],
                shares["none"],
            ]
            body.append("".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells))
        parts.append(
            "<h2>Search epochs</h2><p>time, ops still computed, decidedness and the "
            "derived (first) cell's skip/pool/none share per epoch</p>"
        )
        parts.append(_grid(head, body))
    pruned = [e for e in events if e.get("event") == "prune"]
    if pruned:
        head = ["epoch", "cell", "edge", "op", "weight", "reason"]
        body = [
            "".join(
                f"<td>{html.escape(_fmt(e[k]))}</td>"
                for k in ("epoch", "cell", "edge", "op", "weight", "reason")
            )
            for e in pruned
        ]
        parts.append(f"<h2>Pruning ({len(pruned)} ops removed)</h2>")
        parts.append(_grid(head, body))
    return parts


def _lineage(events: list[dict], results: dict) -> list[str]:
    """A lineage search's decisions (`scinas.strategies.lineage`): each challenger's advantage
    over the incumbent, the noise it was judged against, the verdict; then the recipe chosen
    and the test-time views the trained network kept."""
    rows = [e for e in events if e.get("event") == "lineage_decision"]
    result = next((e for e in events if e.get("event") == "lineage_result"), None)
    floor = next((e for e in events if e.get("event") == "lineage_floor"), None)
    if result is None:
        return []
    parts = ["<h2>Lineage search</h2>"]
    if floor is not None:
        parts.append(
            f"<p>The start scored above a constant prediction after {floor['steps']} steps: "
            f"{'yes' if floor['above_chance'] else 'no (no challenger was judged)'}.</p>"
        )
    symmetry = next((e for e in events if e.get("event") == "lineage_symmetry"), None)
    if symmetry is not None:
        parts.append(
            f"<p>Symmetries of the data, after {symmetry.get('at_step', symmetry['steps'])} "
            "steps (the validation loss on transformed images against the images "
            "themselves):</p>"
        )
        body = [
            f"<td>{html.escape(v)}</td>"
            + "".join(
                f"<td>{html.escape(_fmt(f[k]))}</td>" for k in ("loss_increase", "noise", "margin")
            )
            + f"<td>{'symmetry' if f['symmetry'] else 'no'}</td>"
            for v, f in symmetry["views"].items()
        ]
        parts.append(_grid(["view", "loss increase", "noise", "margin", "verdict"], body))
        before, after = symmetry["augment"]
        if before != after:
            parts.append(f"<p>Augmentation {html.escape(before)} → {html.escape(after)}.</p>")
    alone = [e for e in events if e.get("event") == "lineage_segment"]
    if alone:
        parts.append(
            f"<p>The incumbent trained alone for {len(alone)} segments, while its validation "
            "gain over a segment was more than one standard error (challengers wait for its "
            "plateau).</p>"
        )
    if rows:
        head = [
            "round",
            "challenger",
            "steps",
            "incumbent",
            "challenger",
            "advantage",
            "noise",
            "verdict",
        ]
        keys = (
            "round",
            "move",
            "challenger_steps",
            "incumbent",
            "challenger",
            "advantage",
            "noise",
            "verdict",
        )
        body = ["".join(f"<td>{html.escape(_fmt(e.get(k)))}</td>" for k in keys) for e in rows]
        parts.append(_grid(head, body))
    recipe = result["recipe"]
    changed = result["recipe_changes"]
    parts.append(
        f"<p>{result['accepted']} challengers accepted, {result['rejected']} rejected as not "
        "better beyond noise. Recipe: "
        + html.escape(
            ", ".join(
                f"{k}={v}" + (" (searched)" if k in changed else "") for k, v in recipe.items()
            )
        )
        + "</p>"
    )
    checks = results.get("tta_checks")
    if checks:
        parts.append(
            "<p>Test-time views the search found, on the trained network's validation split: "
            + html.escape(
                ", ".join(
                    f"{v} {'kept' if c['kept'] else 'dropped'} (loss change "
                    f"{-c['loss_decrease']:+.4f} ± {c['noise']:.4f})"
                    for v, c in checks.items()
                )
            )
            + ".</p>"
        )
    elif changed.get("tta"):
        parts.append(
            "<p>Test-time views: predictions are averaged over each image and its "
            f"{html.escape(', '.join(changed['tta']))}.</p>"
        )
    return parts


def _range_tests(figs: Figures, events: list[dict]) -> list[str]:
    """``lr=auto``: each range test's choice (table) and curve (figure), `scinas.lr_finder`."""
    tests = [e for e in events if e.get("event") == "lr_range_test"]
    if not tests:
        return []
    head = ["phase", "setting", "lr", "lr_min", "arch_lr", "loss lowest at", "steps", "seconds"]
    body = []
    for e in tests:
        rt = e.get("test") or {}
        cells = [
            e["phase"],
            e["key"] + "=auto",
            e.get("lr") if e.get("lr") is not None else "none found",
            e.get("lr_min", ""),
            e.get("arch_lr", ""),
            rt.get("lr_at_min", ""),
            len(rt.get("lrs", [])),
            rt.get("seconds", ""),
        ]
        body.append("".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells))
        if rt.get("lrs"):
            fig, ax = plt.subplots(figsize=(6, 3.2))
            ax.semilogx(rt["lrs"], rt["losses"], ".", ms=3, alpha=0.5, label="loss")
            ax.semilogx(rt["lrs"], rt["smoothed"], label="smoothed")
            if rt.get("lr"):
                ax.axvline(rt["lr"], color="k", ls="--", lw=1, label=f"chosen {rt['lr']:.3g}")
            ax.set(xlabel="learning rate", ylabel="loss", title=f"{e['phase']} range test")
            ax.legend()
            fig.tight_layout()
            name = f"{e['phase']} range test"
            figs.add("Learning rates", f"lr_range_{e['phase']}", name, fig=fig)
    return [
        "<h2>Learning-rate range tests</h2><p>lr=auto: a tenth of the rate at the smoothed "
        "loss's minimum; the architecture rate lets the alphas travel a fixed distance over the "
        "search (scinas.lr_finder)</p>",
        _grid(head, body),
    ]


def _divergences(events: list[dict]) -> list[str]:
    """The divergence guard's rollbacks (`scinas.train.Trainer`)."""
    rows = [e for e in events if e.get("event") == "divergence"]
    if not rows:
        return []
    keys = ("phase", "epoch", "at", "loss", "reason", "lr_before", "lr_after")
    body = ["".join(f"<td>{html.escape(_fmt(e.get(k, '')))}</td>" for k in keys) for e in rows]
    return [
        f"<h2 class='warn'>Divergence guard ({len(rows)} rollbacks)</h2><p>the loss diverged: "
        "the epoch was rolled back to its start and the learning rate halved</p>",
        _grid(list(keys), body),
    ]


def _gap(results: dict, metric: str) -> list[str]:
    """The discretisation gap: the supernet's validation metric against the derived network's,
    inherited (before and after fine-tuning) or from scratch, whichever the run has."""
    sup = ((results.get("supernet") or {}).get("val") or {}).get(metric)
    val = (results.get("val") or {}).get(metric)
    inherited = results.get("inherited")
    if sup is None or val is None:
        return []
    rows = [("supernet (end of search)", sup)]
    if inherited:
        start = (inherited.get("val_at_start") or {}).get(metric)
        if start is not None:
            rows.append(("derived network, inherited weights, before fine-tuning", start))
        rows.append(("derived network, inherited weights, fine-tuned", val))
    else:
        rows.append(("derived network, from scratch", val))
    return [
        f"<h2>Discretisation gap (validation {html.escape(metric)})</h2>",
        _table(rows),
    ]


def _grid(head: list[str], rows: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><tr>{th}</tr>" + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>"


# ----------------------------------------------------------------------------- page


def _table(rows: list[tuple[str, object]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def _results_rows(results: dict, data: dict) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("dataset", data.get("name", results.get("dataset"))),
        ("task", results.get("task", data.get("task"))),
        ("input shape", "×".join(map(str, data.get("input_shape", [])))),
    ]
    for k, v in (results.get("test") or {}).items():
        if isinstance(v, float):
            rows.append((f"test {k}", v))
    metric = results.get("metric")
    sup = (results.get("supernet") or {}).get("val") or {}
    val = results.get("val") or {}
    if metric and metric in sup and metric in val:
        rows.append((f"supernet val {metric}", sup[metric]))
        rows.append((f"retrained val {metric}", val[metric]))
        rows.append(("discretisation gap (retrained − supernet)", val[metric] - sup[metric]))
    for k in ("params", "flops", "search_seconds", "train_seconds", "wall_seconds", "device"):
        if k in results:
            rows.append((k, results[k]))
    return rows


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;
text-align:left;font-size:.9em}th{background:#f4f6f8}img{max-width:100%;margin:.5em 0}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}.warn{color:#a00}
figure{margin:0 0 1em 0}figcaption{font-size:.85em;color:#555}
"""


def write_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write ``report.html`` (and ``figures/``) for a run directory; returns the page's path."""
    path = Path(run_dir)
    if not is_run_dir(path):
        raise UserError(
            f"{path} is not a scinas run directory (no run.json); give the --out of a run."
        )
    if output is not None:
        check_output_file(output)  # before the figures are drawn
    t0 = time.perf_counter()
    info = read_json(path / "run.json")
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    data = read_json(path / "data.json") if (path / "data.json").is_file() else {}
    results = read_json(path / "results.json") if (path / "results.json").is_file() else {}
    genotype = read_json(path / "genotype.json") if (path / "genotype.json").is_file() else None
    events = _jsonl(path / "metrics.jsonl")
    records = _jsonl(path / "arch_weights.jsonl")
    metric = results.get("metric") or ("r2" if data.get("task") == "regression" else "accuracy")

    figs = Figures(path / "figures")
    if genotype:
        _cells(figs, genotype)
    _arch_weights(figs, records)
    _curves(figs, events, metric)
    from .hardware import draw_pareto  # here: hardware reads the strategies' settings

    draw_pareto(figs, events, metric, genotype)  # black-box trials measured on the device
    from .strategies.fidelity import draw_rungs

    draw_rungs(figs, events, metric)  # a pruned search's candidates and rungs
    diag_rows = _diagnostics(figs, events)

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>scinas report: {html.escape(path.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>scinas {html.escape(info.get('kind', 'run'))}: {html.escape(path.name)}</h1>",
        f"<p>started {html.escape(str(info.get('started', '?')))}, scinas "
        f"{html.escape(str(info.get('scinas', '?')))}, torch {html.escape(str(info.get('torch')))}"
        + ("" if results else " &mdash; <b>not finished</b> (no results.json yet)")
        + "</p>",
        "<h2>Results</h2>",
        _table(_results_rows(results, data)) if results else "<p>no results yet</p>",
    ]
    if genotype:
        parts.append("<h2>Genotype</h2><pre>" + html.escape(json.dumps(genotype)) + "</pre>")
    if diag_rows:
        last = diag_rows[-1]["diagnostics"]
        parts.append("<h2>Diagnostics (last search epoch)</h2>")
        parts.append(
            _table(
                [
                    ("parameter-free share of the derived cell", last["parameter_free"]),
                    ("mean edge entropy", last["mean_entropy"]),
                    *(
                        [("mean margin of the strongest op over uniform", last["margin"])]
                        if "margin" in last
                        else []
                    ),
                ]
            )
        )
        if last["parameter_free"] >= 0.5:
            parts.append(
                "<p class='warn'>The derived cell is mostly skip connections, pooling or none: "
                "the search may have collapsed (see the diagnostics plot).</p>"
            )
        parts += _search_progress(events)
    parts += _lineage(events, results)
    parts += _gap(results, metric) + _range_tests(figs, events) + _divergences(events)
    section = None
    for sec, title, uri in figs.items:
        if sec != section:
            parts.append(f"<h2>{html.escape(sec)}</h2>")
            section = sec
        if uri:
            parts.append(
                f"<figure><img src='{uri}' alt='{html.escape(title)}'>"
                f"<figcaption>{html.escape(title)}</figcaption></figure>"
            )
        else:
            parts.append(f"<p>{html.escape(title)}</p>")
    parts.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(config, indent=2)))
    parts.append("</pre>")
    if data:
        parts.append("<h2>Data</h2><pre>" + html.escape(json.dumps(data, indent=2)) + "</pre>")
    parts.append(
        f"<p style='color:#888;font-size:.8em'>generated in "
        f"{time.perf_counter() - t0:.1f}s by scinas report</p></body></html>"
    )
    out = Path(output) if output else path / "report.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    if results:
        write_json(path / "figures" / "index.json", [t for _, t, _ in figs.items])
    return out
