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
MIN_SIDE = 4  # the smallest image side and series length the networks' stems take
MAX_FLOAT = 3.4028234663852886e38  # any float setting: the largest float32 (torch's default)

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
    return f" ({name}: scinas' bound on this setting)" if name else ""


# The numeric settings bounded by `MAX_FLOAT` alone: none sets an amount of work (the steps,
# epochs and candidates are bounded above), so an absurd value costs at most the bounded plan
# (a learning rate of 1e12 diverges; the divergence guard then stops the phase).
SCALES = {
    # learning rates and their floors
    "train.lr": "step size",
    "train.lr_min": "step size",
    "search.lr": "step size",
    "search.lr_min": "step size",
    "search.arch_lr": "step size",
    "search.reinforce_lr": "step size",
    # weights of loss terms and penalties
    "train.weight_decay": "loss weight",
    "train.auxiliary_weight": "loss weight",
    "search.weight_decay": "loss weight",
    "search.arch_weight_decay": "loss weight",
    "search.entropy_weight": "loss weight",
    "search.beta_decay": "loss weight",
    "search.aux_skip": "loss weight",
    "search.kl_weight": "loss weight",
    "search.prior": "Dirichlet concentration",
    # a clip, a finite-difference radius, a temperature
    "train.grad_clip": "gradient clip",
    "search.grad_clip": "gradient clip",
    "search.hvp_r": "finite-difference radius",
    "search.tau_max": "Gumbel temperature",
    # hardware limits: a larger one refuses fewer architectures, it trains none more
    "search.max_params": "hardware limit",
    "search.max_flops": "hardware limit",
    "search.max_latency_ms": "hardware limit",
}
