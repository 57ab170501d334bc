"""The upper bounds of every amount of work a setting asks for: a typo (``time_budget=1e12`` for
``1e3``) is refused up front with one message instead of a plan that never ends.

Each bound is far above any run that finishes on today's hardware; a setting the data already
caps (``steps_per_epoch``, ``max_samples``) is bounded too, so every count has a stated limit."""

from __future__ import annotations

MAX_SECONDS = 30 * 24 * 3600  # time budgets: 30 days
MAX_EPOCHS = 10**6  # epochs of any phase, set or planned from a time budget
MAX_STEPS = 10**7  # steps per epoch
MAX_SAMPLES = 10**9  # caps on a split's samples
MAX_CANDIDATES = 10**5  # architectures evaluated, scored, sampled or kept in a population
MAX_REPEATS = 1000  # seeds of a compare or a benchmark, retries of a trial
MAX_CHANNELS = 4096  # channels of a network (C)
MAX_LAYERS = 1000  # cells, layers or nodes of a network
MAX_BATCH = 65536  # samples in a batch
MAX_PIXELS = 4096  # cutout side and crop padding, in pixels

NAMES = {
    MAX_SECONDS: "30 days",
    MAX_EPOCHS: "10^6 epochs",
    MAX_STEPS: "10^7 steps",
    MAX_SAMPLES: "10^9 samples",
    MAX_CANDIDATES: "10^5 architectures",
    MAX_REPEATS: "1000 repeats",
}


def note(bound: float) -> str:
    """What a bound stands for, for the message refusing a value above it."""
    name = NAMES.get(bound)
    return f" ({name}: scinas' bound on this setting)" if name else " (scinas' bound on it)"
