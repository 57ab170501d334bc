"""The `scinas` command line: thin wrappers over the Python API in `scinas.pipeline`."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import parallel, signals
from .compare import COMPARE_METHODS
from .compare import DEFAULT_METHODS as DEFAULT_COMPARE
from .config import PRESETS, build_config
from .errors import TrainingDiverged, UserError
from .progress import Reporter
from .spaces import SPACES, named_architectures
from .strategies import STRATEGIES

app = typer.Typer(
    name="scinas",
    help=(
        "Neural architecture search on your own image-like data.\n\n"
        "`scinas run` searches a DARTS cell on your data, retrains the derived network from "
        "scratch and reports test metrics; with no arguments it runs on the bundled 8×8 digits "
        "(offline, a few minutes on a laptop CPU)."
    ),
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Options shared by the verbs (Annotated aliases keep each verb's signature readable).
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Named dataset (digits, mnist, fashion-mnist, cifar10), a .npz file with "
        "x_train/y_train [x_val/y_val, x_test/y_test], or a directory of MNIST-style idx files. "
        "Default: digits (bundled).",
    ),
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        help="Where named datasets are read from / downloaded to "
        "(default $SCINAS_DATA_DIR or ~/.cache/scinas/data).",
    ),
]
TaskOpt = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="classification | regression (default: from the targets: integer labels "
        "mean classification, float targets regression).",
    ),
]
LayoutOpt = Annotated[
    str | None,
    typer.Option(
        "--layout", help="nhwc | nchw: force the image layout of 4-D arrays (default: detected)."
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", help="Run directory to create (default runs/<verb>-<time>). Must be new or empty."
    ),
]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Random seed (data splits, init, batches). Default 0.")
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help=f"Sizes, epochs and batch sizes: {', '.join(PRESETS)} (paper = the DARTS "
        "paper's settings). Default tiny.",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override any config field, e.g. --set search.epochs=20 --set train.C=24 "
        "--set 'search.ops=[none,sep_conv_3x3,max_pool_2x2]'. Repeatable. "
        "--set precision=bf16|fp16 trains under autocast (fp16: CUDA only, refused on CPU); "
        "--set compile=true uses torch.compile and is refused where it cannot work (no C++ "
        "compiler / Triton), never silently eager.",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML, TOML or JSON config file (same keys as --set)."),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="auto | cpu | cuda (default auto: a CUDA GPU when present)."),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing scinas run in --out.")
]
StrategyOpt = Annotated[
    str | None,
    typer.Option(
        "--strategy",
        help="Search strategy: "
        + "; ".join(
            f"{kind}: " + ", ".join(n for n in STRATEGIES if STRATEGIES.get(n).kind == kind)
            for kind in ("one-shot", "black-box")
        )
        + " (default darts). `scinas strategies` lists each one's own settings (--set "
        "search.KEY=VALUE). Choose the space with --set search.space="
        + "|".join(SPACES.names())
        + " (`scinas spaces`).",
    ),
]
DeriveOpt = Annotated[
    str | None,
    typer.Option(
        "--derive",
        help="How the discrete cell is read off the alphas (darts, gdas): top2 (default, "
        "DARTS), topK (K inputs per node), ranksA-B (the inputs ranked A..B, e.g. ranks2-3), "
        "threshold:X (every op weighing at least X; darts), supernet (keep the trained "
        "supernet as the final model, no retraining; darts). Add +none to let 'none' compete "
        "(e.g. top2+none).",
    ),
]
ResumeOpt = Annotated[
    Path | None,
    typer.Option(
        "--resume",
        help="Continue the run in this directory from its last checkpoint (written every epoch "
        "and on Ctrl-C/SIGTERM). Its saved config is used; options given here must not change "
        "it (see --allow-changes).",
    ),
]
AllowChangesOpt = Annotated[
    bool,
    typer.Option(
        "--allow-changes",
        help="With --resume: accept changes to harmless fields (search.epochs, train.epochs, "
        "device, deterministic, search.storage, compare.budget, compare.search_share).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")]
NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        help="Data-parallel one-shot search (darts, gdas, rsws; `run` trains the final network "
        "data-parallel too) on N processes of this machine, as `torchrun --nproc_per_node N -m "
        "scinas ...` does: each takes its share of every global batch (search.batch_size), "
        "gradients and BatchNorm statistics are summed over all (gloo on CPU, NCCL on GPUs, "
        "one GPU each); process 0 writes the run directory. At most one per CPU core (CUDA: "
        "per GPU). Default 1.",
    ),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Black-box strategies: the optuna storage several workers share (sets "
        "search.storage): postgresql://user:password@host:port/db (needs `pip install "
        "'scinas[distributed]'`; `bash scripts/postgres.sh` starts a local server), "
        "sqlite:///study.db, or journal:///shared/path/study.log (a file, no server).",
    ),
]
StudyOpt = Annotated[
    str | None,
    typer.Option(
        "--study",
        help="Name of the study in --storage (sets search.study; default "
        "scinas-STRATEGY-SPACE-seedSEED). Workers given the same storage and study share it.",
    ),
]


def _shared(set_: list[str] | None, storage: str | None, study: str | None) -> list[str]:
    """--storage and --study as the settings they stand for."""
    out = list(set_ or [])
    if storage is not None:
        out.append(f"search.storage={storage}")
    if study is not None:
        out.append(f"search.study={study}")
    return out


def _errors_to_exit(fn):
    """One clear line and exit code 2 for user errors; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with signals.handling():  # SIGTERM stops any part of a command with a message
                return fn(*args, **kwargs)
        except UserError as e:
            if parallel.leader():  # DDP: once, from process 0
                typer.echo(f"scinas: error: {e}", err=True)
            raise typer.Exit(2) from None
        except TrainingDiverged as e:
            typer.echo(f"scinas: training diverged: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            said = str(e) + _resume_hint(fn.__name__.removesuffix("_cmd"), kwargs, str(e))
            typer.echo(f"scinas: interrupted{': ' + said if said else ''}", err=True)
            raise typer.Exit(signals.INTERRUPT_EXIT) from None

    return wrapper


def _resume_hint(verb: str, kwargs: dict, said: str) -> str:
    """How to continue a run a stop signal left unfinished, when the message does not say it
    (stopped before the run's own code could: while resuming, or just after creating it)."""
    from .rundir import is_run_dir

    path = kwargs.get("resume") or kwargs.get("out")
    if "--resume" in said or path is None or not is_run_dir(path):
        return ""
    path = Path(path)
    if (path / "results.json").is_file():
        return ""
    done = path / "compare.json"
    if done.is_file() and json.loads(done.read_text() or "{}").get("complete"):
        return ""
    return f"; continue with `scinas {verb} --resume {path}`"


def _spawn(cfg, nproc: int) -> None:
    """--nproc N > 1: check it, then run this very command in N processes (`scinas.parallel.
    launch`) and exit with process 0's code. Nothing is written before the processes run."""
    from . import parallel
    from .context import resolve_device

    if parallel.requested() > 1:
        raise UserError("--nproc inside torchrun: give one or the other.")
    parallel.check_nproc(nproc, resolve_device(cfg.device))
    parallel.check_strategy(cfg.search.strategy, STRATEGIES, nproc)
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    raise typer.Exit(parallel.launch(nproc, args))


def _config(
    preset,
    config,
    set_,
    data,
    data_dir,
    task,
    layout,
    seed,
    device,
    strategy=None,
    resume=None,
    derive=None,
    also=(),
    kind: str = "run",
    base: dict | None = None,  # a stored config to build on (a shared study's)
):
    if resume is not None:
        from .rundir import check_resume

        # first, before any other input is read: the run exists, was made by this verb (or the
        # message names the one that made it), is unfinished, and its config.json is readable
        base = check_resume(resume, kind)
    return build_config(
        base=base,
        also_strategies=also,
        search__strategy=strategy,
        search__derive=derive,
        preset=preset,
        file=config,
        overrides=set_ or [],
        data__dataset=data,
        data__data_dir=data_dir,
        data__task=task,
        data__layout=layout,
        seed=seed,
        device=device,
    )


def _out(out: Path | None, resume: Path | None) -> Path | None:
    if resume is not None and out is not None and Path(out).resolve() != Path(resume).resolve():
        raise UserError("give either --out (a new run) or --resume DIR (continue one), not both.")
    return resume if resume is not None else out


def _run_options(overwrite: bool, quiet: bool, resume: Path | None, allow_changes: bool) -> dict:
    """The keyword arguments run, search and train share."""
    return {
        "overwrite": overwrite,
        "reporter": Reporter(quiet=quiet),
        "resume": resume is not None,
        "allow_changes": allow_changes,
    }


def _print_summary(results: dict) -> None:
    test = results.get("test", {})
    shown = {k: round(v, 4) for k, v in test.items() if isinstance(v, float)}
    summary = {
        "task": results.get("task"),
        "test": shown,
        "params": results.get("params"),
        "flops": results.get("flops"),
        "wall_seconds": round(results["wall_seconds"], 1),
    }
    typer.echo(json.dumps(summary))


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
):
    """Search a cell, derive the genotype, retrain it from scratch and evaluate on the test set.

    Writes config.json, metrics.jsonl, arch_weights.jsonl, genotype.json, supernet.pt, model.pt,
    predictions_test.npz and results.json into --out.
    """
    from .pipeline import run

    set_ = _shared(set_, storage, study)
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
):
    """Search only: run the strategy and write genotype.json into --out.

    One-shot strategies (darts, gdas, rsws) train a supernet; black-box ones (random,
    evolution, tpe, reinforce) train each candidate briefly and keep their optuna study in
    study.db (rerun with the same --set search.storage=URL to resume or to add workers). Use
    `--set search.order=2` for second-order DARTS. Train the result with
    `scinas train --genotype OUT`.
    """
    from .pipeline import search

    set_ = _shared(set_, storage, study)
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
    from .pipeline import worker

    def make_config(base):
        sets = _shared(set_, storage, study)
        return _config(
            preset, config, sets, data, data_dir, task, layout, seed, device, strategy, base=base
        )

    typer.echo(json.dumps(worker(storage, study, make_config, Reporter(quiet=quiet))))


def _genotype(text: str):
    """--genotype: a file, a run directory holding genotype.json, or a short form."""
    from .spaces import load_genotype

    path = Path(text)
    if path.is_dir() and not (path / "genotype.json").is_file():
        from .rundir import is_run_dir

        why = (
            " (the run has not finished its search)"
            if is_run_dir(path)
            else " (give a genotype JSON file, a finished run directory, or a named genotype)"
        )
        raise UserError(f"no genotype.json in {path}{why}.")
    return load_genotype(text)


@app.command("train")
@_errors_to_exit
def train_cmd(
    genotype: Annotated[
        str | None,
        typer.Option(
            "--genotype",
            help="A genotype JSON file, a run directory holding genotype.json, a NAS-Bench-201 "
            f"string, or a named architecture ({', '.join(named_architectures())}). Required "
            "unless --resume.",
        ),
    ] = None,
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
    from .pipeline import train

    cfg = _config(
        preset, config, set_, data, data_dir, task, layout, seed, device, None, resume, kind="train"
    )
    geno = _genotype(genotype) if genotype else None
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
    quiet: QuietOpt = False,
):
    """Rebuild a trained network from its run directory and report its metrics on a split.

    Inputs are normalised with the run's training statistics; metrics are computed over the
    whole split.
    """
    from .pipeline import evaluate
    from .rundir import check_output_file, disk_error, write_json

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
):
    """Export a trained network, then check the written file reproduces its predictions.

    In Python, `scinas.load(DIR)` rebuilds the same predictor without exporting.
    """
    from .export import export

    path = export(run_dir, format, output)
    typer.echo(json.dumps({"format": format, "path": str(path)}))


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
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
):
    """Was NAS worth it? scinas' recommended search, DARTS and random search against
    hand-designed ResNets on your data, over seeds, at one budget per method.

    Writes DIR/compare.json after every finished run (per method: test metric per seed, mean,
    std, 95% CI, parameters, FLOPs, the seconds each run used, the seeds that failed and why;
    Welch's t-tests against darts and against scinas) and a run directory per method and seed;
    prints the table. A method that cannot use its budget on a seed is reported as failed there
    and the others go on.
    """
    from .compare import compare, table

    stored = None
    if resume is not None:
        from .rundir import check_resume

        stored = check_resume(resume, "compare")
        if seeds is None:
            seeds = stored.get("seeds")
        if methods is None:
            methods = ",".join(stored.get("methods", []))
    if budget is not None:
        set_ = [*(set_ or []), f"compare.budget={budget}"]
    chosen = [m.strip() for m in (methods or ",".join(DEFAULT_COMPARE)).split(",") if m.strip()]
    also = ("random",) if "random" in chosen else ()  # its settings may be given too
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
    from .report import write_report
    from .rundir import is_run_dir, read_mapping

    if is_run_dir(run_dir):  # its JSON files hold what scinas wrote (else: one message)
        for name in ("run.json", "config.json", "data.json", "results.json"):
            if (run_dir / name).is_file():
                read_mapping(run_dir / name)
    typer.echo(str(write_report(run_dir, output)))


def strategies_text(only: str | None = None) -> str:
    """Each strategy (or only one) with its kind, its spaces and its own settings."""
    from .spaces import SPACES
    from .strategies import STRATEGIES

    names = [STRATEGIES.get(only).name] if only else STRATEGIES.names()
    lines = [
        "Shared search settings (every strategy): search.strategy, search.space, search.C, "
        "search.layers, search.ops, search.batch_size, search.max_samples, search.augment, "
        "search.time_budget (and the space's own: see `scinas spaces`).",
    ]
    for name in names:
        entry = STRATEGIES.get(name)
        doc = entry.description
        spaces = [sp for sp in SPACES if _searches(entry, name, sp)]
        lines += ["", f"{name} ({entry.kind}; spaces: {', '.join(spaces)}): {doc}"]
        for key, field in entry.Settings.model_fields.items():
            note = f"  {field.description}" if field.description else ""
            lines.append(f"  search.{key} = {field.default!r}{note}")
    return "\n".join(lines)


def _searches(entry, strategy: str, space: str) -> bool:
    """Whether strategy ``entry`` can search ``space`` (its check refuses nothing)."""
    try:
        entry.check_search(_default_search(strategy, space), SPACES.get(space))
    except ValueError:
        return False
    return True


def _default_search(strategy: str, space: str):
    from .config import SearchConfig

    return SearchConfig.model_validate({"strategy": strategy, "space": "darts"}).model_copy(
        update={"space": space}
    )


def spaces_text() -> str:
    """Each search space with what it offers and its own settings."""
    from .config import SearchConfig
    from .spaces import SPACES

    lines = []
    for name in SPACES:
        space = SPACES.get(name)
        has = ["black-box"] + (["weight sharing"] if space.has_supernet else [])
        lines.append(f"{name} ({', '.join(has)}): {space.description}")
        if space.default_ops():
            lines.append(f"  ops: {', '.join(space.default_ops())}")
        if space.named():
            lines.append(f"  named architectures: {', '.join(space.named())}")
        for key in space.settings:
            field = SearchConfig.model_fields[key]
            lines.append(f"  search.{key} = {field.default!r}  {field.description or ''}".rstrip())
    return "\n".join(lines)


@app.command("strategies")
@_errors_to_exit
def strategies_cmd(
    name: Annotated[
        str | None, typer.Argument(help="Show only this strategy (default: all of them).")
    ] = None,
):
    """List the search strategies: their kind, the spaces they search, and their own settings
    (set with --set search.KEY=VALUE; a setting of another strategy is refused)."""
    typer.echo(strategies_text(name))


@app.command("spaces")
@_errors_to_exit
def spaces_cmd():
    """List the search spaces: what they offer (weight sharing or black-box only), their ops,
    named architectures and own settings (--set search.space=NAME chooses one)."""
    typer.echo(spaces_text())


bench_app = typer.Typer(
    help="Benchmarks that rank search strategies against published results.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(bench_app, name="bench")


@bench_app.command("nb201")
@_errors_to_exit
def bench_nb201_cmd(
    table: Annotated[
        Path,
        typer.Option(
            "--table",
            help="The NAS-Bench-201 results table (nb201_accuracies.npz or .csv.gz) with "
            "columns arch_str, cifar10_valid_12ep and cifar10_test_200ep.",
        ),
    ],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="random | evolution | tpe | reinforce (from the table alone), or the one-shot "
            "darts | gdas | drnas | rsws (these train a supernet on --data, e.g. CIFAR-10).",
        ),
    ] = "random",
    budget: Annotated[
        int, typer.Option("--budget", help="Architectures queried per seed (black-box).")
    ] = 100,
    seeds: Annotated[
        int, typer.Option("--seeds", help="Independent runs (seeds F..F+K-1, F = --first-seed).")
    ] = 10,
    first_seed: Annotated[
        int,
        typer.Option(
            "--first-seed",
            help="The first seed (default 0). Splits one benchmark's seeds over processes or "
            "machines: --first-seed 2 --seeds 2 runs seeds 2 and 3, the same runs as those "
            "seeds of --seeds 4.",
        ),
    ] = 0,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="optuna storage URL for the studies (e.g. sqlite:///bench.db); default in "
            "memory. One study per seed, so an interrupted benchmark resumes from it.",
        ),
    ] = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    out: OutOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
):
    """Rank a search strategy on NAS-Bench-201 (CIFAR-10) without training anything.

    The strategy sees only each architecture's 12-epoch validation accuracy; the benchmark
    reports the 200-epoch test accuracy of the architecture it returns, mean ± std over seeds,
    and the best-so-far curve against queries. Writes results.json, curve.csv, curve.png and
    trials.csv into --out. Published CIFAR-10 references: random 93.70 ± 0.36, regularised
    evolution 93.92 ± 0.30, optimum 94.37.
    """
    from .bench import run_nb201
    from .config import check_settings_apply
    from .rundir import default_out
    from .strategies import STRATEGIES

    STRATEGIES.get(strategy)  # unknown -> one message with a suggestion
    # the config is the chosen strategy's: its own settings apply, another's are refused
    cfg = _config(preset, config, set_, data, data_dir, None, None, None, device, strategy)
    check_settings_apply(cfg)
    results = run_nb201(
        strategy,
        budget=budget,
        seeds=seeds,
        table=table,
        out=out or default_out("bench"),
        cfg=cfg,
        storage=storage,
        overwrite=overwrite,
        reporter=Reporter(quiet=quiet),
        first_seed=first_seed,
    )
    keys = (
        "strategy",
        "budget",
        "seeds",
        "first_seed",
        "test_accuracy_mean",
        "test_accuracy_std",
        "seconds",
    )
    typer.echo(json.dumps({k: results[k] for k in keys}))


def main() -> None:
    app(prog_name="scinas")


if __name__ == "__main__":
    sys.exit(main())
