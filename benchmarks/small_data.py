"""Make a small-sample image set from real data, where one epoch's scores sit near chance: the
issue's "data set none of the above" for `scinas compare` (the search must not lose to its start).

    python benchmarks/small_data.py --out runs/small_cifar.npz        # 40 per class, 10 classes
    scinas compare --data runs/small_cifar.npz --preset tiny --seeds 2 \
        --methods scinas,hpo,resnet_tiny --out runs/cmp_small
    # digits at 64×64 at any angle (rotated MNIST, Larochelle et al. 2007): a turn keeps the
    # label, a mirror need not
    python benchmarks/small_data.py --source mnist --per-class 60 --size 64 --rotate \
        --test 2000 --out runs/mnist_rot64.npz

A seeded, class-balanced draw of ``--per-class`` training images per class from the CIFAR-10
subset or MNIST in ``../shared/data`` (the test images kept whole, or a seeded ``--test`` of
them), optionally resized to ``--size`` pixels a side (bilinear) and turned by a uniform random
angle each (``--rotate``, corners filled with zeros; the test images too, so that no
orientation is preferred anywhere), written as an npz of NHWC uint8 images and int64 labels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scinas.data.augment import rotate
from scinas.data.idx import read_idx

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(source: str) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) of ``source``, images NHWC uint8."""
    if source == "cifar":
        with np.load(DATA / "cifar10_jpeg_subset" / "cifar10_jpeg_subset.npz") as z:
            return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    folder = DATA / "mnist"
    x, y, xt, yt = (
        read_idx(folder / f"{part}-idx{dim}-ubyte.gz")
        for part, dim in (
            ("train-images", 3),
            ("train-labels", 1),
            ("t10k-images", 3),
            ("t10k-labels", 1),
        )
    )
    return x[..., None], y, xt[..., None], yt


def transform(x: np.ndarray, size: int | None, turn: bool, rng) -> np.ndarray:
    """``x`` (NHWC uint8) resized to ``size`` and, with ``turn``, each image turned by a
    uniform angle in [0, 360) (`scinas.data.augment.rotate`, corners zero)."""
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    if size is not None:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    if turn:
        t = rotate(t, torch.from_numpy(rng.uniform(0, 360, len(t))).float())
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--source", choices=("cifar", "mnist"), default="cifar")
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--test", type=int, default=None, help="a seeded draw of this many test images")
    p.add_argument("--size", type=int, default=None, help="resize to this many pixels a side")
    p.add_argument("--rotate", action="store_true", help="turn each image by a random angle")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    x, y, xt, yt = load(a.source)
    rng = np.random.default_rng(a.seed)
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), a.per_class, replace=False) for c in np.unique(y)]
    )
    keep.sort()
    x, y = x[keep], y[keep].astype(np.int64)
    if a.test is not None and a.test < len(xt):
        pick = np.sort(rng.choice(len(xt), a.test, replace=False))
        xt, yt = xt[pick], yt[pick]
    x, xt = (transform(v, a.size, a.rotate, rng) for v in (x, xt))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, x_train=x, y_train=y, x_test=xt, y_test=yt.astype(np.int64))
    print(
        f"{a.out}: {len(keep)} training images ({a.per_class} per class), {len(xt)} test, "
        f"{x.shape[1]}x{x.shape[2]}x{x.shape[3]}" + (", turned" if a.rotate else "")
    )


if __name__ == "__main__":
    main()
