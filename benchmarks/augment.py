"""Time batched augmentation on a 256×3×32×32 float batch: ms per batch, median after warm-up.

Presets "rotation" (any angle + h/v flips + shift + zoom: one bilinear warp) and "natural"
(crop + hflip), the older ``augment_batch`` (crop 4 + hflip + cutout 16) for reference, and
with ``--variants`` the alternatives tried (torch's ``affine_grid`` against the broadcast grid
used, channels-last input, nearest sampling, reflection padding, the crop as two gathers) and
the parts of each preset.

    python benchmarks/augment.py                 # torch's default threads
    python benchmarks/augment.py --threads 1 --variants
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F

from scinas.budget import timings
from scinas.data.augment import (
    AUGMENT_PRESETS,
    affine_matrices,
    augment,
    augment_batch,
    cutout,
    random_crop,
    random_hflip,
    warp,
)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> tuple[float, float]:
    """(median, min) wall-clock ms of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    times = [1e3 * t for t in timings(fn, repeats, warmup)]
    return statistics.median(times), min(times)


def _crop_two_gathers(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """The crop as first written (row gather, then column gather), kept to compare against."""
    B, C, H, W = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=g)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=g)
    rows = (dy[:, None] + torch.arange(H))[:, None, :, None].expand(B, C, H, W + 2 * padding)
    cols = (dx[:, None] + torch.arange(W))[:, None, None, :].expand(B, C, H, W)
    return padded.gather(2, rows).gather(3, cols)


def variants(x: torch.Tensor, g: torch.Generator) -> list[tuple[str, Callable[[], object]]]:
    """The alternatives measured for the warp and the crop, and the parts of the warp."""
    rot = AUGMENT_PRESETS["rotation"]
    reflect = dataclasses.replace(rot, padding_mode="reflection")
    B, _, H, W = x.shape
    deg = (torch.rand(B, generator=g) * 2 - 1) * 180
    theta = affine_matrices(deg, H, W, translate=torch.rand(B, 2) * 0.1 - 0.05, batch=B)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def torch_warp() -> torch.Tensor:
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    return [
        ("  'rotation', reflection padding", lambda: augment(x, reflect, g)),
        ("  'rotation' on a channels-last batch", lambda: augment(x_cl, rot, g)),
        ("  warp(): broadcast grid + grid_sample (used)", lambda: warp(x, theta)),
        ("  F.affine_grid + grid_sample", torch_warp),
        ("  grid only: F.affine_grid", lambda: F.affine_grid(theta, list(x.shape), False)),
        (
            "  sample only: grid_sample bilinear",
            lambda: F.grid_sample(x, grid, align_corners=False),
        ),
        (
            "  sample only: bilinear, channels-last",
            lambda: F.grid_sample(x_cl, grid, align_corners=False),
        ),
        ("  sample only: nearest", lambda: F.grid_sample(x, grid, "nearest", align_corners=False)),
        ("  crop 4: unfold + one index (used)", lambda: random_crop(x, 4, g)),
        ("  crop 4: two gathers (before)", lambda: _crop_two_gathers(x, 4, g)),
        ("  hflip (where)", lambda: random_hflip(x, g)),
        ("  cutout 16", lambda: cutout(x, 16, g)),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--variants", action="store_true", help="also time the warp's alternatives")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    print(f"batch {tuple(x.shape)} float32, {threads} threads, torch {torch.__version__}")

    rows: list[tuple[str, Callable[[], object]]] = [
        ("augment 'rotation'", lambda: augment(x, AUGMENT_PRESETS["rotation"], g)),
        ("augment 'natural'", lambda: augment(x, AUGMENT_PRESETS["natural"], g)),
        ("augment 'none'", lambda: augment(x, AUGMENT_PRESETS["none"], g)),
        (
            "augment_batch crop 4 + hflip + cutout 16",
            lambda: augment_batch(x, g, crop_padding=4, hflip=True, cutout_length=16),
        ),
    ]
    if args.variants:
        rows += variants(x, g)
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  median ms   min ms")
    for name, fn in rows:
        med, best = median_ms(fn, args.repeats)
        print(f"{name:{width}}  {med:9.2f}  {best:7.2f}")


if __name__ == "__main__":
    main()
