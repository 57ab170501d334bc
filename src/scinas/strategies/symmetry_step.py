"""The lineage's symmetry step (`scinas.strategies.lineage`, `scinas.symmetry`).

Once the start scores above chance it trains one more segment, then its validation loss on
mirrored and turned images says which of them are symmetries of the data. Those choose the
augmentation (`symmetry.augment_for`) without a challenger: an augmentation judged at a
segment's horizon loses to none, because it slows the fit of the training data and pays only
over the long training that follows (short-horizon bias). They also become the final
network's test-time views."""

from __future__ import annotations

import time
from dataclasses import replace

from ..symmetry import augment_for, possible, probe
from .branch import Branch, Progress


def find_symmetries(lineage, inc: Branch, p: Progress) -> None:
    """Train ``inc`` for one segment, probe the data's symmetries with it, and record them in
    ``p`` (``p.views``: the views found; its scores and metrics: the incumbent's after the
    segment); ``inc``'s augmentation changes where they call for it."""
    views = possible(lineage.ctx.data.input_shape)
    if not views:
        return
    started = time.perf_counter()
    lineage.train(inc, p.seg, seed=lineage.cfg.seed * 7919 + 7)
    p.scores, p.metrics = lineage.score(inc.net)
    found = probe(inc.net, lineage.val, lineage.task, views, lineage.s.noise_z)
    p.views = [v for v in views if found[v]["symmetry"]]
    before = inc.recipe.augment
    if "augment" in lineage.s.recipe_dims:
        inc.recipe = replace(inc.recipe, augment=augment_for(p.views, before))
    lineage.log_event(
        {
            "event": "lineage_symmetry",
            "steps": p.seg,
            "views": found,
            "symmetries": p.views,
            "augment": [before, inc.recipe.augment],
            "seconds": time.perf_counter() - started,
        }
    )
    pm = lineage.pm
    lineage.ctx.reporter.log(
        f"lineage: after {inc.steps} steps (val {pm} {p.metrics[pm]:.4f}) the validation loss "
        "rises by "
        + ", ".join(f"{f['loss_increase']:+.4f} ± {f['noise']:.4f} ({v})" for v, f in found.items())
        + f" against a margin of {next(iter(found.values()))['margin']:.4f} over a constant "
        f"output: symmetries {', '.join(p.views) or 'none'}"
        + (f"; augment {before} -> {inc.recipe.augment}" if inc.recipe.augment != before else "")
    )
