"""How consistently `train.augment=auto`'s deciding probe decides each view, over seeds and data.

Each seed trains resnet_tiny (`scinas train`, the tiny preset, a short time budget) and its deciding
``augment_probe`` record (mostly after epoch 1, where both `auto` and the lineage's symmetry step
look; later where the network was still at chance) gives each view's loss increase, noise and
margin. Two rules are applied to the same records: ``labels`` (scinas' verdict in the record: the
increase plus z errors within TOLERANCE of the margin) and ``symmetry`` (the rule it replaced, which
also asked the increase to be within z errors of none). A rule that decides a view differently on
different seeds of one data set decides it by chance. The runs' data: the bundled digits, MNIST,
Fashion-MNIST and the CIFAR-10 subset.

    python benchmarks/augment_probe.py --seeds 3 --budget 30 --data-dir ../shared/data --record
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from results import write_result

DATA = {
    "digits": [],
    "MNIST": ["--data", "mnist"],
    "Fashion-MNIST": ["--data", "fashion-mnist"],
    "CIFAR-10 subset": ["--data", "{dir}/cifar10_jpeg_subset/cifar10_jpeg_subset.npz"],
}


def deciding_probe(args: list[str], out: Path) -> dict | None:
    """The deciding ``augment_probe`` record of one `scinas train` run (else its last; None
    if it made none)."""
    cmd = [sys.executable, "-m", "scinas", "train", "--genotype", "resnet_tiny", *args]
    subprocess.run(cmd + ["--out", str(out)], check=True, capture_output=True)
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    probes = [e for e in events if e.get("event") == "augment_probe"]
    return next((p for p in probes if p["decided"]), probes[-1] if probes else None)


def rules(f: dict, z: float) -> dict[str, bool]:
    """scinas' verdict as the run recorded it, and the old rule's on the same figures."""
    return {
        "labels": f["symmetry"],
        "symmetry": f["symmetry"] and f["loss_increase"] <= z * f["noise"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=30.0, help="each training's seconds")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--z", type=float, default=2.0, help="the runs' search.noise_z")
    ap.add_argument("--record", action="store_true", help="write a result file")
    ap.add_argument("--json", help="also write every probe record here")
    args = ap.parse_args()
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in DATA.items():
            data = [a.format(dir=args.data_dir) for a in data]
            probes = []
            for seed in range(args.seeds):
                out = Path(tmp) / f"{len(raw)}-{seed}"
                extra = ["--data-dir", args.data_dir] if data else []
                run = [*data, *extra, "--preset", "tiny", "--seed", str(seed)]
                run += ["--set", f"train.time_budget={args.budget}"]
                probe = deciding_probe(run, out)
                if probe is not None:
                    probes.append(probe)
            raw[name] = probes
            for view in ("hflip", "vflip", "rot90"):
                found = [p["views"][view] for p in probes if view in p["views"]]
                if not found:
                    continue
                share = [f["loss_increase"] / f["margin"] for f in found if f["margin"] > 0]
                kept = {r: sum(rules(f, args.z)[r] for f in found) for r in ("labels", "symmetry")}
                rows.append(
                    [
                        name,
                        view,
                        len(found),
                        f"{statistics.mean(share):+.2f} ± {statistics.pstdev(share):.2f}"
                        if share
                        else "no margin",
                        f"{kept['labels']}/{len(found)}",
                        f"{kept['symmetry']}/{len(found)}",
                    ]
                )
    columns = ["data", "view", "probes", "loss rise / margin", "keeps labels", "symmetry (old)"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    if args.record:
        write_result(
            "augment_probe",
            f"resnet_tiny's deciding probe, {args.seeds} seeds, {args.budget:g} s trainings",
            columns,
            rows,
        )


if __name__ == "__main__":
    main()
