"""How the evaluation batch sets the time of a validation or test pass of a small network on a CPU.

Every split scinas scores (each epoch's validation, the lineage's decisions, the test and its
test-time views) goes through the network in batches of 256, placed as the trainer places them
(channels-last images, uint8 normalised on the fly). For each workload and batch size: images
per second over a split of ``--samples`` random inputs, the median of ``--repeats`` passes after
a warm-up pass, and the ratio to the batch of 256 in the same run. It runs with scinas'
allocator setting (`scinas.allocator`); ``SCINAS_MALLOC=system`` measures glibc as it comes.

    python benchmarks/eval_batch.py
    python benchmarks/eval_batch.py --batches 32 64 128 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import scinas
from scinas import allocator
from scinas.fit import build_network
from scinas.placement import Placement
from scinas.spaces import load_genotype
from scinas.train import predict

# name: (network, input shape, classes)
WORKLOADS = {
    "resnet_tiny 1x64x64": ("resnet_tiny", (1, 64, 64), 10),
    "resnet_tiny 3x32x32": ("resnet_tiny", (3, 32, 32), 10),
    "DARTS_V2 tiny 1x28x28": ("DARTS_V2", (1, 28, 28), 10),
    "resnet1d 1x500": ("resnet1d", (1, 500), 5),
}


def images_per_second(name: str, batch: int, samples: int, repeats: int) -> float:
    arch, shape, classes = WORKLOADS[name]
    torch.manual_seed(0)
    train = scinas.build_config("tiny").train
    images = len(shape) == 3
    place = Placement(torch.device("cpu"), images, [0.0] * shape[0], [1.0] * shape[0])
    net = place.module(build_network(load_genotype(arch), train, shape, classes))
    x = torch.randint(0, 256, (samples, *shape), dtype=torch.uint8)
    y = torch.randint(0, classes, (samples,))
    batches = place.batches(x, y, batch)
    with torch.inference_mode():
        predict(net, batches)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predict(net, batches)
            times.append(time.perf_counter() - t0)
    return samples / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args()
    allocator.tune()  # as scinas' runs allocate (SCINAS_MALLOC=system: the C allocator as is)
    rows = []
    print(f"{'workload':24} {'batch':>6} {'images/s':>10} {'vs 256':>7}")
    for name in WORKLOADS:
        rates = {b: images_per_second(name, b, args.samples, args.repeats) for b in args.batches}
        ref = rates.get(256)
        for b, r in rates.items():
            ratio = r / ref if ref else float("nan")
            print(f"{name:24} {b:>6} {r:>10.0f} {ratio:>7.2f}")
            rows.append({"workload": name, "batch": b, "images_per_second": r, "vs_256": ratio})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
