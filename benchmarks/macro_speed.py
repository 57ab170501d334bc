"""Training-step time of macro-space networks against DARTS cell networks of similar size.

One SGD step (forward, backward, update) on a 3×32×32 random batch, 10 classes, median of
``--repeats`` steps after warm-up, with torch's threads (``--threads``). Networks:

- ``darts DARTS_V2``: the published DARTS cell at ``--C`` and ``--layers`` (scinas' own network);
- ``macro resnet_tiny``: the ResNet-8 point of the macro space (78k parameters at 10 classes);
- ``macro @darts``: a macro network of basic 3×3 blocks, 3 stages of 2 blocks, its width scaled
  until its parameter count is the nearest to the DARTS network's (similar params);
- ``macro inverted @darts``: the same with inverted residual blocks (expansion 4; depthwise
  convolutions like the DARTS cells' separable ones), width matched the same way.

Printed per network: parameters, FLOPs per sample, ms per step, achieved GFLOP/s (3 × forward
FLOPs per sample × batch / step time), and the ratio of each step time to the DARTS network's in
the same run: compare those ratios, not seconds across machines.

    python benchmarks/macro_speed.py                      # batch 64, C=16, 8 cells
    python benchmarks/macro_speed.py --threads 2 --batch 96 --repeats 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

import scinas
from scinas.budget import timings
from scinas.flops import count_flops, count_parameters
from scinas.spaces import SPACES, load_genotype
from scinas.spaces.macro import MacroArch, MacroStage


def step_ms(net: torch.nn.Module, batch: int, repeats: int) -> float:
    """Median ms of one SGD step of ``net`` on a random batch, after 3 warm-up steps."""
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        out = out[0] if isinstance(out, tuple) else out
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.step()

    return 1e3 * statistics.median(timings(step, repeats, 3))


def macro(width: int, block: str = "basic", expansion: int = 1) -> MacroArch:
    widths = (width, 2 * width, 4 * width)
    stages = tuple(MacroStage(2, w, i > 0, block, expansion) for i, w in enumerate(widths))
    return MacroArch(width, stages)


def matched(target: int, block: str, expansion: int, train) -> MacroArch:
    """The macro network of this block whose parameter count is nearest ``target``."""
    space = SPACES.get("macro")

    def params(w):
        with torch.device("meta"):
            net = space.build_network(macro(w, block, expansion), train, (3, 32, 32), 10)
        return count_parameters(net)

    best = min(range(4, 257), key=lambda w: abs(params(w) - target))
    return macro(best, block, expansion)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train = scinas.build_config("tiny").train.model_copy(
        update={"C": args.C, "layers": args.layers, "auxiliary": False}
    )
    darts = load_genotype("DARTS_V2")
    nets = {"darts DARTS_V2": darts}
    torch.manual_seed(0)
    target = count_parameters(SPACES.get("darts").build_network(darts, train, (3, 32, 32), 10))
    nets["macro resnet_tiny"] = load_genotype("macro:resnet_tiny")
    nets["macro @darts"] = matched(target, "basic", 1, train)
    nets["macro inverted @darts"] = matched(target, "inverted", 4, train)
    rows = []
    for name, arch in nets.items():
        net = SPACES.get(arch.space).build_network(arch, train, (3, 32, 32), 10)
        flops = count_flops(net, (3, 32, 32))
        ms = step_ms(net, args.batch, args.repeats)
        rows.append(
            {
                "network": name,
                "arch": str(arch) if arch.space == "macro" else "DARTS_V2",
                "params": count_parameters(net),
                "flops_per_sample": flops,
                "ms_per_step": ms,
                "gflops_per_s": 3 * flops * args.batch / ms / 1e6,
            }
        )
    base = rows[0]["ms_per_step"]
    print(
        f"batch {args.batch}, DARTS C={args.C} layers={args.layers}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'network':24s} {'params':>10s} {'MFLOPs':>8s} {'ms/step':>9s} {'GFLOP/s':>8s} ratio")
    for r in rows:
        r["ratio_to_darts"] = r["ms_per_step"] / base
        print(
            f"{r['network']:24s} {r['params']:>10,d} {r['flops_per_sample'] / 1e6:>8.1f} "
            f"{r['ms_per_step']:>9.1f} {r['gflops_per_s']:>8.1f} {r['ratio_to_darts']:.2f}"
        )
        if r["network"].startswith("macro @") or r["network"].startswith("macro inv"):
            print(f"    {r['arch']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "threads": torch.get_num_threads(), "rows": rows}, f)


if __name__ == "__main__":
    main()
