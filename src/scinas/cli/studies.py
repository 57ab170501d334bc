"""The verbs over several runs or a finished one: compare and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..compare import COMPARE_METHODS
from ..compare import DEFAULT_METHODS as DEFAULT_COMPARE
from ..progress import Reporter
from .common import (
    ConfigOpt,
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    LayoutOpt,
    ModelOpt,
    OutOpt,
    OverwriteOpt,
    PresetOpt,
    QuietOpt,
    SetOpt,
    TaskOpt,
    _config,
    _errors_to_exit,
    _out,
    _trusted,
    app,
)


@app.command("compare")
@_errors_to_exit
def compare_cmd(
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    task: TaskOpt = None,
    layout: LayoutOpt = None,
    out: OutOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Seeds per method (0..N-1; default 3).")
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            help="Seconds per method and seed, for everything the method does (sets "
            "compare.budget; the tiny preset's is 120). Searches plan compare.search_share of "
            "it for searching and retrain their network in the time left; the ResNets train "
            "for all of it.",
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated, default "
            + ",".join(DEFAULT_COMPARE)
            + ". "
            + "; ".join(f"{m}: {COMPARE_METHODS.get(m).description}" for m in COMPARE_METHODS)
            + ".",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue the interrupted compare in DIR: its finished runs are kept, an "
            "unfinished one starts again. Its data, config, methods and seeds are reused.",
        ),
    ] = None,
    model: ModelOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
):
    """Was NAS worth it? scinas' recommended search, DARTS and random search against
    hand-designed ResNets on your data, over seeds, at one budget per method.

    Writes DIR/compare.json after every finished run (per method: test metric per seed, mean,
    std, 95% CI, parameters, FLOPs, the seconds each run used, the seeds that failed and why;
    Welch's t-tests of every method against scinas, else darts, else the first search or
    method given) and a run directory per method and seed;
    prints the table. A method that cannot use its budget on a seed is reported as failed there
    and the others go on.
    """
    from ..compare import compare, table

    stored = None
    if resume is not None:
        from ..rundir import check_resume

        stored = check_resume(resume, "compare")
        if seeds is None:
            seeds = stored.get("seeds")
        if methods is None:
            methods = ",".join(stored.get("methods", []))
    if budget is not None:
        set_ = [*(set_ or []), f"compare.budget={budget}"]
    if model is not None:  # the user's network, as the method model
        set_ = [*(set_ or []), f"compare.model={_trusted(model).spec}"]
    default = ",".join([*DEFAULT_COMPARE, *(["model"] if model else [])])
    chosen = [m.strip() for m in (methods or default).split(",") if m.strip()]
    # the settings of the strategies the chosen methods run may be given too
    also = tuple(
        dict.fromkeys(
            s for m in chosen if m in COMPARE_METHODS and (s := COMPARE_METHODS.get(m).strategy)
        )
    )
    # resuming: the compare's own config, with what is given now on top (checked as resumable)
    base = stored["run"] if stored is not None else None
    cfg = _config(
        preset, config, set_, data, data_dir, task, layout, None, device, also=also, base=base
    )
    result = compare(
        cfg,
        _out(out, resume) or Path("runs") / "compare",
        seeds=3 if seeds is None else seeds,
        methods=chosen,
        overwrite=overwrite,
        reporter=Reporter(quiet=quiet),
        resume=resume is not None,
    )
    typer.echo(table(result))


@app.command("report")
@_errors_to_exit
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (finished or not).")],
    output: Annotated[
        Path | None, typer.Option("--output", help="Page to write (default DIR/report.html).")
    ] = None,
):
    """Write a self-contained HTML report of a run (opens from disk, no server needed).

    Cells drawn as graphs, every edge's op weights over the search, training and validation
    curves, search diagnostics, results (test metrics, parameters, FLOPs, the supernet-vs-
    retrained gap) and the config; the figures are also saved as PNG and SVG in DIR/figures.
    """
    from ..report import write_report
    from ..rundir import is_run_dir, read_mapping

    if is_run_dir(run_dir):  # its JSON files hold what scinas wrote (else: one message)
        for name in ("run.json", "config.json", "data.json", "results.json"):
            if (run_dir / name).is_file():
                read_mapping(run_dir / name)
    typer.echo(str(write_report(run_dir, output)))
