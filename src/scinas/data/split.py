"""Seeded hold-out splits: class-stratified for labels, plain random for regression targets."""

from __future__ import annotations

from typing import Any

import numpy as np

from scinas.errors import UserError

__all__ = ["stratified_split", "take_count"]


def take_count(n: int, fraction: float) -> int:
    """Number of samples a ``fraction`` of ``n`` takes, kept in ``[1, n - 1]``.

    Args:
        n: Number of samples to split (at least 2).
        fraction: Share of the samples to take, in (0, 1).

    Returns:
        The rounded count, so that both sides of the split keep at least one sample.
    """
    return int(min(max(round(fraction * n), 1), n - 1))


def _as_numpy(y: Any) -> np.ndarray:
    # Accept torch tensors too (DARTS splits a Split.y), without importing torch here.
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    return np.asarray(y)


def _allocate(counts: np.ndarray, n_take: int) -> np.ndarray:
    """Share ``n_take`` among classes in proportion to ``counts`` (largest-remainder method)."""
    quota = counts * (n_take / counts.sum())
    take = np.minimum(np.floor(quota).astype(np.int64), counts)
    left = n_take - int(take.sum())
    # Hand the leftover samples to the classes that lost the most to rounding; ties go to the
    # larger class, then the lower class id, so the result does not depend on the seed.
    order = np.lexsort((np.arange(len(counts)), -counts, -(quota - take)))
    while left > 0:
        progressed = False
        for c in order:
            if left == 0:
                break
            if take[c] < counts[c]:
                take[c] += 1
                left -= 1
                progressed = True
        if not progressed:  # pragma: no cover - n_take <= counts.sum() makes this unreachable
            break
    return take


def stratified_split(y: Any, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into a kept part and a taken ``fraction``, reproducibly.

    Integer labels of shape (N,) or (N, 1) are split per class, so both parts keep the class
    proportions (up to rounding).  Anything else (float or multi-column regression targets) is
    split by a plain random permutation.  ``numpy.random.default_rng(seed)`` drives the choice, so
    the same inputs and seed always give the same indices.

    Args:
        y: Labels or targets, a numpy array or a torch tensor whose first axis is the sample axis.
        fraction: Share of the samples that goes to ``idx_take``, in (0, 1).  The count is rounded
            and kept in ``[1, N - 1]`` so that neither part is empty.
        seed: Seed for ``numpy.random.default_rng``.

    Returns:
        ``(idx_keep, idx_take)``: disjoint, sorted int64 index arrays that together cover
        ``range(N)``.

    Raises:
        UserError: If there are fewer than 2 samples or ``fraction`` is not in (0, 1).
    """
    y = _as_numpy(y)
    if y.ndim == 0:
        raise UserError("cannot split a scalar: y must have one entry per sample.")
    n = int(y.shape[0])
    if n < 2:
        raise UserError(f"cannot split {n} sample(s): need at least 2 so both parts are non-empty.")
    if not 0.0 < float(fraction) < 1.0:
        raise UserError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}.")
    rng = np.random.default_rng(seed)
    n_take = take_count(n, float(fraction))

    labels = y.reshape(n) if (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)) else None
    if labels is None or labels.dtype.kind not in "biu":
        perm = rng.permutation(n)
        return np.sort(perm[n_take:]).astype(np.int64), np.sort(perm[:n_take]).astype(np.int64)

    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    take_per_class = _allocate(counts, n_take)
    # Group sample indices by class once (stable sort keeps them ascending inside each class).
    by_class = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    taken = []
    for c in range(len(classes)):
        members = by_class[starts[c] : starts[c] + counts[c]]
        taken.append(rng.permutation(members)[: take_per_class[c]])
    idx_take = np.sort(np.concatenate(taken)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[idx_take] = False
    return np.flatnonzero(mask).astype(np.int64), idx_take
