"""DDP against one process at the same global batch: step time and the genotype after K steps.

The paper-size supernet (8 cells, C=16, the 8 DARTS ops, 3×32×32 random data seeded alike in every
process, 10 classes), first-order DARTS steps (architecture step + weight step) at global batch B,
run by ``--nproc`` processes (gloo, ``--threads`` threads each, every process taking its share of
each global batch through `scinas.parallel`, BatchNorm over the global batch) and by one process
with ``--nproc × --threads`` threads. Prints seconds per step (median after one warm-up step) of
each, and whether the two derive the same genotype from their alphas after the steps.

    python benchmarks/ddp_step.py --nproc 2 --threads 1 --batch 64 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def run_steps(batch: int, steps: int, size: str) -> dict:
    from scinas import parallel
    from scinas.spaces.darts.supernet import Supernet
    from scinas.strategies.darts import Architect
    from scinas.tasks import Classification

    C, layers, hw = (16, 8, 32) if size == "paper" else (4, 3, 8)
    torch.manual_seed(0)
    model = Supernet(3, 10, (hw, hw), C=C, layers=layers).to(memory_format=torch.channels_last)
    parallel.sync_batchnorms(model)
    task = Classification(num_outputs=10)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, task, lr=3e-3, weight_decay=1e-3, order=1)
    g = torch.Generator().manual_seed(1)
    times = []
    for _ in range(steps + 1):
        xt, xv = (torch.randn(batch, 3, hw, hw, generator=g) for _ in range(2))
        yt, yv = (torch.randint(0, 10, (batch,), generator=g) for _ in range(2))
        (xt, yt), (xv, yv) = parallel.shard(xt, yt), parallel.shard(xv, yv)
        t = time.perf_counter()
        for a in model.arch_parameters():
            a.requires_grad_(True)
        architect.step(xt, yt, xv, yv, 0.025, w_opt)
        for a in model.arch_parameters():
            a.requires_grad_(False)
        loss = parallel.scale_loss(task.loss(model(xt), yt), len(xt))
        w_opt.zero_grad(set_to_none=True)
        loss.backward()
        parallel.all_reduce_grads(model.weight_parameters())
        torch.nn.utils.clip_grad_norm_(model.weight_parameters(), 5.0)
        w_opt.step()
        times.append(time.perf_counter() - t)
    alphas = [a.detach().flatten().tolist() for a in model.arch_parameters()]
    return {
        "median_s": statistics.median(times[1:]),
        "genotype": model.genotype().to_dict(),
        "alphas": alphas,
        "threads": torch.get_num_threads(),
    }


def _worker(rank, nproc, port, threads, args, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(nproc))
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)
    from scinas import parallel

    parallel.init(torch.device("cpu"))
    r = run_steps(args.batch, args.steps, args.size)
    if rank == 0:
        queue.put(r)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up)")
    p.add_argument("--size", choices=["paper", "tiny"], default="paper")
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(r, args.nproc, port, args.threads, args, queue))
        for r in range(args.nproc)
    ]
    for proc in procs:
        proc.start()
    ddp = queue.get()
    for proc in procs:
        proc.join()
    torch.set_num_threads(args.nproc * args.threads)
    one = run_steps(args.batch, args.steps, args.size)
    worst = max(
        abs(a - b)
        for xs, ys in zip(ddp["alphas"], one["alphas"], strict=True)
        for a, b in zip(xs, ys, strict=True)
    )
    print(
        json.dumps(
            {
                "size": args.size,
                "global_batch": args.batch,
                "steps": args.steps,
                f"ddp_{args.nproc}x{args.threads}_s_per_step": ddp["median_s"],
                f"one_process_{one['threads']}_threads_s_per_step": one["median_s"],
                "same_genotype": ddp["genotype"] == one["genotype"],
                "max_alpha_difference": worst,
            }
        )
    )


if __name__ == "__main__":
    main()
