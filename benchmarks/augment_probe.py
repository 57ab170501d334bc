"""How `train.augment=auto`'s probe decides each view, over seeds and data, with the control view
and without it.

Each seed trains resnet_tiny (`scinas train`, the tiny preset, a short time budget) and records
every ``augment_probe`` of its training. Two rules read the same records: ``control`` (scinas'
verdict: the network must lose more than the tolerance to the control view, its pixels shuffled,
before it judges any view; `scinas.symmetry.probe`) and ``margin only`` (the rule it replaced: a
margin of MIN_LEARNT of a constant output's loss was enough). Each rule's deciding probe is the
first it decides at (`scinas.symmetry.decided`); until the control rule decides, the training
is the same for both, and the margin-only rule never decides later. A rule that decides a view
differently on different seeds of one data set decides it by chance; one that takes a quarter
turn for a symmetry of digits or photographs is wrong. The runs' data: the bundled digits,
MNIST, Fashion-MNIST, the CIFAR-10 subset, and 40 images per class of it (`small_data.py`),
where a network learns colours long before shapes.

    python benchmarks/augment_probe.py --seeds 3 --budget 30 --data-dir ../shared/data --record
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from results import write_result

from scinas.symmetry import MIN_LEARNT, TOLERANCE, decides

DATA = {
    "digits": [],
    "MNIST": ["--data", "mnist"],
    "Fashion-MNIST": ["--data", "fashion-mnist"],
    "CIFAR-10 subset": ["--data", "{dir}/cifar10_jpeg_subset/cifar10_jpeg_subset.npz"],
    "CIFAR-10, 40 per class": ["--data", "{small}"],
}
VIEWS = ("hflip", "vflip", "rot90")


def probes_of(args: list[str], out: Path) -> list[dict]:
    """Every ``augment_probe`` record of one `scinas train` run, with its training's epochs."""
    cmd = [sys.executable, "-m", "scinas", "train", "--genotype", "resnet_tiny", *args]
    subprocess.run(cmd + ["--out", str(out)], check=True, capture_output=True)
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = {e["epoch"]: e["epochs"] for e in events if e.get("event") == "train_epoch"}
    probes = [e for e in events if e.get("event") == "augment_probe"]
    return [dict(p, epochs=epochs[p["epoch"]]) for p in probes]


def margin_only(found: dict, z: float) -> dict:
    """The records as the margin-only rule reads them."""
    out = {}
    for v, f in found.items():
        learnt = f["margin"] > 0 and f["margin"] >= MIN_LEARNT * f["constant"]
        ok = learnt and f["loss_increase"] + z * f["noise"] <= TOLERANCE * f["margin"]
        out[v] = dict(f, learnt=learnt, symmetry=ok)
    return out


def deciding(probes: list[dict], rule, z: float) -> tuple[int | None, dict]:
    """The epoch a rule decides at (None: never within the probes) and its verdicts there, as
    `scinas.symmetry.AutoAugment` does (`scinas.symmetry.decides`)."""
    for p in probes:
        found = rule(p["views"])
        if decides(found, z, "default", last=2 * p["epoch"] >= p["epochs"]):
            return p["epoch"], {v: f["symmetry"] for v, f in found.items()}
    return None, {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=30.0, help="each training's seconds")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--z", type=float, default=2.0, help="the runs' search.noise_z")
    ap.add_argument("--record", action="store_true", help="write a result file")
    ap.add_argument("--json", help="also write every probe record here")
    args = ap.parse_args()
    rules = {
        "control": lambda found: found,
        "margin only": lambda found: margin_only(found, args.z),
    }
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.npz"
        make = [sys.executable, str(Path(__file__).with_name("small_data.py")), "--out", str(small)]
        subprocess.run(make, check=True, capture_output=True)
        for name, data in DATA.items():
            data = [a.format(dir=args.data_dir, small=small) for a in data]
            runs = []
            for seed in range(args.seeds):
                out = Path(tmp) / f"{len(raw)}-{seed}"
                extra = ["--data-dir", args.data_dir] if data else []
                run = [*data, *extra, "--preset", "tiny", "--seed", str(seed)]
                run += ["--set", f"train.time_budget={args.budget}"]
                runs.append(probes_of(run, out))
            raw[name] = runs
            verdicts = {
                r: [deciding(probes, rule, args.z) for probes in runs] for r, rule in rules.items()
            }
            for view in VIEWS:
                if not any(view in p["views"] for probes in runs for p in probes):
                    continue
                row = [name, view]
                for r in rules:
                    kept = sum(bool(v.get(view)) for _, v in verdicts[r])
                    row.append(f"{kept}/{len(runs)}")
                for r in rules:
                    at = [e for e, _ in verdicts[r] if e is not None]
                    never = len(runs) - len(at)
                    row.append(
                        ", ".join(str(e) for e in sorted(at))
                        + (f" ({never} never)" if never else "")
                    )
                rows.append(row)
    columns = [
        "data",
        "view",
        "keeps labels (control)",
        "keeps labels (margin only)",
        "decided at epoch (control)",
        "decided at epoch (margin only)",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    if args.record:
        write_result(
            "augment_probe",
            f"resnet_tiny's probes with the control view and without, {args.seeds} seeds, "
            f"{args.budget:g} s trainings",
            columns,
            rows,
        )


if __name__ == "__main__":
    main()
