"""The verbs of one run: run, search, worker, train, evaluate and export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .. import parallel
from ..errors import UserError
from ..progress import Reporter
from ..spaces import named_architectures
from .common import (
    AllowChangesOpt,
    ConfigOpt,
    DataDirOpt,
    DataOpt,
    DeriveOpt,
    DeviceOpt,
    LayoutOpt,
    ModelOpt,
    NprocOpt,
    OutOpt,
    OverwriteOpt,
    PresetOpt,
    QuietOpt,
    ResumeOpt,
    SeedOpt,
    SetOpt,
    StorageOpt,
    StrategyOpt,
    StudyOpt,
    TaskOpt,
    _config,
    _errors_to_exit,
    _genotype,
    _out,
    _print_summary,
    _run_options,
    _searching,
    _shared,
    _spawn,
    _trusted,
    app,
)


@app.command("run")
@_errors_to_exit
def run_cmd(
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    task: TaskOpt = None,
    layout: LayoutOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    strategy: StrategyOpt = None,
    derive: DeriveOpt = None,
    resume: ResumeOpt = None,
    allow_changes: AllowChangesOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    nproc: NprocOpt = 1,
    model: ModelOpt = None,
):
    """Search a cell, derive the genotype, retrain it from scratch and evaluate on the test set.

    With --model FILE.py:FUNCTION: search your own network instead (the lineage grows its
    convolutions' kernels and doubles their channels, function-preserving, and changes its
    training recipe; with
    --strategy receptive, its convolutions' kernel sizes and dilations are searched in one
    training).

    Writes config.json, metrics.jsonl, arch_weights.jsonl, genotype.json, supernet.pt, model.pt,
    predictions_test.npz and results.json into --out.
    """
    from ..pipeline import run

    set_ = _searching(_shared(set_, storage, study), model, strategy)
    cfg = _config(
        preset, config, set_, data, data_dir, task, layout, seed, device, strategy, resume, derive
    )
    if nproc != 1:
        _spawn(cfg, nproc)
    results = run(
        cfg,
        _out(out, resume),
        **_run_options(overwrite, quiet, resume, allow_changes),
    )
    if parallel.leader():
        _print_summary(results)


@app.command("search")
@_errors_to_exit
def search_cmd(
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    task: TaskOpt = None,
    layout: LayoutOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    strategy: StrategyOpt = None,
    derive: DeriveOpt = None,
    resume: ResumeOpt = None,
    allow_changes: AllowChangesOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    nproc: NprocOpt = 1,
    model: ModelOpt = None,
):
    """Search only: run the strategy and write genotype.json into --out (with --model
    FILE.py:FUNCTION: your own network's kernels and recipe, by the lineage, or with
    --strategy receptive its convolutions' kernel sizes and dilations).

    One-shot strategies train a supernet; black-box ones train each candidate briefly and keep
    their optuna study in study.db (rerun with the same --set search.storage=URL to resume or to
    add workers); `scinas strategies` lists both kinds. Use
    `--set search.order=2` for second-order DARTS. Train the result with
    `scinas train --genotype OUT`.
    """
    from ..pipeline import search

    set_ = _searching(_shared(set_, storage, study), model, strategy)
    cfg = _config(
        preset,
        config,
        set_,
        data,
        data_dir,
        task,
        layout,
        seed,
        device,
        strategy,
        resume,
        derive,
        kind="search",
    )
    if nproc != 1:
        _spawn(cfg, nproc)
    genotype = search(
        cfg,
        _out(out, resume),
        **_run_options(overwrite, quiet, resume, allow_changes),
    )
    if parallel.leader():
        typer.echo(json.dumps(genotype.to_dict()))


@app.command("worker")
@_errors_to_exit
def worker_cmd(
    storage: Annotated[
        str,
        typer.Option(
            "--storage",
            help="The shared optuna storage: postgresql://user:password@host:port/db (needs "
            "`pip install 'scinas[distributed]'`), sqlite:///study.db or "
            "journal:///shared/path/study.log.",
        ),
    ],
    study: Annotated[str, typer.Option("--study", help="Name of the study to work on.")],
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    task: TaskOpt = None,
    layout: LayoutOpt = None,
    seed: SeedOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    strategy: StrategyOpt = None,
    quiet: QuietOpt = False,
):
    """One more worker on a shared black-box study: evaluate its trials until the study's
    budget is complete, then print a JSON summary (completed trials, the best one).

    An existing study carries its config (data, strategy, space, budget, settings): a worker
    needs only --storage and --study, and the options given here must agree with the study's
    (only search.budget, search.time_budget, the storage/heartbeat settings, --device and
    --data-dir may differ). A new study needs --strategy (black-box) and its settings. The
    study ends with exactly search.budget completed trials; a trial whose worker died is failed
    after search.grace_period seconds without a heartbeat (database storages) and retried by
    another worker. Workers write no run directory and never retrain: start the search with
    `scinas run --storage URL --study NAME` (its final retrain runs once, on the worker that
    completes the last trial) or train the best architecture with `scinas train`.
    """
    from ..pipeline import worker

    def make_config(base):
        sets = _shared(set_, storage, study)
        return _config(
            preset, config, sets, data, data_dir, task, layout, seed, device, strategy, base=base
        )

    typer.echo(json.dumps(worker(storage, study, make_config, Reporter(quiet=quiet))))


@app.command("train")
@_errors_to_exit
def train_cmd(
    genotype: Annotated[
        str | None,
        typer.Option(
            "--genotype",
            help="A genotype JSON file, a run directory holding genotype.json, a NAS-Bench-201 "
            f"string, or a named architecture ({', '.join(named_architectures())}). Required "
            "unless --resume or --model.",
        ),
    ] = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    task: TaskOpt = None,
    layout: LayoutOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    resume: ResumeOpt = None,
    allow_changes: AllowChangesOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
):
    """Train a network built from a genotype from scratch and evaluate it on the test set."""
    from ..pipeline import train

    cfg = _config(
        preset, config, set_, data, data_dir, task, layout, seed, device, None, resume, kind="train"
    )
    if genotype and model:
        raise UserError("give --genotype or --model, not both.")
    mine = _trusted(model)
    geno = _genotype(genotype) if genotype else None if resume else mine
    results = train(
        cfg,
        geno,
        _out(out, resume),
        **_run_options(overwrite, quiet, resume, allow_changes),
    )
    _print_summary(results)


@app.command("evaluate")
@_errors_to_exit
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (of run or train).")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Evaluate on another dataset of the same image shape (default: the run's own).",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    split: Annotated[str, typer.Option("--split", help="train | val | test")] = "test",
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the metrics to this JSON file.")
    ] = None,
    model: ModelOpt = None,
    quiet: QuietOpt = False,
):
    """Rebuild a trained network from its run directory and report its metrics on a split.

    Inputs are normalised with the run's training statistics; metrics are computed over the
    whole split.
    """
    from ..pipeline import evaluate
    from ..rundir import check_output_file, disk_error, write_json

    _trusted(model)
    if output is not None:
        check_output_file(output)  # before the evaluation, not after it
    metrics = evaluate(
        run_dir, data, data_dir=data_dir, split=split, reporter=Reporter(quiet=quiet)
    )
    if output is not None:
        try:
            write_json(output, metrics)
        except OSError as e:
            raise disk_error(e, f"--output {output}") from None
    typer.echo(json.dumps(metrics))


@app.command("export")
@_errors_to_exit
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (of run or train).")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx | pt2 (a torch.export program): the network with its input normalisation "
            "and output decoding, raw images in, predictions out | safetensors: the weights, "
            "with the run's facts as metadata.",
        ),
    ] = "onnx",
    output: Annotated[
        Path | None,
        typer.Option("--output", help="File to write (default DIR/model.onnx etc.)."),
    ] = None,
    model: ModelOpt = None,
):
    """Export a trained network, then check the written file reproduces its predictions.

    In Python, `scinas.load(DIR)` rebuilds the same predictor without exporting.
    """
    from ..export import export

    _trusted(model)
    path = export(run_dir, format, output)
    typer.echo(json.dumps({"format": format, "path": str(path)}))
