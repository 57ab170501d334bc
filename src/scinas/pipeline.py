"""The whole flow on one screen: data -> task -> search -> genotype -> final network -> results.

`run` = `search` + `train`; each verb validates all of its input (data, config, genotype, network
sizes) before it creates the run directory, so bad input leaves nothing behind.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .baselines import BaselineArch, build_baseline
from .budget import Plan, budget_plan, describe, eval_seconds, first_batch, plan, time_call
from .checkpoint import (
    LOGS,
    Checkpointer,
    Interrupted,
    stop_on_signals,
)
from .config import HARMLESS_CHANGES, Config, config_diff, config_to_dict
from .data import Split, load_dataset
from .data.augment import make_augment
from .data.split import stratified_split
from .errors import UserError
from .flops import count_flops
from .genotype import DeriveRule, Genotype, load_genotype
from .network import Network, count_parameters, plan_reductions
from .progress import Reporter
from .rundir import (
    RunDir,
    check_out_dir,
    is_run_dir,
    load_state,
    read_json,
    require_tensorboard,
)
from .spaces.nb201 import NB201Arch, NB201Network
from .strategies import STRATEGIES, SearchContext, SearchResult, create_strategy
from .strategies.blackbox import BLACK_BOX, check_storage_url
from .strategies.oneshot import build_supernet, supernet_for
from .tasks import make_task
from .train import Batches, predict, train_network, train_step


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


# The candidate ops on 1×1 inputs: zero, identity, a linear layer (ReLU-linear-BN) and a two-layer
# block (sep_conv_3x3 at 1×1: twice ReLU, per-feature scale, linear, BN).
VECTOR_OPS = ("none", "skip_connect", "conv_1x1", "sep_conv_3x3")


def setup(cfg: Config, reporter: Reporter | None = None) -> SearchContext:
    """Load and check the data, pick the device; raises UserError on any bad input."""
    reporter = reporter or Reporter()
    d = cfg.data
    data = load_dataset(
        d.dataset,
        data_dir=d.data_dir,
        task=d.task,
        layout=d.layout,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=cfg.seed,
        target_columns=d.target_columns,
        image_size=d.image_size,
        fit=d.fit,
    )
    if data.input_shape[1:] == (1, 1) and cfg.search.ops is None and cfg.search.space == "darts":
        # On 1×1 inputs (feature vectors) pooling is the identity and a k×k convolution only
        # its centre tap: the distinct ops are these.
        sc = cfg.search.model_copy(update={"ops": list(VECTOR_OPS)})
        cfg = cfg.model_copy(update={"search": sc})
        data = replace(
            data, notes=(*data.notes, f"1×1 inputs: search.ops defaults to {list(VECTOR_OPS)}")
        )
    if d.max_val is not None and len(data.val) > d.max_val:
        val = Split(*_subset(data.val.x, data.val.y, d.max_val, cfg.seed + 3))
        note = f"data.max_val: scoring {len(val)} of the {len(data.val)} validation samples"
        data = replace(data, val=val, notes=(*data.notes, note))
    reporter.log(data.summary())
    for note in data.notes:
        reporter.log(f"  note: {note}")
    device = resolve_device(cfg.device)
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
    return SearchContext(cfg, data, task, device, channels_last, reporter)


def _check_search(s: SearchContext) -> None:
    sc = s.cfg.search
    STRATEGIES.get(sc.strategy)
    if sc.time_budget is not None and sc.strategy not in BLACK_BOX and "search" not in s.plans:
        # a budget too small to train anything fails here, before anything is written
        s.plans["search"] = create_strategy(sc.strategy).plan_budget(s)
    if sc.space == "darts":
        plan_reductions(sc.layers, s.data.input_shape[1:], sc.reductions)
    if sc.strategy in BLACK_BOX:
        if sc.storage:
            check_storage_url(sc.storage)
        n_eval = len(s.data.train) * sc.eval_fraction
        if sc.max_samples is not None:
            n_eval = min(n_eval, sc.max_samples)
        if n_eval < 2 * s.data.num_outputs and s.task.name == "classification":
            raise UserError(
                f"search.eval_fraction={sc.eval_fraction} leaves {int(n_eval)} training images "
                f"per candidate for {s.data.num_outputs} classes: too few to train anything. "
                "Raise search.eval_fraction (or search.max_samples)."
            )


def _check_train(s: SearchContext, arch=None) -> None:
    t = s.cfg.train
    nb201 = arch is None and s.cfg.search.space == "nb201"
    if not (isinstance(arch, NB201Arch | BaselineArch) or nb201):
        # (the other networks place their reductions by the input size themselves)
        plan_reductions(t.layers, s.data.input_shape[1:], t.reductions)
    if t.time_budget is not None:
        # A budget too small to train anything fails here, before anything is written. Before a
        # search the cell is unknown: DARTS_V2's stands in for it (the real plan follows the
        # search).
        n = len(_subset(s.data.train.x, s.data.train.y, t.max_samples, s.cfg.seed)[0])
        if arch is not None:
            if "train" not in s.plans:
                s.plans["train"] = plan_training(s, arch, t, n)
        elif s.cfg.search.space == "darts":
            plan_training(s, load_genotype("DARTS_V2"), t, n)


def default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def _begin(
    cfg,
    out,
    overwrite,
    reporter,
    kind: str,
    *,
    search: bool,
    train: bool,
    arch=None,
    resume: bool = False,
    allow_changes: bool = False,
    plans: dict | None = None,
):
    """Validate everything a verb needs, then create its run directory (never before), or, with
    ``resume``, reopen ``out`` (same kind, compatible config) and lock it."""
    if resume:
        old = _check_resume(out, kind, cfg, allow_changes)
    elif out is not None:
        check_out_dir(out, overwrite=overwrite)
    s = setup(cfg, reporter)
    s.plans.update(plans or {})
    if search:
        _check_search(s)
    if train:
        _check_train(s, arch)
    if cfg.tensorboard:
        require_tensorboard()
    if resume:
        run = RunDir.reopen(out)
        if old != config_to_dict(cfg):
            run.write_json("config.json", config_to_dict(cfg))
        s = replace(s, resume=True)
        s.reporter.log(f"resuming {run.path}")
    else:
        run = _open_run(s, out, kind, overwrite)
    if cfg.tensorboard:
        run.enable_tensorboard()
    return s, run


def _check_resume(out, kind: str, cfg: Config, allow_changes: bool) -> dict:
    """The run to resume exists, is of this kind, and its config matches ``cfg``."""
    if out is None:
        raise UserError("--resume needs the run directory to continue.")
    path = Path(out)
    if not is_run_dir(path):
        raise UserError(
            f"{path} is not a scinas run directory (no run.json): nothing to resume. Start a new "
            "run with --out instead."
        )
    info = read_json(path / "run.json")
    if info.get("kind") != kind:
        raise UserError(
            f"{path} holds a scinas {info.get('kind')} run; resume it with "
            f"`scinas {info.get('kind')} --resume {path}`."
        )
    if (path / "results.json").is_file():
        raise UserError(f"{path} already finished (results.json exists): nothing to resume.")
    old = read_json(path / "config.json")
    diff = config_diff(old, config_to_dict(cfg))
    harmful = [d for d in diff if d[0] not in HARMLESS_CHANGES]
    if harmful or (diff and not allow_changes):
        listing = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff)
        hint = (
            "Resume without changing them, or start a new run."
            if harmful
            else "Pass --allow-changes to resume with them (they are harmless: "
            + ", ".join(HARMLESS_CHANGES)
            + ")."
        )
        raise UserError(
            f"the config differs from the run being resumed ({listing}). "
            + ("Those changes would make the finished part meaningless. " if harmful else "")
            + hint
        )
    return old


def _open_run(s: SearchContext, out, kind: str, overwrite: bool) -> RunDir:
    run = RunDir.create(
        out or default_out(kind), kind=kind, config=config_to_dict(s.cfg), overwrite=overwrite
    )
    data = s.data
    run.write_json(
        "data.json",
        {
            "name": data.name,
            "task": data.task,
            "input_shape": list(data.input_shape),
            "num_outputs": data.num_outputs,
            "mean": list(data.mean),
            "std": list(data.std),
            "target_mean": list(data.target_mean) if data.target_mean else None,
            "target_std": list(data.target_std) if data.target_std else None,
            "class_names": list(data.class_names) if data.class_names else None,
            "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "notes": list(data.notes),
        },
    )
    s.reporter.log(f"run directory: {run.path}")
    return run


SEARCH_DONE = "search_result.json"


def _search(s: SearchContext, run: RunDir | None) -> SearchResult:
    """Run the strategy (or, resuming after it finished, read what it found)."""
    if s.resume and run is not None and run.file(SEARCH_DONE).is_file():
        done = read_json(run.file(SEARCH_DONE))
        s.reporter.log("search already finished: using its genotype")
        return SearchResult(
            genotype=load_genotype(run.path),
            val_metrics=done["val"],
            seconds=done["seconds"],
        )
    result = create_strategy(s.cfg.search.strategy).search(replace(s, run=run))
    if run is not None:
        result.genotype.to_json(run.file("genotype.json"))
        if result.model is not None:
            run.save_state("supernet.pt", result.model)
        run.write_json(
            SEARCH_DONE,
            {
                "genotype": result.genotype.to_dict(),
                "val": result.val_metrics,
                "seconds": result.seconds,
                "logs": {name: _size(run.file(name)) for name in LOGS},
            },
        )
        Checkpointer(run, "search").clear()
    s.reporter.log(f"searched genotype: {result.genotype.to_dict()}")
    return result


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _batches(s: SearchContext, x, y, batch_size, shuffle=False, seed=0) -> Batches:
    return Batches(
        x,
        y,
        torch.tensor(s.data.mean),
        torch.tensor(s.data.std),
        batch_size,
        s.device,
        s.channels_last,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )


def build_network(genotype, t, input_shape, num_outputs) -> torch.nn.Module:
    """The discrete network of an architecture: DARTS `Network` for a `Genotype`, the
    NAS-Bench-201 macro skeleton for an `NB201Arch` (``t.layers`` cells in 3 stages)."""
    C_in, H, W = input_shape
    if isinstance(genotype, BaselineArch):
        return build_baseline(genotype.name, C_in, num_outputs, (H, W))
    if isinstance(genotype, NB201Arch):
        return NB201Network(
            genotype,
            C_in,
            num_outputs,
            (H, W),
            C=t.C,
            cells_per_stage=max(1, t.layers // 3),
        )
    return Network(
        genotype,
        C_in,
        num_outputs,
        (H, W),
        C=t.C,
        layers=t.layers,
        auxiliary=t.auxiliary,
        reductions=t.reductions,
    )


def _subset(x, y, n: int | None, seed: int):
    if n is not None and n < len(x):
        _, keep = stratified_split(y.numpy(), n / len(x), seed)
        keep = torch.as_tensor(keep)
        return x[keep], y[keep]
    return x, y


def _network_and_augment(s: SearchContext, genotype, t, aug_seed: int):
    """The freshly initialised network of ``genotype`` (seeded) and its training augmentation."""
    data = s.data
    torch.manual_seed(s.cfg.seed)
    net = build_network(genotype, t, data.input_shape, data.num_outputs).to(s.device)
    if s.channels_last:
        net = net.to(memory_format=torch.channels_last)
    H, W = data.input_shape[1:]
    aug_generator = torch.Generator().manual_seed(aug_seed)
    augment = make_augment(
        t.augment,
        H,
        W,
        aug_generator,
        cutout_length=min(t.cutout, min(H, W) // 2),
        crop_padding=t.crop_padding,
        hflip=t.hflip,
    )
    return net, augment, aug_generator


def fit(s: SearchContext, genotype, t, x, y, *, on_epoch=None, track=None, checkpointer=None):
    """Build the network of ``genotype`` at the sizes of ``t`` (a TrainConfig) and train it from
    scratch on (x, y), validating on the val split each epoch. Returns (net, history). With a
    checkpointer, each epoch is checkpointed and ``s.resume`` continues from the newest one."""
    cfg, data, task = s.cfg, s.data, s.task
    net, augment, aug_generator = _network_and_augment(s, genotype, t, cfg.seed + 21)
    train_batches = _batches(s, x, y, t.batch_size, shuffle=True, seed=cfg.seed + 31)
    history = train_network(
        net,
        task,
        train_batches,
        _batches(s, data.val.x, data.val.y, 256),
        epochs=t.epochs,
        lr=t.lr,
        lr_min=t.lr_min,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        grad_clip=t.grad_clip,
        auxiliary_weight=t.auxiliary_weight if t.auxiliary else 0.0,
        drop_path_prob=t.drop_path_prob,
        augment=augment,
        on_epoch=on_epoch,
        track=track,
        checkpointer=checkpointer,
        resume=s.resume,
        generators={"batches": train_batches.generator, "augment": aug_generator},
        steps_per_epoch=t.steps_per_epoch,
    )
    return net, history


def plan_training(s: SearchContext, genotype, t, n_train: int) -> Plan:
    """Epochs and steps per epoch that fill ``t.time_budget``, from steps of ``genotype``'s
    network timed on a throwaway copy (the global RNG is left as it was)."""
    train = s.data.train
    with torch.random.fork_rng(devices=[]):
        net, augment, _ = _network_and_augment(s, genotype, t, 0)
        optimizer = torch.optim.SGD(
            net.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
        xb, yb = first_batch(s, train.x, train.y, t.batch_size)
        net.train()
        step_seconds = time_call(
            lambda: float(
                train_step(
                    net,
                    s.task,
                    xb,
                    yb,
                    optimizer,
                    augment=augment,
                    auxiliary_weight=t.auxiliary_weight if t.auxiliary else 0.0,
                    grad_clip=t.grad_clip,
                    where="timing a training step",
                    lr=t.lr,
                ).sum()
            )
        )
        val_seconds = eval_seconds(s, net)
    full = math.ceil(n_train / min(t.batch_size, n_train))
    return plan(t.time_budget, step_seconds, val_seconds, full, "train.time_budget")


def low_fidelity_objective(s: SearchContext):
    """The score of a black-box candidate: its network (at the supernet's sizes, search.C and
    search.layers) trained ``search.eval_epochs`` epochs on ``search.eval_fraction`` of the
    training split (stratified, the same images for every candidate), scored by the task's
    primary metric on the validation split."""
    sc, t = s.cfg.search, s.cfg.train
    proxy = t.model_copy(
        update={
            "C": sc.C,
            "layers": sc.layers,
            "reductions": sc.reductions,
            "epochs": sc.eval_epochs,
            "batch_size": sc.batch_size,
            "auxiliary": False,
            "drop_path_prob": 0.0,
        }
    )
    train = s.data.train
    n = int(round(len(train) * sc.eval_fraction))
    if sc.max_samples is not None:
        n = min(n, sc.max_samples)
    x, y = _subset(train.x, train.y, n, s.cfg.seed)
    pm = s.task.primary_metric

    def objective(arch):
        net, history = fit(s, arch, proxy, x, y)
        val = history[-1].val
        return val[pm], {"val": val, "params": count_parameters(net)}

    return objective


def _train(s: SearchContext, genotype, run: RunDir | None) -> tuple[torch.nn.Module, dict]:
    """Train the discrete network from scratch, then evaluate it once on the test split."""
    cfg, t, data, task = s.cfg, s.cfg.train, s.data, s.task
    t_start = time.perf_counter()
    x, y = _subset(data.train.x, data.train.y, t.max_samples, cfg.seed)
    if t.time_budget is not None:
        p = budget_plan(s, run, "train", lambda: plan_training(s, genotype, t, len(x)))
        s.reporter.log(describe(p, "train"))
        t = t.model_copy(update={"epochs": p.epochs, "steps_per_epoch": p.steps_per_epoch})
    H, W = data.input_shape[1:]
    if min(t.cutout, min(H, W) // 2) < t.cutout:
        s.reporter.log(
            f"cutout {t.cutout} is more than half the image side: using {min(H, W) // 2}"
        )
    pm = task.primary_metric

    def on_epoch(e):
        if run is not None:
            run.log_event(
                {
                    "event": "train_epoch",
                    "epoch": e.epoch,
                    "lr": e.lr,
                    "train": e.train,
                    "val": e.val,
                    "seconds": e.seconds,
                }
            )
        s.reporter.log(
            f"train epoch {e.epoch}/{t.epochs}: train loss {e.train['loss']:.4f} {pm} "
            f"{e.train[pm]:.4f} | val loss {e.val['loss']:.4f} {pm} {e.val[pm]:.4f} | "
            f"{e.seconds:.1f}s"
        )

    what = (
        genotype.name
        if isinstance(genotype, BaselineArch)
        else f"C={t.C} layers={t.layers} auxiliary={t.auxiliary}"
    )
    s.reporter.log(f"train: {what}, {t.epochs} epochs on {len(x)} images")
    ckpt = Checkpointer(run, "train", s.reporter)
    if s.resume and run is not None and not ckpt.exists():
        # killed before the first training checkpoint: cut the logs back to the phase start
        done = run.file(SEARCH_DONE)
        ckpt.truncate_logs(
            read_json(done)["logs"] if done.is_file() else {name: 0 for name in LOGS}
        )
    net, history = fit(
        s, genotype, t, x, y, on_epoch=on_epoch, track=s.reporter.track, checkpointer=ckpt
    )
    train_seconds = time.perf_counter() - t_start
    results = _test_results(s, net, genotype, run, history[-1].val)
    results["train_seconds"] = train_seconds
    return net, results


def _test_results(s: SearchContext, net, genotype, run: RunDir | None, val: dict) -> dict:
    """Evaluate the final network once on the test split; save it and its predictions."""
    data, task = s.data, s.task
    outputs, targets = predict(net, _batches(s, data.test.x, data.test.y, 256))
    test = task.metrics(outputs, targets)
    params = count_parameters(net)
    results = {
        "task": task.name,
        "dataset": data.name,
        "metric": task.primary_metric,
        "test": test,
        "val": val,
        "params": params,
        "flops": count_flops(net, data.input_shape),
        "genotype": genotype.to_dict(),
    }
    if run is not None:
        run.save_state("model.pt", net)
        run.log_event({"event": "test", **test})
        np.savez(
            run.file("predictions_test.npz"),
            y_true=targets.numpy(),
            y_pred=task.decode_outputs(outputs.double()).numpy(),
            outputs=outputs.numpy(),
        )
    s.reporter.log(f"test: {_fmt(test)} | {params:,} params, {results['flops'] / 1e6:.1f} MFLOPs")
    return results


def _keep_supernet(s: SearchContext, searched: SearchResult, run: RunDir | None) -> dict:
    """search.derive=supernet: the trained supernet itself is the final model (no retraining);
    genotype.json keeps its top-2 cell for display."""
    model = searched.model
    if model is None:  # resumed after the search finished
        model = build_supernet(s).to(s.device)
        model.load_state_dict(load_state(run.file("supernet.pt")))
        if s.channels_last:
            model = model.to(memory_format=torch.channels_last)
    s.reporter.log("search.derive=supernet: the trained supernet is the final model")
    results = _test_results(s, model, searched.genotype, run, searched.val_metrics)
    results.update(final_model="supernet", train_seconds=0.0)
    return results


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def _write_report(run: RunDir) -> None:
    """The run's report.html; a failure here never fails the run (it can be redone)."""
    from .report import write_report

    try:
        write_report(run.path)
    except Exception as e:
        print(
            f"warning: the report could not be written ({e}); run `scinas report "
            f"{run.path}` to retry",
            file=sys.stderr,
            flush=True,
        )


def _finish(run: RunDir | None, results: dict, t0: float) -> dict:
    results["wall_seconds"] = time.perf_counter() - t0
    if run is not None:
        results["checkpoint_seconds"] = run.checkpoint_seconds
        run.write_json("results.json", results)
        Checkpointer(run, "train").clear()
        _write_report(run)
    return results


def run(
    cfg: Config,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resume: bool = False,
    allow_changes: bool = False,
    plans: dict | None = None,
) -> dict:
    """Search a cell, derive its genotype, train it from scratch and evaluate it on the test set.

    ``resume=True`` continues the run in ``out`` from its checkpoints (same config; with
    ``allow_changes`` the harmless fields in `config.HARMLESS_CHANGES` may differ). ``plans``
    hands in time-budget plans already measured (`scinas.budget`, as `scinas compare` does)."""
    t0 = time.perf_counter()
    s, run_dir = _begin(
        cfg,
        out,
        overwrite,
        reporter,
        "run",
        search=True,
        train=DeriveRule.parse(cfg.search.derive).kind != "supernet",
        resume=resume,
        allow_changes=allow_changes,
        plans=plans,
    )
    with _working(run_dir):
        searched = _search(s, run_dir)
        if DeriveRule.parse(cfg.search.derive).kind == "supernet":
            results = _keep_supernet(s, searched, run_dir)
        else:
            _, results = _train(s, searched.genotype, run_dir)
        results.update(
            search_seconds=searched.seconds,
            supernet={"val": searched.val_metrics},
            device=str(s.device),
        )
        return _finish(run_dir, results, t0)


def search(
    cfg: Config,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resume: bool = False,
    allow_changes: bool = False,
) -> Genotype | NB201Arch:
    """Search only: writes the genotype (and the supernet) to the run directory."""
    t0 = time.perf_counter()
    s, run_dir = _begin(
        cfg,
        out,
        overwrite,
        reporter,
        "search",
        search=True,
        train=False,
        resume=resume,
        allow_changes=allow_changes,
    )
    with _working(run_dir):
        searched = _search(s, run_dir)
        run_dir.write_json(
            "results.json",
            {
                "task": s.task.name,
                "dataset": s.data.name,
                "genotype": searched.genotype.to_dict(),
                "supernet": {"val": searched.val_metrics},
                "search_seconds": searched.seconds,
                "wall_seconds": time.perf_counter() - t0,
                "device": str(s.device),
            },
        )
        _write_report(run_dir)
        return searched.genotype


def train(
    cfg: Config,
    genotype: Genotype | NB201Arch | str | os.PathLike | None,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resume: bool = False,
    allow_changes: bool = False,
    plans: dict | None = None,
) -> dict:
    """Train a given architecture (published name, JSON file, run directory, NAS-Bench-201
    string, `Genotype` or `NB201Arch`) and evaluate it. Resuming, ``genotype`` may be None (the
    run's own genotype.json)."""
    t0 = time.perf_counter()
    if genotype is None:
        if not resume:
            raise UserError("train needs --genotype (a file, run directory or published name).")
        genotype = out
    if not isinstance(genotype, Genotype | NB201Arch | BaselineArch):
        genotype = load_genotype(genotype)
    s, run_dir = _begin(
        cfg,
        out,
        overwrite,
        reporter,
        "train",
        search=False,
        train=True,
        arch=genotype,
        resume=resume,
        allow_changes=allow_changes,
        plans=plans,
    )
    with _working(run_dir):
        if resume and load_genotype(run_dir.path).to_dict() != genotype.to_dict():
            raise UserError(
                f"{run_dir.path} trains another genotype; resume it without --genotype."
            )
        genotype.to_json(run_dir.file("genotype.json"))
        _, results = _train(s, genotype, run_dir)
        results["device"] = str(s.device)
        return _finish(run_dir, results, t0)


@contextmanager
def _working(run_dir: RunDir):
    """While a verb writes into its run directory: stop signals become checkpoints, and the
    lock is released at the end (a crash releases it too: it is an flock)."""
    try:
        with stop_on_signals():
            yield
    except Interrupted as e:
        raise Interrupted(f"{e}; checkpoint saved. Continue with --resume {run_dir.path}") from None
    finally:
        run_dir.close()


def load_trained(run_dir: str | os.PathLike) -> tuple[torch.nn.Module, dict, Config]:
    """Rebuild the trained network of a run directory (weights loaded, eval mode)."""
    path = Path(run_dir)
    if not is_run_dir(path):
        raise UserError(
            f"{path} is not a scinas run directory (no run.json). Give the --out of a "
            "finished `scinas run` or `scinas train`."
        )
    if not (path / "model.pt").is_file():
        raise UserError(
            f"{path} has no trained model (model.pt): it is a search-only run or did "
            "not finish. Train it with `scinas train --genotype DIR`."
        )
    cfg = Config.model_validate(read_json(path / "config.json"))
    info = read_json(path / "data.json")
    shape = tuple(info["input_shape"])
    kept = read_json(path / "run.json").get("kind") == "run" and (
        DeriveRule.parse(cfg.search.derive).kind == "supernet"
    )
    if kept:  # search.derive=supernet: the final model is the supernet
        net = supernet_for(cfg.search, shape, info["num_outputs"])
    else:
        net = build_network(load_genotype(path), cfg.train, shape, info["num_outputs"])
    net.load_state_dict(load_state(path / "model.pt"))
    return net.eval(), info, cfg


def evaluate(
    run_dir: str | os.PathLike,
    data: str | None = None,
    *,
    data_dir: str | None = None,
    split: str = "test",
    reporter: Reporter | None = None,
) -> dict:
    """Evaluate a trained run on a split of its own dataset, or of another dataset of the same
    shape (normalised with the training statistics of the run)."""
    reporter = reporter or Reporter()
    net, info, cfg = load_trained(run_dir)
    d = cfg.data
    dataset = load_dataset(
        data or d.dataset,
        data_dir=data_dir or d.data_dir,
        task=info["task"],
        layout=d.layout,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=cfg.seed,
        target_columns=d.target_columns,
        image_size=d.image_size,
        fit=d.fit,
    )
    if tuple(dataset.input_shape) != tuple(info["input_shape"]):
        raise UserError(
            f"the data's images are {tuple(dataset.input_shape)} but the network was "
            f"trained on {tuple(info['input_shape'])}."
        )
    if split not in ("train", "val", "test"):
        raise UserError(f"unknown split '{split}': use train, val or test.")
    task = make_task(
        info["task"],
        info["num_outputs"],
        info["target_mean"],
        info["target_std"],
        loss=cfg.data.loss,
        output_groups=cfg.data.output_groups,
    )
    part = getattr(dataset, split)
    batches = Batches(
        part.x,
        part.y,
        torch.tensor(info["mean"]),
        torch.tensor(info["std"]),
        256,
        torch.device("cpu"),
    )
    outputs, targets = predict(net, batches)
    metrics = task.metrics(outputs, targets)
    reporter.log(f"{split} ({len(part)} samples of {dataset.name}): {_fmt(metrics)}")
    return {"split": split, "dataset": dataset.name, "n": len(part), **metrics}
