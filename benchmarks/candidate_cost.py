"""How well ``search.min_candidates`` estimates a candidate's cost, checked on finished searches.

For each ``scinas`` run of a ``scinas compare`` directory (its ``seed*/study.db``): the start
network's measured seconds per epoch, the candidates' measured mean FLOPs ratio, time ratio,
epochs and seconds per candidate, against the rule's estimate (`scinas.strategies.fidelity`:
seconds per epoch × `candidate_cost_ratio` × `expected_epochs`) and the number of candidates
that estimate affords in the search time the run had left. Reads the studies only; runs no
training (seconds on 2 cores).

    python benchmarks/candidate_cost.py runs/cmp600_fmnist --input 1,28,28 --classes 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna

import scinas
from scinas import hardware, recommend
from scinas.spaces import arch_from_dict
from scinas.strategies import fidelity
from scinas.strategies.blackbox import decision_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("compare_dir", type=Path)
    p.add_argument("--input", default="1,28,28", help="C,H,W of the data")
    p.add_argument("--classes", type=int, default=10)
    a = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = json.loads((a.compare_dir / "compare.json").read_text())["budget"][
        "seconds_per_method"
    ]
    cfg = scinas.build_config("tiny", overrides=[f"compare.budget={budget}"])
    c = recommend.macro_evolution(cfg)
    shape = tuple(int(v) for v in a.input.split(","))
    ctx = SimpleNamespace(data=SimpleNamespace(input_shape=shape, num_outputs=a.classes), cfg=c)
    flops, space = hardware.meta_cost(ctx, "flops"), decision_space(c.search)
    for db in sorted((a.compare_dir / "scinas").glob("seed*/study.db")):
        url = f"sqlite:///{db.resolve()}"
        study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
        trials = [t for t in study.trials if "seconds" in t.user_attrs]
        epochs = [max(1, len(t.intermediate_values)) for t in trials]
        per_epoch = [t.user_attrs["seconds"] / e for t, e in zip(trials, epochs, strict=True)]
        start = flops(arch_from_dict(trials[0].user_attrs["arch"]))
        later = range(1, len(trials))
        ratio, _ = fidelity.candidate_cost_ratio(space, flops, seed=int(db.parent.name[4:]))(
            trials[:1]
        )
        estimate = per_epoch[0] * ratio * fidelity.expected_epochs(c.search)
        left = c.search.time_budget - trials[0].user_attrs["seconds"]
        f = [flops(arch_from_dict(trials[i].user_attrs["arch"])) / start for i in later]
        print(
            f"{db.parent.name}: start {per_epoch[0]:.1f}s/epoch; {len(later)} candidates: "
            f"FLOPs ratio {np.mean(f):.2f}, time ratio "
            f"{np.mean([per_epoch[i] for i in later]) / per_epoch[0]:.2f}, "
            f"{np.mean([epochs[i] for i in later]):.2f} epochs, "
            f"{np.mean([per_epoch[i] * epochs[i] for i in later]):.1f}s each | estimate "
            f"{estimate:.1f}s each (ratio {ratio:.2f}): {left:.0f}s left afford "
            f"{int(left // estimate)} (the start's own cost: {int(left // per_epoch[0])})"
        )


if __name__ == "__main__":
    main()
