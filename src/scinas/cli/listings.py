"""The verbs that list the registries (strategies, spaces) and the benchmark verbs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..progress import Reporter
from ..spaces import SPACES
from ..strategies import STRATEGIES
from .common import (
    ConfigOpt,
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    OutOpt,
    OverwriteOpt,
    PresetOpt,
    QuietOpt,
    SetOpt,
    _config,
    _errors_to_exit,
    _of_kind,
    app,
)


def strategies_text(only: str | None = None) -> str:
    """Each strategy (or only one) with its kind, its spaces and its own settings."""
    from ..spaces import SPACES

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
    from ..config import SearchConfig

    return SearchConfig.model_validate({"strategy": strategy, "space": "darts"}).model_copy(
        update={"space": space}
    )


def spaces_text() -> str:
    """Each search space with what it offers and its own settings."""
    from ..config import SearchConfig
    from ..spaces import SPACES

    lines = []
    for name in SPACES:
        space = SPACES.get(name)
        has = ["black-box"] + (["weight sharing"] if space.has_supernet else [])
        lines.append(f"{name} ({', '.join(has)}): {space.description}")
        if space.default_ops():
            lines.append(f"  ops: {', '.join(space.default_ops())}")
        if space.named():
            lines.append(f"  named architectures: {', '.join(space.named())}")
        fields = [(k, SearchConfig.model_fields[k]) for k in space.settings]
        for key, field in fields + list(space.Settings.model_fields.items()):
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
            help=f"{' | '.join(_of_kind('black-box'))} (from the table alone), or the one-shot "
            f"{' | '.join(_of_kind('one-shot'))} (these train a supernet on --data, e.g. "
            "CIFAR-10).",
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
    from ..bench import run_nb201
    from ..config import check_settings_apply
    from ..rundir import default_out

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
