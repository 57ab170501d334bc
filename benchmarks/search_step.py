"""Time one search step (one architecture step + one weight step) and its peak memory.

Strategies: ``darts`` (first or second order: every op of every edge runs), ``gdas`` (one
Gumbel-sampled op per edge, straight-through gradient to the alphas) and, for reference, one
training step of a discrete network (``discrete``: DARTS_V2 at the same C and cells, one
forward/backward on each of the two batches, like a search step).

Setting (from the issue, comparable with the original DARTS code): supernet of 8 cells, C=16,
4 nodes, the 8 DARTS ops, 3×32×32 random data, 10 classes; first order at batch 64 and second
order at batch 32 (and 64). Each configuration runs in its own process so peak RSS is its own.

Besides seconds per step it prints the step's FLOP count (torch's FlopCounterMode over the whole
step, backward included) divided by this machine's measured throughput of a large 3×3 convolution:
the time the step would take if every FLOP ran at large-convolution speed.

    python benchmarks/search_step.py               # all configurations
    python benchmarks/search_step.py --order 1 --batch 64 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def conv_throughput() -> float:
    """FLOP/s of a large, well-shaped 3×3 convolution (forward) in channels-last on this CPU."""
    x = torch.randn(64, 64, 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3).contiguous(memory_format=torch.channels_last)
    F.conv2d(x, w, padding=1)
    flops = 2 * 64 * 64 * 32 * 32 * 64 * 9
    times = []
    for _ in range(5):
        t = time.perf_counter()
        F.conv2d(x, w, padding=1)
        times.append(time.perf_counter() - t)
    return flops / statistics.median(times)


def one_config(
    order: int, batch: int, repeats: int, checkpoint_cells: bool, strategy: str = "darts"
) -> dict:

    from scinas.spaces import load_genotype
    from scinas.spaces.darts.network import Network
    from scinas.spaces.darts.supernet import Supernet
    from scinas.strategies.darts import Architect
    from scinas.tasks import Classification

    torch.manual_seed(0)
    task = Classification(num_outputs=10)

    def batch_data():
        x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, 10, (batch,))

    if strategy == "naive":
        from naive_darts import NaiveArchitect, NaiveNetwork  # beside this script

        net = NaiveNetwork(C=16, num_classes=10, layers=8)
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        architect = NaiveArchitect(net, order)

        def step():
            xt, yt = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
            xv, yv = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
            architect.step(xt, yt, xv, yv, 0.025, opt)
            opt.zero_grad()
            net.loss(xt, yt).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()

        return _measure(step, repeats, order=order, batch=batch, strategy=strategy)

    if strategy == "discrete":
        net = Network(load_genotype("DARTS_V2"), 3, 10, (32, 32), C=16, layers=8)
        net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)

        def step():
            for x, y in (batch_data(), batch_data()):
                loss = task.loss(net(x)[0], y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return _measure(step, repeats, order=0, batch=batch, strategy=strategy)

    model = Supernet(3, 10, (32, 32), C=16, layers=8, checkpoint_cells=checkpoint_cells)
    model = model.to(memory_format=torch.channels_last)
    if strategy == "gdas":
        model.sampling, model.tau, order = "gumbel", 10.0, 1
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, task, lr=3e-4, weight_decay=1e-3, order=order)

    def step():
        (xt, yt), (xv, yv) = batch_data(), batch_data()
        for a in model.arch_parameters():
            a.requires_grad_(True)
        architect.step(xt, yt, xv, yv, 0.025, w_opt)
        for a in model.arch_parameters():
            a.requires_grad_(False)
        loss = task.loss(model(xt), yt)
        w_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.weight_parameters(), 5.0)
        w_opt.step()

    return _measure(step, repeats, order=order, batch=batch, strategy=strategy)


def _measure(step, repeats: int, **info) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    step()  # warm-up (also creates the momentum buffers)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    # Peak RSS of the timed steps, read before the FLOP-counting pass (which holds more memory).
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    return {
        **info,
        "median_s": statistics.median(times),
        "times_s": times,
        "flops": flops,
        "peak_rss_gib": peak_gib,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--order", type=int, choices=[0, 1, 2], help="0: discrete step")
    p.add_argument("--batch", type=int)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkpoint", type=int, choices=[0, 1], help="cell checkpointing off/on")
    p.add_argument(
        "--strategy",
        choices=["darts", "gdas", "discrete", "naive"],
        help="darts (default set: orders 1 and 2), gdas, a discrete-network step, or naive: the "
        "original DARTS code's structure (naive_darts.py), the same-run reference",
    )
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        r = one_config(args.order, args.batch, args.repeats, bool(args.checkpoint), args.strategy)
        print(json.dumps(r))
        return
    configs = [
        ("naive", 1, 64, 0),
        ("naive", 2, 32, 0),
        ("darts", 1, 64, 0),
        ("darts", 1, 64, 1),
        ("darts", 2, 32, 0),
        ("darts", 2, 32, 1),
        ("gdas", 1, 64, 0),
        ("discrete", 0, 64, 0),
    ]
    if args.strategy:
        configs = [c for c in configs if c[0] == args.strategy]
    if args.order:
        configs = [c for c in configs if c[1] in (0, args.order)]
    if args.batch:
        configs = [c for c in configs if c[2] == args.batch]
    if args.checkpoint is not None:
        configs = [c for c in configs if c[3] == args.checkpoint]
    tput = conv_throughput()
    # The original DARTS code on a machine of this class (figures from the issue): s/step, GB.
    reference = {(1, 64): (35.0, 9.4), (2, 32): (51.0, None)}
    print(f"large 3x3 conv throughput: {tput / 1e9:.1f} GFLOP/s, {torch.get_num_threads()} threads")
    print(
        f"{'strategy':>8} {'order':>5} {'batch':>5} {'ckpt':>4} {'s/step':>8} {'peak GiB':>8} "
        f"{'GFLOP':>7} {'ideal s':>7} {'x ideal':>7} {'vs naive':>8} {'mem/naive':>9} "
        f"{'vs issue':>8}"
    )
    naive = {}  # (order, batch) -> result of the naive reference in this run
    for strategy, order, batch, ckpt in configs:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            "--strategy",
            strategy,
            "--order",
            str(order),
            "--batch",
            str(batch),
            "--repeats",
            str(args.repeats),
            "--checkpoint",
            str(ckpt),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        ideal = r["flops"] / tput
        if strategy == "naive":
            naive[order, batch] = r
        base = naive.get((order, batch)) if strategy in ("darts", "naive") else None
        vs = f"{base['median_s'] / r['median_s']:.2f}x" if base else "-"
        mem = f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}" if base else "-"
        ref = reference.get((order, batch)) if strategy == "darts" else None
        vs_issue = f"{ref[0] / r['median_s']:.2f}x" if ref else "-"
        print(
            f"{strategy:>8} {order:>5} {batch:>5} {ckpt:>4} {r['median_s']:>8.2f} "
            f"{r['peak_rss_gib']:>8.2f} {r['flops'] / 1e9:>7.1f} {ideal:>7.2f} "
            f"{r['median_s'] / ideal:>7.1f} {vs:>8} {mem:>9} {vs_issue:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
