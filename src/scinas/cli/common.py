"""The `scinas` app, the options its verbs share and the helpers they share (config, errors to
exit codes, --nproc)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import parallel, signals
from ..config import PRESETS, build_config
from ..data import DATASETS
from ..errors import TrainingDiverged, UserError
from ..progress import Reporter
from ..spaces import SPACES
from ..strategies import STRATEGIES
from ..tasks import TASKS

app = typer.Typer(
    name="scinas",
    help=(
        "Neural architecture search on your own image-like data.\n\n"
        "`scinas run` searches a DARTS cell on your data, retrains the derived network from "
        "scratch and reports test metrics; with no arguments it runs on the bundled 8×8 digits "
        "(offline, a few minutes on a laptop CPU).\n\n"
        "Environment: SCINAS_DATA_DIR, where named datasets are read from; OMP_NUM_THREADS, "
        "threads per process (at most the cores it may use); SCINAS_MALLOC=system keeps glibc's "
        "allocator as it comes (by default large freed blocks are kept for the next step, and "
        "the process holds its peak memory until it ends)."
    ),
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _of_kind(kind: str) -> list[str]:
    """The registered strategies of one kind, for help texts."""
    return [n for n in STRATEGIES if STRATEGIES.get(n).kind == kind]


# Options shared by the verbs (Annotated aliases keep each verb's signature readable).
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help=f"Named dataset ({', '.join(DATASETS.names())}), a .npz file with "
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
        help=f"{' | '.join(TASKS.names())} (default: from the targets: integer labels mean "
        "classification, float targets regression, an N×K 0/1 matrix multi-label).",
    ),
]
LayoutOpt = Annotated[
    str | None,
    typer.Option(
        "--layout",
        help="what x's axes are: images nhwc | nchw | nhw, series ncl | nlc | nl (N×L, one "
        "channel). Default: read from the shape where only one reading fits.",
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
        "--set precision=fp32|bf16|fp16 trains in that precision (fp16: CUDA only, refused on "
        "CPU; the default auto takes bf16 for ResNet-like networks on CPUs with AMX-BF16); "
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
            for kind in dict.fromkeys(STRATEGIES.get(n).kind for n in STRATEGIES)
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
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="FILE.py:FUNCTION, your own network: FUNCTION(input_shape, num_outputs) returns a "
        "torch.nn.Module mapping (N, *input_shape) to (N, num_outputs). Loading the file runs "
        "it: scinas runs it only when named here, so a run of your network needs --model again "
        "to resume, evaluate or export it (the same file: its SHA-256 is recorded).",
    ),
]
NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        help=f"Data-parallel one-shot search ({', '.join(_of_kind('one-shot'))}; `run` trains "
        "the final network "
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
    from ..rundir import is_run_dir

    path = kwargs.get("resume") or kwargs.get("out")
    if "--resume" in said or "scinas report" in said or path is None or not is_run_dir(path):
        return ""
    path = Path(path)
    done = path / "compare.json"
    if (path / "results.json").is_file() or (
        done.is_file() and json.loads(done.read_text() or "{}").get("complete")
    ):  # stopped after its results, before or after its report
        return f"; it had finished: `scinas report {path}` writes its report if it is missing"
    return f"; continue with `scinas {verb} --resume {path}`"


def _spawn(cfg, nproc: int) -> None:
    """--nproc N > 1: check it, then run this very command in N processes (`scinas.parallel.
    launch`) and exit with process 0's code. Nothing is written before the processes run."""
    from .. import parallel
    from ..context import resolve_device

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
        from ..rundir import check_resume

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


def _trusted(model: str | None):
    """--model: the user's network file, named and so runnable in this process."""
    from ..spaces.user_model import trust

    return None if model is None else trust(model)


MODEL_SEARCHES = ("lineage", "receptive")  # the strategies that search your own network


def _searching(set_: list[str] | None, model: str | None, strategy: str | None):
    """--model on run and search: the lineage from your network, growing its convolutions'
    kernels and widths and changing its recipe (`scinas.spaces.user_model`), or with
    --strategy receptive its convolutions' kernel sizes and dilations searched in one
    training."""
    if model is None:
        return set_
    if strategy not in (None, *MODEL_SEARCHES):
        raise UserError(
            f"--model searches your network with the lineage (the default) or --strategy "
            f"receptive; --strategy {strategy} does not apply."
        )
    spec = _trusted(model).spec
    return [
        *(set_ or []),
        "search.space=baseline",
        f"search.strategy={strategy or 'lineage'}",
        f"search.start_from=[{spec}]",
    ]


def _genotype(text: str):
    """--genotype: a file, a run directory holding genotype.json, or a short form (FILE.py:
    FUNCTION: the user's own network, as --model)."""
    from ..spaces import load_genotype
    from ..spaces.user_model import is_spec

    if is_spec(text):
        return _trusted(text)

    path = Path(text)
    if path.is_dir() and not (path / "genotype.json").is_file():
        from ..rundir import is_run_dir

        why = (
            " (the run has not finished its search)"
            if is_run_dir(path)
            else " (give a genotype JSON file, a finished run directory, or a named genotype)"
        )
        raise UserError(f"no genotype.json in {path}{why}.")
    return load_genotype(text)
