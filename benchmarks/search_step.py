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

Mixed precision and compilation (`--precision bf16|fp16`, `--compile`) apply scinas' own
`scinas.precision` to the step (autocast over the forward passes, fp16 with a gradient scaler,
second order in float32); `--device cuda` runs it on a GPU, where seconds are taken after
`torch.cuda.synchronize` and the peak is `torch.cuda.max_memory_allocated` over the timed steps
(peak RSS is reported too). `--feed` takes every batch from `scinas.placement.Placement.batches`
over an in-memory uint8 dataset of 2048 images (the real data path: on a GPU the data lives on the
device) instead of a ready synthetic batch: against the plain run at the same settings it shows
whether feeding starves the step.

    python benchmarks/search_step.py               # all configurations
    python benchmarks/search_step.py --order 1 --batch 64 --repeats 3
    python benchmarks/search_step.py --strategy darts --order 1 --batch 64 --precision bf16
    python benchmarks/search_step.py --device cuda --strategy discrete --compile --feed
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


def conv_throughput(device: str = "cpu") -> float:
    """FLOP/s of a large, well-shaped 3×3 convolution (forward; channels-last on a CPU) in
    float32 on ``device``."""
    x = torch.randn(64, 64, 32, 32, device=device)
    w = torch.randn(64, 64, 3, 3, device=device)
    if device == "cpu":
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    F.conv2d(x, w, padding=1)
    flops = 2 * 64 * 64 * 32 * 32 * 64 * 9
    times = []
    for _ in range(5):
        sync()
        t = time.perf_counter()
        F.conv2d(x, w, padding=1)
        sync()
        times.append(time.perf_counter() - t)
    return flops / statistics.median(times)


def one_config(
    order: int,
    batch: int,
    repeats: int,
    checkpoint_cells: bool,
    strategy: str = "darts",
    precision: str = "fp32",
    compile_: bool = False,
    device: str = "cpu",
    feed: bool = False,
) -> dict:

    from scinas.precision import Mixed, maybe_compile, new_scaler
    from scinas.spaces import load_genotype
    from scinas.spaces.darts.network import Network
    from scinas.spaces.darts.supernet import Supernet
    from scinas.strategies.darts import Architect
    from scinas.tasks import Classification

    torch.manual_seed(0)
    task = Classification(num_outputs=10)
    dev = torch.device(device)
    channels_last = dev.type == "cpu"  # scinas' default: channels-last on CPU only
    mixed = Mixed(precision, dev.type)
    info = dict(precision=precision, compile=compile_, device=device, feed=feed)

    def place(net):
        net = net.to(dev)
        return net.to(memory_format=torch.channels_last) if channels_last else net

    if feed:  # the real data path over an in-memory uint8 dataset
        from scinas.placement import Placement

        placement = Placement(dev, channels_last, [0.5] * 3, [0.25] * 3)
        raw = torch.randint(0, 256, (2048, 3, 32, 32), dtype=torch.uint8)
        source = placement.batches(raw, torch.arange(2048) % 10, batch, shuffle=True)

        def cycle():
            while True:
                yield from source

        stream = cycle()

        def batch_data():
            return next(stream)
    else:
        fixed = [
            (
                torch.randn(batch, 3, 32, 32, device=dev),
                torch.randint(0, 10, (batch,), device=dev),
            )
            for _ in range(2)
        ]
        if channels_last:
            fixed = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in fixed]
        turn = [0]

        def batch_data():  # synthetic batches already on the device
            turn[0] ^= 1
            return fixed[turn[0]]

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
        net = maybe_compile(place(net), compile_)
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)

        def step():
            for x, y in (batch_data(), batch_data()):
                with mixed.autocast():
                    loss = task.loss(net(x)[0], y)
                opt.zero_grad(set_to_none=True)
                mixed.backward(loss)
                mixed.unscale(opt)
                mixed.step(opt)

        return _measure(step, repeats, dev, order=0, batch=batch, strategy=strategy, **info)

    model = Supernet(3, 10, (32, 32), C=16, layers=8, checkpoint_cells=checkpoint_cells)
    model = maybe_compile(place(model), compile_)
    if strategy == "gdas":
        model.sampling, model.tau, order = "gumbel", 10.0, 1
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, task, lr=3e-4, weight_decay=1e-3, order=order)
    architect.scaler = new_scaler(precision, dev.type)

    def step():
        (xt, yt), (xv, yv) = batch_data(), batch_data()
        for a in model.arch_parameters():
            a.requires_grad_(True)
        with mixed.autocast():
            architect.step(xt, yt, xv, yv, 0.025, w_opt)
        for a in model.arch_parameters():
            a.requires_grad_(False)
        with mixed.autocast():
            loss = task.loss(model(xt), yt)
        w_opt.zero_grad(set_to_none=True)
        mixed.backward(loss)
        mixed.unscale(w_opt)
        torch.nn.utils.clip_grad_norm_(model.weight_parameters(), 5.0)
        mixed.step(w_opt)

    return _measure(step, repeats, dev, order=order, batch=batch, strategy=strategy, **info)


def _measure(step, repeats: int, on=torch.device("cpu"), **info) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    cuda = on.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(on)

    step()  # warm-up (also creates the momentum buffers; compiles with --compile)
    if info.get("compile"):
        step()  # a second warm-up: recompilations after the first step's guards
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(on)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    # Peaks of the timed steps, read before the FLOP-counting pass (which holds more memory).
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    cuda_gib = torch.cuda.max_memory_allocated(on) / 2**30 if cuda else None
    flops = None
    if not info.get("compile"):  # FlopCounterMode counts eager ops
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    return {
        **info,
        "median_s": statistics.median(times),
        "times_s": times,
        "flops": flops,
        "peak_rss_gib": peak_gib,
        "peak_cuda_gib": cuda_gib,
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
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the network/supernet")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if present"
    )
    p.add_argument(
        "--feed", action="store_true", help="batches through scinas' data path (see above)"
    )
    p.add_argument("--record", action="store_true", help="write a result file (CPU fp32 only)")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.precision == "fp16" and args.device == "cpu":
        p.error("--precision fp16 needs --device cuda (scinas refuses fp16 on a CPU)")
    if args.one:
        r = one_config(
            args.order,
            args.batch,
            args.repeats,
            bool(args.checkpoint),
            args.strategy,
            args.precision,
            args.compile,
            args.device,
            args.feed,
        )
        print(json.dumps(r))
        return
    options = ["--precision", args.precision, "--device", args.device]
    options += ["--compile"] * args.compile + ["--feed"] * args.feed
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
    if options != ["--precision", "fp32", "--device", "cpu"]:  # the reference is CPU fp32 only
        configs = [c for c in configs if c[0] != "naive"]
    tput = conv_throughput(args.device)
    print(
        f"device {args.device}, precision {args.precision}, compile {args.compile}, "
        f"feed {args.feed}" + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else "")
    )
    # The original DARTS code on a machine of this class (figures from the issue): s/step, GB.
    reference = {(1, 64): (35.0, 9.4), (2, 32): (51.0, None)}
    print(f"large 3x3 conv throughput: {tput / 1e9:.1f} GFLOP/s, {torch.get_num_threads()} threads")
    print(
        f"{'strategy':>8} {'order':>5} {'batch':>5} {'ckpt':>4} {'s/step':>8} {'peak GiB':>8} "
        f"{'GFLOP':>7} {'ideal s':>7} {'x ideal':>7} {'vs naive':>8} {'mem/naive':>9} "
        f"{'vs issue':>8} {'cuda GiB':>8}"
    )
    naive = {}  # (order, batch) -> result of the naive reference in this run
    rows = []
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
            *options,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        ideal = r["flops"] / tput if r["flops"] else float("nan")  # no count when compiled
        if strategy == "naive":
            naive[order, batch] = r
        base = naive.get((order, batch)) if strategy in ("darts", "naive") else None
        vs = f"{base['median_s'] / r['median_s']:.2f}x" if base else "-"
        mem = f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}" if base else "-"
        ref = reference.get((order, batch)) if strategy == "darts" else None
        vs_issue = f"{ref[0] / r['median_s']:.2f}x" if ref else "-"
        print(
            f"{strategy:>8} {order:>5} {batch:>5} {ckpt:>4} {r['median_s']:>8.2f} "
            f"{r['peak_rss_gib']:>8.2f} {(r['flops'] or 0) / 1e9:>7.1f} {ideal:>7.2f} "
            f"{r['median_s'] / ideal:>7.1f} {vs:>8} {mem:>9} {vs_issue:>8} "
            f"{r['peak_cuda_gib'] or 0:>8.2f}",
            flush=True,
        )
        rows.append([strategy, order or "-", batch, "on" if ckpt else "off",
                     f"{r['median_s']:.2f}", f"{r['peak_rss_gib']:.2f}",
                     f"{r['median_s'] / ideal:.1f}", vs, mem])  # fmt: skip
    if args.record:
        if options != ["--precision", "fp32", "--device", "cpu"]:
            raise SystemExit("--record keeps CPU fp32 results only (the same-run reference)")
        from results import write_result  # beside this script

        write_result(
            "search_step",
            "paper-size supernet, " + ", ".join(sorted({c[0] for c in configs})),
            ["strategy", "order", "batch", "cell ckpt", "s/step", "peak GiB", "x ideal",
             "vs naive", "memory vs naive"],
            rows,
            notes=f"One run, alone, {torch.get_num_threads()} threads; median of "
            f"{args.repeats} steps after a warm-up, each configuration in its own process "
            f"(peak memory: its peak RSS). Large 3x3 convolution {tput / 1e9:.0f} GFLOP/s in "
            "this run; x ideal: the step's seconds over its FLOPs at that rate.",
        )  # fmt: skip


if __name__ == "__main__":
    main()
