"""The start every verb shares: check the whole input, then create (or reopen, to resume) the run
directory and record the config and the data's facts."""

from __future__ import annotations

from dataclasses import replace

from . import parallel
from .config import Config, check_resumable, check_settings_apply, config_to_dict
from .context import setup
from .preflight import check_search, check_train
from .progress import Reporter
from .run_context import SearchContext
from .rundir import (
    RunDir,
    check_out_dir,
    check_resume,
    default_out,
    require_tensorboard,
)
from .signals import STOP, Interrupted, stop_on_signals
from .strategies import STRATEGIES


def begin(
    cfg: Config,
    out,
    overwrite: bool,
    reporter,
    kind: str,
    *,
    search: bool,
    train: bool,
    arch=None,
    resume: bool = False,
    allow_changes: bool = False,
    plans: dict | None = None,
) -> tuple[SearchContext, RunDir]:
    """Validate everything a verb needs, then create its run directory (never before), or, with
    ``resume``, reopen ``out`` (same kind, compatible config) and lock it.

    Under DDP (`scinas.parallel`) every process checks, a refusal on any stops all, and process 0
    alone creates the run directory (the others get None and print nothing)."""
    leader = parallel.leader()
    if not leader:
        reporter = Reporter(quiet=True)
    with parallel.agreeing():
        if resume and leader:
            old = check_resume(out, kind)
            check_resumable(old, config_to_dict(cfg), allow_changes)
        elif out is not None and leader:
            check_out_dir(out, overwrite=overwrite)
        s = setup(cfg, reporter)
        s.plans.update(plans or {})
        if search:
            parallel.check_strategy(cfg.search.strategy, STRATEGIES)
            check_search(s)
        if train:
            check_train(s, arch)
        check_settings_apply(cfg)
        if cfg.tensorboard:
            require_tensorboard()
    if not leader:
        return replace(s, resume=resume), None
    run = None
    try:
        # a stop waits until the directory is whole and in hand; then it is released
        with STOP.critical():
            if resume:
                run = RunDir.reopen(out)
                if old != config_to_dict(cfg):
                    run.write_json("config.json", config_to_dict(cfg))
                s = replace(s, resume=True)
            else:
                run = RunDir.create(  # the config as the space fitted it to the data
                    out or default_out(kind),
                    kind=kind,
                    config=config_to_dict(s.cfg),
                    overwrite=overwrite,
                )
                run.write_json("data.json", data_facts(s.data))
            if cfg.tensorboard:
                run.enable_tensorboard()
    except BaseException as e:  # the lock is released whatever cut the opening short
        if run is None:
            raise
        run.close()
        if not isinstance(e, Interrupted):
            raise
        raise Interrupted(f"{e}; continue with `scinas {kind} --resume {run.path}`") from None
    s.reporter.log(f"resuming {run.path}" if resume else f"run directory: {run.path}")
    run.report = cfg.report
    return s, run


def working(run: RunDir | None):
    """The run directory's working lock; a DDP process other than process 0 has no directory,
    only the same stop on SIGINT/SIGTERM at the next step."""
    return run.working() if run is not None else stop_on_signals()


def data_facts(data) -> dict:
    """data.json: what a trained network depends on (shapes, task, normalisation)."""
    return {
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
    }
