"""Search diagnostics: is the search learning something, or collapsing?

Per epoch, for the architecture derived at that point: the share of skip connections, pooling and
`none` among its ops (DARTS is known to drift toward parameter-free cells, Zela et al. 2020;
on NAS-Bench-201, DARTS ends at all-skip cells), and the entropy of each edge's op distribution
(normalised to [0, 1]: 1 = still uniform, 0 = one op has all the weight).
"""

from __future__ import annotations

import math

import torch

from ..spaces import SPACES
from .decided import margin_entropy

PARAMETER_FREE = ("skip_connect", "none")
COLLAPSE_SHARE = 0.5  # warn when at least half of a derived cell's ops are parameter-free


def _is_pool(op: str) -> bool:
    return "pool" in op


def op_shares(ops: list[str]) -> dict:
    n = max(1, len(ops))
    skip = sum(op == "skip_connect" for op in ops) / n
    pool = sum(_is_pool(op) for op in ops) / n
    none = sum(op == "none" for op in ops) / n
    return {
        "skip": skip,
        "pool": pool,
        "none": none,
        "parameter_free": skip + pool + none,
    }


def edge_entropy(weights: list[list[float]]) -> list[float]:
    """Normalised entropy of each row of op weights (a softmax)."""
    w = torch.tensor(weights, dtype=torch.float64).clamp_min(1e-12)
    k = w.shape[-1]
    h = -(w * w.log()).sum(-1) / math.log(k) if k > 1 else torch.zeros(w.shape[0])
    return [round(float(v), 6) for v in h]


def diagnostics(record: dict) -> dict:
    """Diagnostics of one epoch from its arch record (`SearchSpace.arch_record`: the derived
    cell and the softmax weights): op shares per cell (the first cell's parameter-free share is
    the one warned about) and edge entropies."""
    space = SPACES.get(record["space"])
    ops = space.cell_ops(record["genotype"])
    keys = {cell: key for cell, key, _ in space.weight_maps()}
    cells = {cell: op_shares(names) for cell, names in ops.items()}
    entropy = {cell: edge_entropy(record[keys[cell]]) for cell in ops}
    flat = [e for v in entropy.values() for e in v]
    margin, _ = margin_entropy([record[keys[cell]] for cell in ops])
    return {
        "cells": cells,
        "parameter_free": next(iter(cells.values()))["parameter_free"],
        "entropy": entropy,
        "mean_entropy": sum(flat) / len(flat),
        # how far the weights are from uniform (`decided`)
        "margin": round(margin, 6),
    }


def warn_collapse(diag: dict, epoch: int, reporter) -> bool:
    """Log a warning when the derived (normal) cell is mostly parameter-free."""
    share = diag["parameter_free"]
    if share < COLLAPSE_SHARE:
        return False
    if epoch == 1:
        # seen on Fashion-MNIST after one 79-step epoch: pooling wins while the convs are untrained
        advice = (
            "In the first epoch this is the convolutions being still untrained: train the weights "
            "first (--set search.warmup_epochs=N) or give the search more steps."
        )
    else:
        advice = (
            "Consider fewer search epochs (the genotype of an earlier epoch is in "
            "arch_weights.jsonl), --strategy gdas, or search.warmup_epochs."
        )
    reporter.log(
        f"warning: epoch {epoch}: {share:.0%} of the derived cell's ops are skip connections, "
        "pooling or none: the search is drifting toward a parameter-free cell (the known DARTS "
        f"collapse). {advice}"
    )
    return True
