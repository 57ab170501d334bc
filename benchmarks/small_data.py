"""Make a small-sample image set from real data, where one epoch's scores sit near chance: the
issue's "data set none of the above" for `scinas compare` (the search must not lose to its start).

    python benchmarks/small_data.py --out runs/small_cifar.npz        # 40 per class, 10 classes
    scinas compare --data runs/small_cifar.npz --preset tiny --seeds 2 \
        --methods scinas,hpo,resnet_tiny --out runs/cmp_small

A seeded, class-balanced draw of ``--per-class`` training images per class from the CIFAR-10
subset in ``../shared/data`` (its test images are kept whole), written as an npz of NHWC uint8
images and int64 labels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_jpeg_subset"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    with np.load(SOURCE / "cifar10_jpeg_subset.npz", allow_pickle=False) as z:
        x, y, xt, yt = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    rng = np.random.default_rng(a.seed)
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), a.per_class, replace=False) for c in np.unique(y)]
    )
    keep.sort()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, x_train=x[keep], y_train=y[keep], x_test=xt, y_test=yt)
    print(f"{a.out}: {len(keep)} training images ({a.per_class} per class), {len(xt)} test")


if __name__ == "__main__":
    main()
