"""Zero-cost proxies on NAS-Bench-201: Spearman rho between each proxy (and combinations) and the
table's 200-epoch CIFAR-10 test accuracy, over a seeded sample of architectures.

Each architecture's network is the benchmark's own (C=16, 5 cells per stage, 10 classes),
freshly initialised (torch seeded with ``--seed`` + the architecture's table index) and scored by
`scinas.proxies.score_network` on one batch of ``--batch`` images of the shared CIFAR-10 subset
(normalised by its training mean/std), the same batch for every architecture. Scores go to a
cache file (one JSON line per architecture, with the seconds it took), so the work can be split
across processes or sessions (``--start``/``--stop`` over the same seeded sample, one cache) and
the correlations recomputed without scoring again (``--stop 0``).

Published (Abdelfattah et al. 2021, NAS-Bench-201 CIFAR-10): synflow 0.74, jacov 0.73
(Mellor et al.'s jacob_cov), naswot 0.78 (Mellor et al. 2021 v2), snip 0.64, grad_norm 0.64,
params 0.73, flops 0.73 (values rounded; their networks, batch sizes and data differ from these).

    python benchmarks/proxies_nb201.py --n 1000 --cache proxies_nb201.jsonl      # all in one go
    python benchmarks/proxies_nb201.py --n 1000 --cache c.jsonl --start 0 --stop 500   # split
    python benchmarks/proxies_nb201.py --n 1000 --cache c.jsonl --start 500 --stop 1000
    python benchmarks/proxies_nb201.py --n 1000 --cache c.jsonl --stop 0 --out rho.json

Runtime: the full proxy set costs about two training steps of each network at batch 64; on 2
cores, channels-last as scinas runs them there, 0.67 s per architecture on average (measured
2026-11-30), so 1,000 architectures take about 11 minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scinas.bench import TEST_COLUMN
from scinas.proxies import PROXIES, rank_average, score_network
from scinas.spaces.nb201 import NB201Arch, NB201Network

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
# fixed combinations reported whatever the data says (the best subset is chosen on this same
# sample, so it is reported separately as optimistic)
COMBOS = ("synflow+jacov", "synflow+naswot", "synflow+naswot+jacov", "naswot+jacov")


def cifar_batch(path: Path, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path, allow_pickle=False) as z:
        x, y = z["x_train"], z["y_train"]
    xf = x.astype(np.float32) / 255.0
    mean, std = xf.mean((0, 1, 2)), xf.std((0, 1, 2))
    pick = np.random.default_rng(seed).choice(len(x), n, replace=False)
    xb = torch.from_numpy(((xf[pick] - mean) / std).transpose(0, 3, 1, 2).copy())
    xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, torch.from_numpy(y[pick].astype(np.int64))


def sample(table, n: int, seed: int) -> list[int]:
    """A seeded sample of ``n`` distinct table rows."""
    return sorted(np.random.default_rng(seed).choice(len(table["arch_str"]), n, replace=False))


def read_cache(path: Path) -> dict[str, dict]:
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            out[row["arch"]] = row
    return out


def score_rows(table, rows, x, y, cache: Path, seed: int, threads: int) -> None:
    torch.set_num_threads(threads)
    done = read_cache(cache)
    names = PROXIES.names()
    todo = [i for i in rows if str(table["arch_str"][i]) not in done]
    print(f"{len(rows) - len(todo)} cached, {len(todo)} to score", flush=True)
    with open(cache, "a") as f:
        for k, i in enumerate(todo):
            arch = str(table["arch_str"][i])
            torch.manual_seed(seed + int(i))
            net = NB201Network(NB201Arch.parse(arch), 3, 10, (32, 32), C=16, cells_per_stage=5)
            net = net.to(memory_format=torch.channels_last)  # as scinas places it on a CPU
            t0 = time.perf_counter()
            scores = score_network(net, x, y, F.cross_entropy, names)
            seconds = time.perf_counter() - t0
            f.write(
                json.dumps({"arch": arch, "index": int(i), "seconds": seconds, **scores}) + "\n"
            )
            f.flush()
            if (k + 1) % 25 == 0:
                print(f"{k + 1}/{len(todo)} scored ({seconds:.2f}s the last)", flush=True)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho with average ranks for ties (-inf ranks lowest)."""
    ra = rank_average([{"v": v} for v in a], ["v"])
    rb = rank_average([{"v": v} for v in b], ["v"])
    return float(np.corrcoef(ra, rb)[0, 1])


def correlations(table, rows, cache: Path) -> dict:
    done = read_cache(cache)
    have = [i for i in rows if str(table["arch_str"][i]) in done]
    scores = [done[str(table["arch_str"][i])] for i in have]
    acc = np.array([table[TEST_COLUMN][i] for i in have], dtype=np.float64)
    names = PROXIES.names()
    rho = {n: spearman(np.array([s[n] for s in scores], dtype=np.float64), acc) for n in names}
    combos = {c: spearman(rank_average(scores, c.split("+")), acc) for c in COMBOS}
    best = max(
        (
            ("+".join(sub), spearman(rank_average(scores, list(sub)), acc))
            for r in range(2, len(names) + 1)
            for sub in itertools.combinations(names, r)
        ),
        key=lambda kv: kv[1],
    )
    secs = np.array([s["seconds"] for s in scores])
    return {
        "architectures": len(have),
        "accuracy_column": TEST_COLUMN,
        "spearman": rho,
        "combinations": combos,
        "best_subset_in_sample": {"proxies": best[0], "spearman": best[1]},
        "seconds_per_architecture": {"mean": float(secs.mean()), "median": float(np.median(secs))},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default=str(ROOT / "nasbench201" / "nb201_accuracies.npz"))
    p.add_argument("--data", default=str(ROOT / "cifar10_jpeg_subset" / "cifar10_jpeg_subset.npz"))
    p.add_argument("--n", type=int, default=1000, help="architectures in the seeded sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="proxies_nb201.jsonl")
    p.add_argument("--start", type=int, default=0, help="first sample position to score")
    p.add_argument("--stop", type=int, default=None, help="end position (0: score nothing)")
    p.add_argument("--out", default=None, help="write the correlations here (JSON)")
    a = p.parse_args()
    with np.load(a.table, allow_pickle=False) as z:
        table = {k: z[k] for k in ("arch_str", TEST_COLUMN)}
    rows = sample(table, a.n, a.seed)
    part = rows[a.start : a.stop]
    if part:
        x, y = cifar_batch(Path(a.data), a.batch, a.seed)
        score_rows(table, part, x, y, Path(a.cache), a.seed, a.threads)
    result = correlations(table, rows, Path(a.cache))
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
