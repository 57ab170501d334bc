"""Would a snapshot ensemble pay? The lineage's last incumbent (winner.pt) averaged with the
final network, against the final network alone, for each scinas seed of a finished compare.

    python benchmarks/snapshot_ensemble.py runs/cmp \
        --data ../shared/data/cifar10_jpeg_subset/cifar10_jpeg_subset.npz
    python benchmarks/snapshot_ensemble.py runs/fm --data fashion-mnist --data-dir ../shared/data

Prints validation and test accuracy of the final network, the snapshot, their probabilities'
mean and a 2:1 mean (both through the run's test-time views). Classification runs only; a
decision built on this would be taken on validation, the test column is for the record.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

import scinas
from scinas.data import load_dataset


def accuracies(final, snap, split) -> tuple[float, ...]:
    with torch.no_grad():
        pf = torch.cat([final(x).softmax(1) for x in split.x.split(500)])
        ps = torch.cat([snap(x).softmax(1) for x in split.x.split(500)])

    def acc(p):
        return float((p.argmax(1) == split.y).float().mean())

    return acc(pf), acc(ps), acc((pf + ps) / 2), acc((2 * pf + ps) / 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("compare", type=Path, help="a finished `scinas compare --out` folder")
    ap.add_argument("--data", required=True, help="the compare's --data")
    ap.add_argument("--data-dir", default=None, help="the compare's --data-dir")
    args = ap.parse_args()
    seeds = sorted((args.compare / "scinas").glob("seed*"))
    if not seeds:
        raise SystemExit(f"{args.compare} has no scinas/seed* runs")
    print("seed  split  final  snapshot  mean  2:1")
    for seed_dir in seeds:
        if not (seed_dir / "winner.pt").is_file():
            raise SystemExit(f"{seed_dir} has no winner.pt: not a lineage run")
        ds = load_dataset(args.data, data_dir=args.data_dir, seed=int(seed_dir.name[4:]))
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            shutil.copytree(seed_dir, run, ignore=shutil.ignore_patterns("figures", "checkpoints"))
            final = scinas.load(run)
            shutil.copy(seed_dir / "winner.pt", run / "model.pt")
            snap = scinas.load(run)
            for name, split in (("val", ds.val), ("test", ds.test)):
                row = "  ".join(f"{a:.4f}" for a in accuracies(final, snap, split))
                print(f"{seed_dir.name}  {name:5}  {row}")


if __name__ == "__main__":
    main()
