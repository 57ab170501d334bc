"""Where the discretisation gap comes from (issue 15, item 6): one row per step from the
searched supernet to the derived network, all inside the supernet's own weights.

`benchmarks/inherit.py` measured that the network ``train.init=supernet`` derives starts at
chance (0.08-0.14 validation accuracy on Fashion-MNIST and the CIFAR subset) from supernets at
0.37-0.77. This script takes such runs apart. Per run directory of a DARTS-space one-shot
``scinas run`` (it needs the run's ``supernet.pt``, ``genotype.json`` and ``config.json``), it
scores on the run's validation split, each after recomputing BatchNorm statistics on the 10
training batches the inheritance uses (`scinas.fit.Inheritance`, `scinas.train.recalibrate_bn`):

* ``mixture, search's last aux skip``: the supernet as its last search epoch ran it (DARTS-'
  auxiliary skip at that epoch's weight, when the search used one);
* ``mixture``: every op of every edge, softmax-weighted, no auxiliary skip;
* ``every edge, its strongest op``: one op per edge, unweighted (the supernet's weights, the
  mixture's other ops gone);
* ``derived (top-2 edges per node)``: the genotype's path, which is what the inherited network
  computes before fine-tuning (`tests/test_discretisation_gap.py` checks that this row equals a
  ``train.init=supernet`` run's ``inherited.val_at_start``).

So the drop from the second row to the third is the cost of keeping one op per edge, and from
the third to the fourth that of dropping edges. Prints a Markdown table; ``--out FILE`` also
writes the rows as JSON. Evaluation only: seconds per run on 2 cores, so it may share the
machine (its figures are accuracies, not times):

    python benchmarks/discretisation_gap.py runs/s10_inherit_fashion_mnist/*-inherited
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows_of(run: Path) -> dict:
    import torch

    from scinas.config import Config
    from scinas.context import setup
    from scinas.fit import Inheritance, subset
    from scinas.inherit import train_section
    from scinas.progress import Reporter
    from scinas.rundir import load_state
    from scinas.spaces.darts.genotype import Genotype
    from scinas.spaces.darts.supernet import Supernet, genotype_paths
    from scinas.strategies.oneshot import build_supernet
    from scinas.strategies.regularisers import aux_skip_weight
    from scinas.train import evaluate, recalibrate_bn

    for name in ("config.json", "supernet.pt", "genotype.json"):
        if not (run / name).is_file():
            raise SystemExit(f"{run}: no {name}; give the directory of a finished `scinas run`")
    cfg = Config.model_validate(json.loads((run / "config.json").read_text()))
    s = setup(cfg, Reporter(quiet=True))
    net = s.place.module(build_supernet(s))
    if not isinstance(net, Supernet):
        raise SystemExit(f"{run}: a {type(net).__name__}, not the DARTS space's supernet")
    state = load_state(run / "supernet.pt")
    genotype = Genotype.from_dict(json.loads((run / "genotype.json").read_text()))
    # the inheritance's own BatchNorm batches (`scinas.fit.Inheritance`, given the training
    # subset the final training draws, as `scinas.pipeline` does), so the last row is what it
    # scored
    t = train_section(s.cfg)
    x, y = subset(s.data.train.x, s.data.train.y, t.max_samples, cfg.seed)
    bn_batches = list(Inheritance(s, genotype, net, x, y, t.batch_size).bn_batches)
    val_batches = s.place.batches(s.data.val.x, s.data.val.y, 256)

    def score(paths=None, aux: float = 0.0) -> dict:
        net.load_state_dict(state)  # each row from the searched weights and statistics
        net.set_paths(paths)
        net.set_aux_skip(aux)
        recalibrate_bn(net, bn_batches)
        net.eval()
        with torch.no_grad():
            return evaluate(net, s.task, val_batches)

    with torch.no_grad():
        net.load_state_dict(state)
        w_normal, w_reduce = net.edge_weights()
        strongest = (w_normal.argmax(1).tolist(), w_reduce.argmax(1).tolist())
        strongest_weight = float(w_normal.max(1).values.mean())
    s_aux = getattr(cfg.search, "aux_skip", 0.0) or 0.0
    last_aux = aux_skip_weight(s_aux, cfg.search.epochs - 1, cfg.search.epochs) if s_aux else 0.0
    results = (
        json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    )
    pm = s.task.primary_metric
    derived = score(genotype_paths(genotype, net.op_names))
    return {
        "run": str(run),
        "metric": pm,
        "reported_supernet_val": ((results.get("supernet") or {}).get("val") or {}).get(pm),
        "mean_strongest_weight_normal": strongest_weight,
        "mixture, search's last aux skip": score(aux=last_aux)[pm] if last_aux else None,
        "mixture": score()[pm],
        "every edge, its strongest op": score(strongest)[pm],
        "derived (top-2 edges per node)": derived[pm],
        "derived_metrics": derived,  # every metric, the loss too
    }


COLUMNS = (
    "mixture, search's last aux skip",
    "mixture",
    "every edge, its strongest op",
    "derived (top-2 edges per node)",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories of `scinas run`")
    ap.add_argument("--out", type=Path, help="also write the rows here (JSON)")
    args = ap.parse_args()
    rows = [rows_of(run) for run in args.runs]
    print("| run | strongest op's mean weight (normal) | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for r in rows:
        cells = ["-" if r[c] is None else f"{r[c]:.3f}" for c in COLUMNS]
        print(
            f"| {Path(r['run']).name} | {r['mean_strongest_weight_normal']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
