"""From a config to a `SearchContext`: the data loaded and checked, its task, the search section
fitted to the input shape by the space, the training batch to the training set's size, and the
device."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace

import torch

from . import allocator, parallel
from .config import Config
from .data import Split, load_dataset
from .errors import UserError
from .fit import subset
from .placement import Placement
from .precision import check_compile, check_precision
from .progress import Reporter
from .run_context import SearchContext
from .spaces import SPACES
from .tasks import make_task


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda was asked for but no CUDA GPU is available; use --device cpu."
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def set_determinism(enabled: bool) -> None:
    """Deterministic kernels on CUDA, so a rerun or a resumed run repeats the bits (on CPU the
    kernels scinas uses already are). cuDNN's autotuner and its non-deterministic convolution
    algorithms are switched off and cuBLAS gets a fixed workspace (the variable must be set before
    its first use in the process). ``warn_only``: adaptive average pooling's CUDA backward has
    no deterministic kernel and would raise; with outputs of 1×1 (global pooling) or 2×2 (the
    auxiliary head) each input cell receives at most two gradient contributions, whose sum does
    not depend on their order, so it is deterministic here and its warning is silenced.
    Off, nothing is touched (an API user's own settings stay)."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    warnings.filterwarnings("ignore", message="adaptive_avg_pool2d_backward_cuda")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def load_data(cfg: Config, *, dataset: str | None = None, data_dir: str | None = None, task=None):
    """The dataset a config names (or ``dataset``/``data_dir`` instead, e.g. to evaluate a
    trained run on other data), split and checked."""
    d = cfg.data
    return load_dataset(
        dataset or d.dataset,
        data_dir=data_dir or d.data_dir,
        task=task or d.task,
        layout=d.layout,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=cfg.seed,
        target_columns=d.target_columns,
        image_size=d.image_size,
        fit=d.fit,
    )


BATCH_FLOOR = 16  # the smallest batch train.min_epoch_steps cuts a preset's batch to


def epoch_batch(t, n: int) -> tuple[int, str | None]:
    """The training batch for ``n`` training samples under the train section ``t``: at most
    ``t.batch_size``, and small enough for ``t.min_epoch_steps`` steps an epoch, but not below
    BATCH_FLOOR; never one that leaves a last batch of one sample (BatchNorm cannot train on
    it). With a note for the log when it differs from ``t.batch_size`` (else None)."""
    if not t.min_epoch_steps or n <= 0:
        return t.batch_size, None
    b = min(t.batch_size, max(BATCH_FLOOR, n // t.min_epoch_steps))
    while b < t.batch_size and n % b == 1:
        b += 1
    if b == t.batch_size:
        return b, None
    return b, (
        f"train.batch_size {t.batch_size} -> {b}: {n} training samples make "
        f"{math.ceil(n / b)} steps an epoch (train.min_epoch_steps={t.min_epoch_steps}; 0 keeps "
        "the batch as given)"
    )


def setup(cfg: Config, reporter: Reporter | None = None) -> SearchContext:
    """Load and check the data, pick the device; raises UserError on any bad input."""
    reporter = reporter or Reporter()
    threads = parallel.fit_threads()  # a bad count is refused before any data is read
    allocator.tune()  # large blocks reused from step to step (a bad SCINAS_MALLOC is refused)
    d = cfg.data
    data = load_data(cfg)
    sc, note = SPACES.get(cfg.search.space).adapt_to_input(cfg.search, data.input_shape)
    if note is not None:
        cfg = cfg.model_copy(update={"search": sc})
        data = replace(data, notes=(*data.notes, note))
    n_train = min(len(data.train), cfg.train.max_samples or len(data.train))
    batch, note = epoch_batch(cfg.train, n_train)
    if note is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": batch})})
        data = replace(data, notes=(*data.notes, note))
    if d.max_val is not None and len(data.val) > d.max_val:
        val = Split(*subset(data.val.x, data.val.y, d.max_val, cfg.seed + 3))
        note = f"data.max_val: scoring {len(val)} of the {len(data.val)} validation samples"
        data = replace(data, val=val, val_whole=data.val, notes=(*data.notes, note))
    reporter.log(data.summary())
    for note in data.notes:
        reporter.log(f"  note: {note}")
    if threads is not None:
        reporter.log(f"note: {threads}")
    device = parallel.init(resolve_device(cfg.device))  # DDP: join the group, own GPU
    check_precision(cfg.precision, device)
    check_compile(cfg.compile, device)
    set_determinism(cfg.deterministic)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cpu"
    task = make_task(
        data.task,
        data.num_outputs,
        data.target_mean,
        data.target_std,
        loss=d.loss,
        output_groups=d.output_groups,
    )
    if cfg.train.label_smoothing and not task.smooths_labels:
        raise UserError(
            f"train.label_smoothing={cfg.train.label_smoothing:g} spreads class targets, but this "
            f"is a {task.name} task; leave it at 0."
        )
    place = Placement(device, channels_last, data.mean, data.std)
    return SearchContext(cfg, data, task, place, reporter)
