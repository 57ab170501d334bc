"""Proxy speed: seconds to score one architecture with the full set of zero-cost proxies (batch 64,
3×32×32, 10 classes), per NAS-Bench-201 architecture (C=16, 5 cells per stage: the benchmark's
network) and, with ``--per-proxy``, each proxy alone.

    python benchmarks/proxies.py                       # 20 random NB201 architectures, 2 threads
    python benchmarks/proxies.py --archs 50 --per-proxy

Each architecture is timed after one warm-up scoring of the first; the figure is the mean (and
median, max) over the architectures, whose costs differ by their ops (a cell of convolutions
against one of pools and skips). Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from scinas.proxies import PROXIES, score_network
from scinas.spaces.nb201 import NB201_OPS, NB201Arch, NB201Network


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-proxy", action="store_true", help="also time each proxy alone")
    p.add_argument("--nchw", action="store_true", help="contiguous NCHW instead of channels-last")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    archs = [NB201Arch(tuple(str(o) for o in rng.choice(NB201_OPS, 6))) for _ in range(a.archs)]
    x = torch.randn(a.batch, 3, 32, 32, generator=torch.Generator().manual_seed(a.seed))
    # placed as scinas places networks and batches on a CPU (`scinas.placement`, channels-last:
    # 0.72 s against 1.15 s per architecture in NCHW, measured 2026-11-30); --nchw for NCHW
    layout = torch.contiguous_format if a.nchw else torch.channels_last
    x = x.contiguous(memory_format=layout)
    y = torch.arange(a.batch) % 10
    names = PROXIES.names()

    def net(arch):
        torch.manual_seed(a.seed)
        net = NB201Network(arch, 3, 10, (32, 32), C=16, cells_per_stage=5)
        return net.to(memory_format=layout)

    score_network(net(archs[0]), x, y, F.cross_entropy, names)  # warm-up
    groups = [names] + ([[n] for n in names] if a.per_proxy else [])
    for group in groups:
        times = []
        for arch in archs:
            model = net(arch)
            t0 = time.perf_counter()
            score_network(model, x, y, F.cross_entropy, group)
            times.append(time.perf_counter() - t0)
        label = "all proxies" if group is names else group[0]
        print(
            f"{label:>12}: mean {statistics.mean(times):.3f}s  median "
            f"{statistics.median(times):.3f}s  max {max(times):.3f}s per architecture "
            f"({a.archs} NB201 archs, batch {a.batch}, {a.threads} threads, "
            f"{'NCHW' if a.nchw else 'channels-last'})",
            flush=True,
        )


if __name__ == "__main__":
    main()
