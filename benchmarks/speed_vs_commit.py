"""Training and search throughput of two commits of scinas, measured in one run through the CLI.

Issue 31 asks for the small networks' throughput against an older commit (bfa1c7d) in the same
run, on the same machine. Module APIs change between commits, the command line does not, so each
workload here is a ``scinas`` command run from a copy of each commit's ``src`` (``git archive``
into a temporary folder, put first on ``PYTHONPATH``), and its seconds are read from the run's
``metrics.jsonl``: the last epoch's (the first pays the caches, the planning and the probes).
Commits alternate within each repeat (base, head, base, head...) so that drift in the machine's
speed falls on both; the figure is the median over repeats.

Workloads (each a few hundred images per epoch, the same settings at both commits):

- ``tiny train``: ``scinas train --preset tiny --genotype DARTS_V2`` on MNIST (C=12, 4 cells,
  28×28, batch 128), ``train.augment=default`` (a newer default probes the data's symmetries);
- ``tiny search``: ``scinas search --preset tiny`` with first-order DARTS on its supernet
  (C=8, 4 cells, batch 32; each step sees a weight and an architecture batch);
- ``resnet_tiny 64``: ``scinas train --genotype macro:resnet_tiny`` on random 64×64×3 images
  of 2 classes (the content does not change the work);
- ``macro 64``: the same for the issue's macro network of about 200k parameters (basic blocks,
  width matched as in ``benchmarks/macro_speed.py`` and ``small_speed.py``), given to both
  commits as the same architecture file.

The training workloads' images per second times their FLOPs per image (a training step's
forward and backward, counted at the head by torch's FlopCounterMode) is the GFLOP/s each
reaches, reported as a share of this machine's large 3×3 convolution measured in the same run
(`search_step.conv_throughput`), as the issue asks.

    python benchmarks/speed_vs_commit.py --base bfa1c7d --head HEAD [--record]

It needs ``../shared/data/mnist`` (``--data-dir``) and nothing else computing beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from results import write_result  # beside this script
from search_step import conv_throughput  # beside this script

ROOT = Path(__file__).resolve().parent.parent


def workloads(
    data_dir: Path, images64: Path, macro64: Path, n: int
) -> dict[str, tuple[list[str], str, int]]:
    """name -> (scinas arguments, the metrics event of an epoch, images per epoch)."""
    common = ["--preset", "tiny", "--set", "data.max_val=100", "--quiet"]
    mnist = ["--data", "mnist", "--data-dir", str(data_dir)]
    train = ["--set", "train.epochs=2", "--set", f"train.max_samples={n}"]
    train += ["--set", "train.augment=default"]
    return {
        "tiny train": (["train", *mnist, "--genotype", "DARTS_V2", *common, *train],
                       "train_epoch", n),
        "tiny search": (["search", *mnist, *common, "--set", "search.space=darts",
                         "--set", "search.strategy=darts", "--set", "search.epochs=2",
                         "--set", f"search.max_samples={n}"], "search_epoch", n),
        "resnet_tiny 64": (["train", "--data", str(images64), "--genotype", "macro:resnet_tiny",
                            *common, *train], "train_epoch", n),
        "macro 64": (["train", "--data", str(images64), "--genotype", str(macro64), *common,
                      *train], "train_epoch", n),
    }  # fmt: skip


def macro_200k() -> dict:
    """The ~200k-parameter macro network of ``small_speed.py``, as keys bfa1c7d reads too."""
    from macro_speed import matched  # beside this script

    import scinas

    arch = matched(200_000, "basic", 1, scinas.build_config("tiny").train).to_dict()
    old = ("depth", "width", "downsample", "block", "expansion", "kernel", "dilation", "se")
    return {**arch, "stages": [{k: st[k] for k in old} for st in arch["stages"]]}


def train_flops_per_image(macro: dict) -> dict[str, float]:
    """FLOPs of one training step per image (forward and backward, convolutions and linear
    layers) of each training workload's network, built by the head's code (contiguous maps, so
    that no lean op's bookkeeping matmuls are counted)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    import scinas
    from scinas.spaces import SPACES, load_genotype

    train = scinas.build_config("tiny").train
    macro_space = SPACES.get("macro")
    nets = {
        "tiny train": (SPACES.get("darts").build_network(
            load_genotype("DARTS_V2"), train, (1, 28, 28), 10), (1, 28, 28), 10),
        "resnet_tiny 64": (macro_space.build_network(
            load_genotype("macro:resnet_tiny"), train, (3, 64, 64), 2), (3, 64, 64), 2),
        "macro 64": (macro_space.build_network(
            macro_space.from_dict(macro), train, (3, 64, 64), 2), (3, 64, 64), 2),
    }  # fmt: skip
    batch, flops = 8, {}
    for name, (net, shape, classes) in nets.items():
        net.train()
        x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
        with FlopCounterMode(display=False) as counter:
            out = net(x)
            F.cross_entropy(out[0] if isinstance(out, tuple) else out, y).backward()
        flops[name] = counter.get_total_flops() / batch
    return flops


def export(commit: str, into: Path) -> Path:
    """``src`` of ``commit`` (a copy, whatever the working tree holds) under ``into``."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    folder = into / sha
    archive = into / f"{sha}.tar"
    subprocess.run(["git", "archive", "-o", str(archive), sha, "src"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def epoch_seconds(src: Path, args: list[str], event: str, out: Path) -> float:
    """Run ``scinas ARGS --out OUT`` from ``src``; the last epoch's seconds."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-c", "from scinas.cli import main; main()", *args, "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} at {src} failed:\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e.get("event") == event]
    if not epochs:
        raise SystemExit(f"no {event} event in {out / 'metrics.jsonl'}")
    return float(epochs[-1]["seconds"])


def check_origin(src: Path) -> None:
    """The copy, not the installed scinas, is what runs (an editable install could win)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    where = subprocess.run(
        [sys.executable, "-c", "import scinas; print(scinas.__file__)"], env=env, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if not Path(where).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"PYTHONPATH={src} imports scinas from {where}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="bfa1c7d")
    ap.add_argument("--head", default="HEAD")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    # 1280 (10 steps of 128) left 2-3 s epochs whose repeats differed by up to 27%
    ap.add_argument("--images", type=int, default=3840, help="training images per epoch")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", default=None, help="one workload's name")
    ap.add_argument("--record", action="store_true", help="write a result file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        images64 = tmp / "images64.npz"
        np.savez(
            images64,
            x_train=rng.integers(0, 256, (args.images + 200, 64, 64, 3), dtype=np.uint8),
            y_train=rng.integers(0, 2, args.images + 200),
            x_test=rng.integers(0, 256, (100, 64, 64, 3), dtype=np.uint8),
            y_test=rng.integers(0, 2, 100),
        )
        macro = macro_200k()
        macro64 = tmp / "macro64.json"
        macro64.write_text(json.dumps(macro))
        srcs = {name: export(c, tmp) for name, c in (("base", args.base), ("head", args.head))}
        sha = {name: src.parent.name for name, src in srcs.items()}
        for src in srcs.values():
            check_origin(src)
        loads = workloads(Path(args.data_dir), images64, macro64, args.images)
        if args.only:
            loads = {args.only: loads[args.only]}
        flops = train_flops_per_image(macro)
        reference = conv_throughput("cpu")
        print(f"large 3x3 convolution: {reference / 1e9:.1f} GFLOP/s", flush=True)
        rows = []
        for name, (cli, event, images) in loads.items():
            seconds: dict[str, list[float]] = {"base": [], "head": []}
            for r in range(args.repeats):
                for which, src in srcs.items():
                    out = tmp / f"{name.replace(' ', '_')}-{which}-{r}"
                    seconds[which].append(epoch_seconds(src, cli, event, out))
            base, head = (statistics.median(seconds[k]) for k in ("base", "head"))
            row = {
                "workload": name,
                "images_per_epoch": images,
                "base_seconds": [round(x, 2) for x in seconds["base"]],
                "head_seconds": [round(x, 2) for x in seconds["head"]],
                "base_images_per_s": images / base,
                "head_images_per_s": images / head,
                "speedup": base / head,
            }
            for which in ("base", "head"):  # the same network at both commits: equal FLOPs
                gflops = flops.get(name, math.nan) * row[f"{which}_images_per_s"] / 1e9
                row[f"{which}_gflops_per_s"] = gflops
                row[f"{which}_of_large_conv"] = gflops * 1e9 / reference
            rows.append(row)
            print(
                f"{name:15s} {sha['base']}: {row['base_images_per_s']:7.1f} img/s "
                f"({share(row['base_of_large_conv'])})   {sha['head']}: "
                f"{row['head_images_per_s']:7.1f} img/s ({share(row['head_of_large_conv'])})   "
                f"x{row['speedup']:.2f}",
                flush=True,
            )
    if args.record:
        write_result(
            "speed_vs_commit",
            f"small networks' throughput, {sha['base']} against {sha['head']}",
            ["workload", f"{sha['base']} img/s", f"{sha['head']} img/s", "speed-up",
             f"{sha['base']} of large conv", f"{sha['head']} of large conv"],
            [[r["workload"], f"{r['base_images_per_s']:.0f}", f"{r['head_images_per_s']:.0f}",
              f"{r['speedup']:.2f}x", share(r["base_of_large_conv"]),
              share(r["head_of_large_conv"])] for r in rows],
            notes=f"One run, alone; the median over {args.repeats} alternating repeats of "
            f"each command's last epoch of {args.images} training images (seconds per repeat: "
            + "; ".join(f"{r['workload']} {r['base_seconds']} against {r['head_seconds']}"
                        for r in rows) + f"). Large 3x3 convolution: {reference / 1e9:.0f} "
            "GFLOP/s in this run; a training workload's share is its images per second times "
            "its training FLOPs per image (" + ", ".join(
                f"{k} {v / 1e6:.0f} MFLOP" for k, v in flops.items()) + ") over it.",
        )  # fmt: skip


def share(fraction: float) -> str:
    """A share of the large convolution, or a dash where it is not counted (the search)."""
    return "–" if math.isnan(fraction) else f"{fraction:.1%}"


if __name__ == "__main__":
    main()
