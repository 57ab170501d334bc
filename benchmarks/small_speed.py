"""Where the time of small networks goes on a CPU, and what the candidate speed-ups buy.

Four workloads, each one training step (forward, backward, SGD update) on random data, median
of ``--repeats`` steps after warm-up (the first three are issue 31's):

- ``tiny train``: DARTS_V2 at the tiny preset's training size (C=12, 4 cells) on 1×28×28
  images, batch 128 (the tiny preset's MNIST retraining; DARTS_V2 stands in for the genotype a
  search finds);
- ``macro 64``: a macro-space network of about 200k parameters (basic blocks, width matched as
  in ``benchmarks/macro_speed.py``) on 3×64×64 images, batch 128, 2 classes;
- ``tiny search``: one first-order DARTS search step (an architecture step, then a weight step)
  of the tiny preset's supernet (C=8, 4 cells, the 8 DARTS ops) on 1×28×28, batch 32;
- ``nb201 search``: the same step of a NAS-Bench-201 supernet (C=16, 5 cells a stage, as the
  NB201 benchmarks search it) on 3×32×32, batch 64.

Variants: ``eager`` (scinas' default on a CPU: channels-last), ``nchw`` (contiguous),
``compile`` (``torch.compile``, inductor; its compile seconds reported apart: the first steps
after compiling) and ``1 thread``. Each row: images per second, the achieved GFLOP/s (the
step's FLOPs counted by torch's FlopCounterMode, backward included) and its fraction of this
machine's large 3×3 convolution (`search_step.conv_throughput`), and the ratio to ``eager`` in
the same run. ``--profile`` prints the 8 ops of most self time of each eager step.

    python benchmarks/small_speed.py                     # every workload and variant
    python benchmarks/small_speed.py --no-compile --profile --json out.json
    python benchmarks/small_speed.py --only 'nb201 search' --no-compile
    python benchmarks/small_speed.py --batchnorm --record  # BatchNorm: torch's layouts, scinas'
    python benchmarks/small_speed.py --batchnorm --bf16 --record  # the same on bf16 maps
    python benchmarks/small_speed.py --pointwise --record  # 1x1 convolutions: GEMM or oneDNN
    python benchmarks/small_speed.py --depthwise --record  # depthwise weight gradients
    python benchmarks/small_speed.py --precision --record  # bf16 against fp32, auto's choice

``--precision`` times a training step of every hand-designed baseline (the registry's, so a new
one is measured too), macro networks of each block and the DARTS cells in fp32 and under bf16
autocast, beside each network's share of dense convolutions and what ``precision=auto`` picks for
it on this machine (`scinas.precision.resolve`): the evidence for auto's rule.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from macro_speed import matched  # beside this script
from search_step import conv_throughput

import scinas
from scinas import allocator
from scinas.budget import timings
from scinas.flops import count_parameters
from scinas.spaces import SPACES, load_genotype


def _flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def tiny_train(layout):
    cfg = scinas.build_config("tiny")
    net = SPACES.get("darts").build_network(load_genotype("DARTS_V2"), cfg.train, (1, 28, 28), 10)
    return _train_step(net, (1, 28, 28), 10, 128, layout)


def macro_64(layout):
    train = scinas.build_config("tiny").train
    arch = matched(200_000, "basic", 1, train)
    net = SPACES.get("macro").build_network(arch, train, (3, 64, 64), 2)
    return _train_step(net, (3, 64, 64), 2, 128, layout)


def _train_step(net, shape, classes, batch, layout):
    x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
    if layout != "nchw":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    fwd = torch.compile(net) if layout == "compile" else net
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        out = fwd(x)
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out, y).backward()
        opt.step()

    return step, batch, count_parameters(net)


def tiny_search(layout):
    from scinas.spaces.darts.supernet import Supernet

    s = scinas.build_config("tiny").search
    model = Supernet(1, 10, (28, 28), C=s.C, layers=s.layers)
    return _search_step(model, (1, 28, 28), s.batch_size, layout)


def nb201_search(layout):
    s = scinas.build_config(
        "small", overrides=["search.space=nb201", "search.layers=5", "search.C=16"]
    ).search
    model = SPACES.get("nb201").build_supernet(s, (3, 32, 32), 10)
    return _search_step(model, (3, 32, 32), 64, layout)


def _search_step(model, shape, batch, layout):
    """One first-order step of ``model`` (a supernet): an architecture step, then a weight step."""
    from scinas.strategies.darts import Architect
    from scinas.tasks import Classification

    xs = [torch.randn(batch, *shape) for _ in range(2)]
    ys = [torch.randint(0, 10, (batch,)) for _ in range(2)]
    if layout != "nchw":
        model = model.to(memory_format=torch.channels_last)
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    task = Classification(num_outputs=10)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9)
    architect = Architect(model, task, lr=3e-4, weight_decay=1e-3, order=1)

    def step():
        for a in model.arch_parameters():
            a.requires_grad_(True)
        architect.step(xs[0], ys[0], xs[1], ys[1], 0.025, w_opt)
        for a in model.arch_parameters():
            a.requires_grad_(False)
        loss = task.loss(model(xs[0]), ys[0])
        w_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.weight_parameters(), 5.0)
        w_opt.step()

    return step, 2 * batch, count_parameters(model)  # a search step sees two batches


WORKLOADS = {
    "tiny train": tiny_train,
    "macro 64": macro_64,
    "tiny search": tiny_search,
    "nb201 search": nb201_search,
}


def measure(make, layout: str, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    step, images, params = make(layout)
    compile_seconds = None
    if layout == "compile":
        t0 = time.perf_counter()
        step()
        step()  # inductor may compile a second graph for the backward's first reuse
        compile_seconds = time.perf_counter() - t0
    seconds = statistics.median(timings(step, repeats, 2))
    return {
        "layout": layout,
        "threads": threads,
        "params": params,
        "seconds_per_step": seconds,
        "images_per_s": images / seconds,
        "compile_seconds": compile_seconds,
        "flops_per_step": _flops(step) if layout == "eager" else None,
    }


def profile(make, repeats: int = 3) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    step, _, _ = make("eager")
    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(repeats):
            step()
    events = sorted(p.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:8]]


def _mean_ms(fn, repeats: int) -> float:
    """Mean milliseconds of ``repeats`` calls of ``fn()`` after 3 untimed ones."""
    return statistics.mean(timings(fn, repeats, 3)) * 1e3


# (batch, channels, side, affine): the tiny preset's supernet (C=8) and training network (C=12
# cells), the macro 64 network's widths (17, 34, 68), and widths of whole blocks of 16
BATCHNORM_SHAPES = (
    (32, 8, 28, False),
    (128, 12, 28, True),
    (128, 24, 14, True),
    (128, 48, 7, True),
    (128, 17, 32, True),
    (128, 34, 16, True),
    (128, 68, 8, True),
    (128, 16, 32, True),
    (128, 32, 16, True),
)


def batchnorm_layouts(repeats: int = 20, bf16: bool = False) -> list[dict]:
    """BatchNorm2d forward + backward: torch's, contiguous and channels-last, and scinas'
    (`LeanBatchNorm2d`, channels-last) at the workloads' shapes (`BATCHNORM_SHAPES`): where the
    layout's cost depends on the width, and where scinas' `WideBatchNorm` path pays. ``bf16``:
    bf16 maps under bf16 autocast (a convolution's output under `precision=bf16`), fp32
    parameters."""
    from scinas.lean_ops import LeanBatchNorm2d

    dtype = torch.bfloat16 if bf16 else torch.float32
    rows = []
    for batch, channels, side, affine in BATCHNORM_SHAPES:
        times = {}
        for layout in ("nchw", "channels-last", "scinas"):
            torch.manual_seed(0)
            x = torch.randn(batch, channels, side, side).to(dtype)
            if layout != "nchw":
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_(True)
            kind = LeanBatchNorm2d if layout == "scinas" else torch.nn.BatchNorm2d
            bn = kind(channels, affine=affine)
            grad = torch.randn_like(x)

            def step(bn=bn, x=x, grad=grad):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = bn(x)
                y.backward(grad)

            times[layout] = _mean_ms(step, repeats)
        rows.append(
            {
                "batch": batch,
                "channels": channels,
                "side": side,
                "affine": affine,
                "dtype": str(dtype).removeprefix("torch."),
                **times,
            }
        )
        print(
            f"BatchNorm2d {batch}x{channels}x{side}x{side}{'' if affine else ' (no affine)'}: "
            f"{times['nchw']:.2f} ms contiguous, {times['channels-last']:.2f} ms channels-last, "
            f"{times['scinas']:.2f} ms scinas' (channels-last; forward + backward), "
            f"x{times['channels-last'] / times['scinas']:.2f}"
        )
    return rows


# (batch, in, out channels, side): the tiny supernet's and training network's 1×1 convolutions,
# the macro 64 network's, and an expansion
POINTWISE_SHAPES = (
    (32, 8, 8, 28),
    (32, 16, 16, 14),
    (32, 32, 32, 7),
    (128, 12, 12, 28),
    (128, 24, 24, 14),
    (128, 48, 48, 7),
    (128, 17, 17, 32),
    (128, 68, 68, 8),
    (128, 16, 64, 32),
)


def pointwise_paths(repeats: int = 50) -> list[dict]:
    """A 1×1 convolution of a channels-last map, forward and both gradients, as one GEMM over
    (B·H·W, C) and as oneDNN's convolution: the two ways `scinas.lean_ops.pointwise` takes,
    and which one its size rule (`GEMM_BELOW`) picks."""
    from scinas import lean_ops

    rows, default = [], lean_ops.GEMM_BELOW
    for batch, c_in, c_out, side in POINTWISE_SHAPES:
        torch.manual_seed(0)
        x = torch.randn(batch, c_in, side, side).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c_out, c_in)
        g = torch.randn(batch, c_out, side, side).contiguous(memory_format=torch.channels_last)
        times = {}
        for path, below in (("gemm", 1 << 62), ("convolution", 0)):
            lean_ops.GEMM_BELOW = below

            def step(x=x, w=w, g=g):
                lean_ops.pointwise(x, w)
                lean_ops.pointwise(g, w.t())  # the input's gradient
                lean_ops.pointwise_weight_grad(g, x)

            times[path] = _mean_ms(step, repeats)
        lean_ops.GEMM_BELOW = default
        chosen = "gemm" if lean_ops._gemm(x, c_out) else "convolution"
        rows.append(
            {
                "batch": batch,
                "in": c_in,
                "out": c_out,
                "side": side,
                **times,
                "chosen": chosen,
            }
        )
        print(
            f"1x1 {batch}x{c_in}x{side}x{side} -> {c_out}: {times['gemm']:.3f} ms GEMM, "
            f"{times['convolution']:.3f} ms convolution (forward + both gradients); "
            f"scinas takes the {chosen}"
        )
    return rows


# (batch, channels, side, kernel, dilation): a searched tiny network's separable and dilated
# convolutions (C=12 cells at 28×28, 24 at 14, 48 at 7) and the tiny supernet's (C=8, batch 32)
DEPTHWISE_SHAPES = (
    (128, 12, 28, 5, 1),
    (128, 12, 28, 3, 2),
    (128, 12, 28, 5, 2),
    (128, 24, 14, 5, 1),
    (128, 48, 7, 5, 1),
    (32, 8, 28, 5, 1),
    (32, 8, 28, 3, 2),
)


def depthwise_weight_grads(repeats: int = 20) -> list[dict]:
    """The weight gradient of a stride-1 depthwise convolution on a channels-last map: oneDNN's
    (`convolution_backward`) against scinas' (`lean_ops.depthwise_backward`, which splits 5×5,
    7×7 and dilated 3×3 kernels into calls of oneDNN's fast 3×3 kernel where that pays)."""
    from functools import partial

    from scinas import lean_ops

    rows = []
    for batch, channels, side, k, d in DEPTHWISE_SHAPES:
        torch.manual_seed(0)
        cl = torch.channels_last
        x = torch.randn(batch, channels, side, side).contiguous(memory_format=cl)
        w = torch.randn(channels, 1, k, k)
        p = d * (k - 1) // 2
        g = torch.randn(batch, channels, side, side).contiguous(memory_format=cl)
        conv = ([1, 1], [p, p], [d, d])
        ways = {
            "onednn": partial(torch.ops.aten.convolution_backward, g, x, w, None, *conv, False,
                              [0, 0], channels, [False, True, False]),
            "scinas": partial(lean_ops.depthwise_backward, g, x, w, *conv, False, True),
        }  # fmt: skip
        times = {name: _mean_ms(way, repeats) for name, way in ways.items()}
        split = lean_ops._split_weight_grad(g, x, (k, k), conv[1], conv[2]) is not None
        rows.append({"batch": batch, "channels": channels, "side": side, "kernel": k,
                     "dilation": d, **times, "split": split})  # fmt: skip
        print(
            f"depthwise {k}x{k} d{d} {batch}x{channels}x{side}x{side}: {times['onednn']:.3f} ms "
            f"oneDNN, {times['scinas']:.3f} ms scinas ({'split' if split else 'oneDNN'}), "
            f"x{times['onednn'] / times['scinas']:.2f}"
        )
    return rows


def _precision_networks():
    """name -> (build, input shape, classes, batch): the baselines (series ones on a 1×500 series),
    a macro network of each block at about 200k parameters, DARTS_V2 at the tiny preset's size."""
    from scinas.spaces import load_genotype, space_of
    from scinas.spaces.baselines import BASELINES, SERIES_ONLY

    train = scinas.build_config("tiny").train

    def network(arch, shape, classes):
        return lambda: space_of(arch).build_network(arch, train, shape, classes)

    nets = {}
    for name in BASELINES.names():
        shape = (1, 500) if name in SERIES_ONLY else (3, 32, 32)
        nets[name] = (network(load_genotype(name), shape, 10), shape, 10, 64)
    for block, expansion in (("basic", 1), ("bottleneck", 4), ("inverted", 4)):
        arch = matched(200_000, block, expansion, train)
        nets[f"macro {block}"] = (network(arch, (3, 32, 32), 10), (3, 32, 32), 10, 128)
    nets["DARTS_V2"] = (network(load_genotype("DARTS_V2"), (1, 28, 28), 10), (1, 28, 28), 10, 128)
    return nets


def precision_choice(repeats: int = 6) -> list[dict]:
    """Each network's training step in fp32 and under bf16 autocast (the best of two rounds of
    ``repeats``, interleaved), its dense-convolution share and auto's pick here."""
    from scinas.precision import dense_share, has_amx_bf16, resolve

    print(f"AMX-BF16: {has_amx_bf16()}")
    rows = []
    for name, (build, shape, classes, batch) in _precision_networks().items():
        seconds = {"fp32": [], "bf16": []}
        for prec in ("fp32", "bf16") * 2:
            torch.manual_seed(0)
            layout = "eager" if len(shape) == 3 else "nchw"
            step, _, _ = _train_step(build(), shape, classes, batch, layout)

            def autocast_step(step=step, prec=prec):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    step()

            seconds[prec].append(statistics.median(timings(autocast_step, repeats, 2)))
        net = build()
        chosen, _ = resolve("auto", net, shape, torch.device("cpu"))
        fp32, bf16 = min(seconds["fp32"]), min(seconds["bf16"])
        rows.append({"network": name, "shape": "×".join(map(str, shape)), "batch": batch,
                     "dense_share": dense_share(net, shape), "fp32": batch / fp32,
                     "bf16": batch / bf16, "auto": chosen})  # fmt: skip
        print(f"{name:18s} dense {rows[-1]['dense_share']:.2f}  fp32 {batch / fp32:7.0f} img/s  "
              f"bf16 {batch / bf16:7.0f} img/s  x{fp32 / bf16:.2f}  auto: {chosen}")  # fmt: skip
    return rows


def record(kind: str, rows: list[dict], threads: int) -> None:
    from results import write_result  # beside this script

    if kind == "precision":
        from scinas.precision import DENSE_SHARE, has_amx_bf16

        columns = ["network", "input", "batch", "dense share", "fp32 img/s", "bf16 img/s",
                   "x fp32", "auto picks"]  # fmt: skip
        table = [
            [
                r["network"],
                r["shape"],
                r["batch"],
                round(r["dense_share"], 2),
                round(r["fp32"]),
                round(r["bf16"]),
                round(r["bf16"] / r["fp32"], 2),
                r["auto"],
            ]  # fmt: skip
            for r in rows
        ]
        amx = "present" if has_amx_bf16() else "absent"
        setting = f"bf16 against fp32 per network, AMX-BF16 {amx}"
        notes = (
            "A training step (forward, backward, SGD) on random data, fp32 and under bf16 "
            "autocast, the best of two interleaved medians of 6 after 2 warm-up; dense share: "
            "dense convolutions' (one group, kernel above 1×1) share of the forward FLOPs. "
            f"precision=auto picks bf16 from a share of {DENSE_SHARE} on CPUs with AMX-BF16."
        )
    elif kind == "batchnorm":
        columns = [
            "shape (B×C×S×S)",
            "affine",
            "contiguous ms",
            "channels-last ms",
            "scinas ms",
            "x channels-last",
        ]
        table = [
            [
                f"{r['batch']}×{r['channels']}×{r['side']}×{r['side']}",
                "yes" if r["affine"] else "no",
                round(r["nchw"], 3),
                round(r["channels-last"], 3),
                round(r["scinas"], 3),
                round(r["channels-last"] / r["scinas"], 2),
            ]
            for r in rows
        ]
        bf16 = rows[0]["dtype"] == "bfloat16"
        setting = "BatchNorm layouts" + (", bf16 maps under autocast" if bf16 else "")
        notes = (
            ("bf16 maps under bf16 autocast, fp32 parameters. " if bf16 else "")
            + "Training-mode forward + backward, mean of 20 after 3 warm-up, channels-last unless "
            "contiguous. scinas' LeanBatchNorm2d takes WideBatchNorm on channels-last maps whose "
            "width is not a multiple of 16 (lean_ops.BN_BLOCK) and torch's kernel otherwise "
            "(above LEAN_FROM elements; torch's kernel under autocast)."
        )
    elif kind == "depthwise":
        columns = ["shape (B×C×S×S)", "kernel", "oneDNN ms", "scinas ms", "x oneDNN", "split"]
        table = [
            [f"{r['batch']}×{r['channels']}×{r['side']}×{r['side']}",
             f"{r['kernel']}×{r['kernel']}, dilation {r['dilation']}", round(r["onednn"], 3),
             round(r["scinas"], 3), round(r["onednn"] / r["scinas"], 2),
             "yes" if r["split"] else "no"]
            for r in rows
        ]  # fmt: skip
        setting = "depthwise weight gradients"
        notes = (
            "A stride-1 depthwise convolution's weight gradient on a channels-last map, mean of "
            "20 after 3 warm-up: oneDNN's convolution_backward against lean_ops."
            "depthwise_backward, which splits 5×5 and 7×7 kernels into 3×3 windows (from "
            "lean_ops.WINDOWS_FROM input elements) and dilated 3×3 ones into phases (from "
            "PHASES_FROM), each a call of oneDNN's fast 3×3 kernel."
        )
    else:
        columns = [
            "shape (B×C×S×S)",
            "out",
            "GEMM ms",
            "convolution ms",
            "x GEMM",
            "scinas takes",
        ]
        table = [
            [
                f"{r['batch']}×{r['in']}×{r['side']}×{r['side']}",
                r["out"],
                round(r["gemm"], 3),
                round(r["convolution"], 3),
                round(r["gemm"] / r["convolution"], 2),
                r["chosen"],
            ]
            for r in rows
        ]
        setting = "1x1 convolution paths"
        notes = (
            "A channels-last 1×1 convolution's forward, input gradient and weight gradient, mean "
            "of 50 after 3 warm-up, as one GEMM over (B·H·W, C) and as oneDNN's convolution; "
            "scinas' pointwise takes the GEMM below lean_ops.GEMM_BELOW input and output elements."
        )
    write_result("small_speed", setting, columns, table, notes=notes + f" {threads} threads, "
                 "one run, alone.")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    ap.add_argument("--profile", action="store_true", help="the 8 ops of most self time")
    ap.add_argument("--only", choices=list(WORKLOADS), default=None, help="one workload")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--batchnorm", action="store_true", help="only BatchNorm's layouts")
    ap.add_argument("--pointwise", action="store_true", help="only 1x1 convolutions' paths")
    ap.add_argument("--depthwise", action="store_true", help="only depthwise weight gradients")
    ap.add_argument("--precision", action="store_true", help="only bf16 against fp32 per network")
    ap.add_argument("--bf16", action="store_true", help="with --batchnorm: bf16 maps")
    ap.add_argument("--record", action="store_true", help="with one of the four above: a result")
    args = ap.parse_args()
    if args.bf16 and not args.batchnorm:
        ap.error("--bf16 goes with --batchnorm")
    allocator.tune()  # as scinas' runs allocate (SCINAS_MALLOC=system: the C allocator as is)
    micro = {"batchnorm": batchnorm_layouts, "pointwise": pointwise_paths,
             "depthwise": depthwise_weight_grads, "precision": precision_choice}  # fmt: skip
    if kind := next((k for k in micro if getattr(args, k)), None):
        torch.set_num_threads(args.threads)
        rows = micro[kind](bf16=True) if kind == "batchnorm" and args.bf16 else micro[kind]()
        if args.record:
            record(kind, rows, args.threads)
        return
    torch.set_num_threads(args.threads)
    reference = conv_throughput("cpu")
    print(f"large 3x3 convolution: {reference / 1e9:.1f} GFLOP/s on {args.threads} threads")
    layouts = ["eager", "nchw"] + ([] if args.no_compile else ["compile"])
    rows, profiles = [], {}
    for name, make in WORKLOADS.items():
        if args.only not in (None, name):
            continue
        base = None
        variants = [(lay, args.threads) for lay in layouts]
        variants += [("eager", 1)] if args.threads > 1 else []
        for layout, threads in variants:
            if layout == "compile" and name.endswith("search"):
                continue  # the supernets' graphs break (their custom autograd functions)
            r = {"workload": name, **measure(make, layout, args.repeats, threads)}
            if base is None:
                base = r
            r["speedup"] = base["seconds_per_step"] / r["seconds_per_step"]
            flops = base["flops_per_step"]
            r["gflops_per_s"] = flops / r["seconds_per_step"] / 1e9
            r["fraction_of_large_conv"] = r["gflops_per_s"] * 1e9 / reference
            rows.append(r)
            extra = f", compiled in {r['compile_seconds']:.0f}s" if r["compile_seconds"] else ""
            print(
                f"{name:12s} {layout:8s} {threads}t {r['images_per_s']:8.0f} img/s "
                f"{r['gflops_per_s']:6.1f} GFLOP/s ({r['fraction_of_large_conv']:.0%} of the "
                f"large conv) x{r['speedup']:.2f}{extra}"
            )
        torch.set_num_threads(args.threads)
        if args.profile:
            profiles[name] = profile(make)
            print("   " + "; ".join(f"{k} {v:.0%}" for k, v in profiles[name]))
    if args.json:
        with open(args.json, "w") as f:
            out = {
                "large_conv_gflops": reference / 1e9,
                "rows": rows,
                "profiles": profiles,
            }
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
