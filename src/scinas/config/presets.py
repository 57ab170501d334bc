"""Presets: overrides of the schema's defaults, which are the DARTS paper's settings."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on 2 CPU cores for small inputs (digits 8×8: under 3 minutes end to end).
    "tiny": {
        "data": {"max_val": 500},
        "compare": {"budget": 120, "search_share": 0.65},
        # batch 32: a 3x32x32 supernet step costs ~5 s here (10 s at 64), so compare's 78 s of
        # search still buys enough steps on CIFAR-sized images
        # zero-cost proxies (scinas.proxies): a small pool on small batches
        "search": {
            "epochs": 3,
            "C": 8,
            "layers": 4,
            "batch_size": 32,
            "max_samples": 5000,
            "pool": 10,
            "proxy_batch": 32,
        },
        "train": {
            "epochs": 20,
            "C": 12,
            "layers": 4,
            "batch_size": 128,
            "lr": 0.1,
            "auxiliary": False,
            "drop_path_prob": 0.0,
            "cutout": 0,
            "max_samples": 10000,
        },
    },
    # 40 minutes of compute wherever it runs: 13 for the search, 23 for the retraining, their
    # epochs planned from timed steps (budget.json), plus ~10% for timing, evaluation and the
    # search's overrun. With fixed epochs (an earlier version: 6 search epochs on 3000 images,
    # 2 training epochs) Fashion-MNIST took 55 minutes on 2 cores for 0.888; a fast GPU gets
    # many more epochs from the same budgets (`--set search.time_budget=null` etc. for epochs).
    "small": {
        "data": {"max_val": 2000},
        "search": {
            "time_budget": 780,
            # no weight-only warm-up: the robust default needs none, and it cost the alphas
            # a third of their epochs (CHANGELOG)
            "epochs": 6,
            "C": 8,
            "layers": 4,
            "batch_size": 64,
            "max_samples": 10000,
        },
        "train": {
            "time_budget": 1380,
            "epochs": 2,
            "C": 16,
            "layers": 5,
            "batch_size": 128,
            "lr": 0.1,
            "auxiliary": False,
            "drop_path_prob": 0.0,
            "cutout": 0,
            "crop_padding": 2,
        },
    },
    # The DARTS paper: 50 search epochs at C=16, 8 cells; 600 training epochs at C=36, 20 cells;
    # its DARTS (architecture rate 3e-4, no auxiliary skip, entropy or Beta-Decay term), not the
    # robust default (`scinas.strategies.darts.ROBUST_DEFAULTS`)
    "paper": {
        "search": {
            "arch_lr": 3e-4,
            "aux_skip": 0.0,
            "entropy_weight": 0.0,
            "entropy_schedule": "constant",
            "beta_decay": 0.0,
            "arch_lr_schedule": "constant",
        }
    },
}
