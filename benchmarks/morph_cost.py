"""What a lineage challenger's step costs against its FLOPs: the price behind
``lineage_decision``'s ``"priced": "seconds"`` (issue 30).

The lineage search (``search.strategy=lineage``) trains each architecture challenger, a macro
morph of the incumbent, for the incumbent's segment. Priced by FLOPs, it got the incumbent's steps
times the FLOPs ratio; under a time budget it gets the incumbent's seconds. This measures, for a
start network and every morph the macro space offers it, one training step (forward, backward,
SGD with momentum, channels-last, as scinas trains), median of ``--repeats`` after 2 warm-up
steps, all in one process with ``--threads`` threads, the networks' steps interleaved round by
round so that a drift of the machine's speed falls on all of them alike. Per morph: its step
time and its FLOPs as multiples of the start network's, and the share of the seconds price's steps
that the FLOPs price would have given it (FLOPs price / seconds price = time ratio / FLOPs ratio).
Run alone:

    python benchmarks/morph_cost.py                       # resnet_tiny, 3×32×32, batch 128
    python benchmarks/morph_cost.py --shape 1,28,28 --record
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import scinas
from scinas.fit import build_network
from scinas.flops import count_flops
from scinas.spaces import load_genotype
from scinas.spaces.macro_morph import morphs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", default="macro:resnet_tiny", help="a macro point to morph")
    ap.add_argument("--shape", default="3,32,32", help="input C,H,W")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", action="store_true", help="write a benchmarks/results file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split(","))
    cfg = scinas.build_config("tiny", overrides=["search.space=macro", "search.strategy=lineage"])
    start = load_genotype(args.start)
    nets = {"start": start} | {
        m.name: m.target for m in morphs(start, cfg.search.space_own, shape[1:])
    }
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, *shape, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch,), generator=gen)

    steps, flops = {}, {}
    for name, arch in nets.items():
        torch.manual_seed(0)
        net = build_network(arch, cfg.train, shape, args.classes)
        net = net.to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        flops[name] = count_flops(net, shape)

        def step(net=net, opt=opt):
            out = net(x)
            out = out[0] if isinstance(out, tuple) else out
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(out, y).backward()
            opt.step()

        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in nets}
    for r in range(args.repeats + 2):  # round by round: every network sees the same machine
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}

    columns = ["network", "MFLOPs/sample", "ms/step", "time ×", "FLOPs ×", "FLOPs price / seconds"]
    rows = []
    for name in nets:
        t, f = ms[name] / ms["start"], flops[name] / flops["start"]
        label = args.start.removeprefix("macro:") if name == "start" else name
        rows.append([label, round(flops[name] / 1e6, 2), round(ms[name], 1), t, f, t / f])
    print(f"{args.start} and its morphs, input {shape}, batch {args.batch}, {args.threads} threads")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in row) + " |")
    if args.record:
        from results import write_result

        setting = f"{args.start.removeprefix('macro:')} morphs, {'x'.join(map(str, shape))}"
        notes = (
            f"batch {args.batch}, {args.threads} threads, median of {args.repeats} steps after "
            "2 warm-up, the networks interleaved round by round. A last column below 1 means "
            "the FLOPs price gave that challenger fewer steps than the start network's seconds "
            "buy it."
        )
        write_result("morph_cost", setting, columns, rows, notes=notes)


if __name__ == "__main__":
    main()
