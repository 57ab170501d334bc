"""The lineage's symmetry step (`scinas.strategies.lineage`, `scinas.symmetry`).

Once the start scores above chance, its validation loss on mirrored and turned images says
which of them keep the labels. It looks when `train.augment=auto` does in the start's own
training, after the first epoch of steps (a segment, if an epoch is longer), so the lineage
starts from the recipe its start trains with alone; where views in doubt leave the augmentation
open (`symmetry.decided`), it looks again after one more epoch, as auto does. The views found
choose the augmentation (`symmetry.augment_for`) without a challenger: an augmentation judged
at a segment's horizon loses to none, because it slows the fit of the training data and pays
only over the long training that follows (short-horizon bias). They also become the final
network's test-time views."""

from __future__ import annotations

import math
import time
from dataclasses import replace

from ..symmetry import augment_for, decided, possible, probe, too_little
from .branch import Branch, Progress

LOOKS = 2  # the first epoch's look, and one more epoch's where it left the augmentation open


def find_symmetries(lineage, inc: Branch, p: Progress) -> None:
    """Train ``inc`` to the end of its first epoch, probe the data's symmetries with it, and
    record them in ``p`` (``p.views``: the views found; its scores and metrics: the
    incumbent's after the step); ``inc``'s augmentation changes where they call for it."""
    views = possible(lineage.ctx.data.input_shape)
    if not views:
        return
    started, trained, looked = time.perf_counter(), 0, []
    full = math.ceil(len(lineage.x) / min(inc.recipe.batch_size, len(lineage.x)))
    epoch = min(full, lineage.cfg.train.steps_per_epoch or full)  # the trainer's epoch
    for look in range(LOOKS):
        steps = min(p.seg, max(0, epoch - inc.steps) if look == 0 else epoch)
        if steps:
            lineage.train(inc, steps, seed=lineage.cfg.seed * 7919 + 7 + look)
            trained += steps
        found = probe(inc.net, lineage.val, lineage.task, views, lineage.s.noise_z)
        looked.append({"at_step": inc.steps, "views": found})
        if decided(found, lineage.s.noise_z, inc.recipe.augment):
            break
    if trained:
        p.scores, p.metrics = lineage.score(inc.net)
    first = next(iter(found.values()))  # margin, control and learnt are the network's
    learnt = first["learnt"]
    p.views, p.learnt = [v for v in views if found[v]["symmetry"]], learnt
    before = inc.recipe.augment
    if "augment" in lineage.s.recipe_dims:
        inc.recipe = replace(inc.recipe, augment=augment_for(p.views, before))
    lineage.log_event(
        {
            "event": "lineage_symmetry",
            "steps": trained,
            "at_step": inc.steps,
            "looks": look + 1,
            "each_look": looked,
            "views": found,
            "symmetries": p.views,
            "learnt": learnt,
            "augment": [before, inc.recipe.augment],
            "seconds": time.perf_counter() - started,
        }
    )
    pm = lineage.pm
    lineage.ctx.reporter.log(
        f"lineage: after {inc.steps} steps (val {pm} {p.metrics[pm]:.4f}) the validation loss "
        "rises by "
        + ", ".join(f"{f['loss_increase']:+.4f} ± {f['noise']:.4f} ({v})" for v, f in found.items())
        + f" against a margin of {first['margin']:.4f} over a constant "
        f"output: symmetries {', '.join(p.views) or 'none'}"
        + (too_little(first) + ": the final training looks again" if not learnt else "")
        + (f"; augment {before} -> {inc.recipe.augment}" if inc.recipe.augment != before else "")
    )
