"""Bounded plans (issue 34): every numeric setting, at its type's extremes, is refused up front
with one message naming it, or runs a bounded amount of work; totals are closed-form.

The settings are read from the config's models and every strategy's ``Settings`` (a new
setting is tried without editing this file). `test_every_numeric_setting_at_its_extremes`
prints the table of outcomes (``pytest -s``)."""

from __future__ import annotations

import sys
import time
import typing

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from conftest import TINY, scinas_cli, tiny_sets
from scinas import bounds
from scinas.budget import plan
from scinas.cli import app
from scinas.config import Config, build_config
from scinas.errors import UserError
from scinas.strategies import STRATEGIES

EXTREMES = {
    "zero": 0,
    "negative": -1,
    "1e12": 10**12,
    "1e300": 1e300,
    "largest int": sys.maxsize,
}
HUGE = ("1e12", "1e300", "largest int")


def _numeric(annotation) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return bool not in args and any(a in (int, float) for a in args)


def _upper(field) -> float | None:
    for m in field.metadata:
        for name in ("le", "lt"):
            if getattr(m, name, None) is not None:
                return getattr(m, name)
    return None


def numeric_settings() -> dict[str, tuple[object, str | None]]:
    """Every numeric setting: key -> (its pydantic field, a strategy that has it or None)."""
    out: dict[str, tuple[object, str | None]] = {}
    for name, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for key, f in model.model_fields.items():
                if _numeric(f.annotation):
                    out[f"{name}.{key}"] = (f, None)
        elif _numeric(model):
            out[name] = (field, None)
    for strategy in STRATEGIES:
        for key, f in STRATEGIES.get(strategy).Settings.model_fields.items():
            if _numeric(f.annotation) and f"search.{key}" not in out:
                out[f"search.{key}"] = (f, strategy)
    return out


SETTINGS = numeric_settings()


def outcome(key: str, value, field, strategy: str | None) -> str:
    """ "refused: MESSAGE" or "accepted" for ``key=value`` on the tiny preset (1e300 as the
    integer 10**300 for an integer setting)."""
    if float not in typing.get_args(field.annotation) + (field.annotation,):
        value = int(value) if value != 1e300 else 10**300
    text = repr(value) if isinstance(value, float) else str(value)
    sets = [f"{key}={text}"] + ([f"search.strategy={strategy}"] if strategy else [])
    try:
        build_config("tiny", overrides=sets)
    except UserError as e:
        return f"refused: {e}"
    return "accepted"


def test_every_numeric_setting_at_its_extremes():
    """Every count, budget and size is refused above its bound, naming the setting, the value
    and the bound; the settings accepted at 1e12 are the scales of `bounds.SCALES` (no amount
    of work: `test_absurd_scales_end_by_themselves` runs them), refused beyond float32's range;
    nothing negative is accepted."""
    assert len(SETTINGS) > 60  # the config's and every strategy's settings were found
    table = {}
    for key, (field, strategy) in SETTINGS.items():
        for label, value in EXTREMES.items():
            table[key, label] = outcome(key, value, field, strategy)
    print("\nsetting                      " + "  ".join(f"{x:>11}" for x in EXTREMES))
    for key in SETTINGS:
        cells = [table[key, x].split(":")[0] for x in EXTREMES]
        print(f"{key:28} " + "  ".join(f"{c:>11}" for c in cells))
    for key, (field, _) in SETTINGS.items():
        assert table[key, "negative"].startswith("refused"), key
        if key in bounds.SCALES:
            assert table[key, "1e12"] == "accepted", f"{key} is bounded: not a scale"
            # beyond float32 (torch's) range a float is refused: it crashed the optimiser
            huge = table[key, "1e300"]
            assert huge == "accepted" or "float32" in huge or "64-bit" in huge, key
            continue
        # not a scale: an amount of work, a size or a share, refused above its bound
        for label in HUGE:
            message = table[key, label]
            assert message.startswith("refused"), (key, label)
            assert key.split(".")[-1] in message, (key, message)
        message = table[key, "largest int"]
        assert float(sys.maxsize) in map(float, _numbers(message)), message  # names the value
        if (bound := _upper(field)) is not None:  # else a check of its own (e.g. in (0, 1))
            assert any(float(m) == bound for m in _numbers(message)), message
    assert set(bounds.SCALES) <= set(SETTINGS), set(bounds.SCALES) - set(SETTINGS)


def _numbers(text: str) -> list[str]:
    import re

    return re.findall(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?", text)


@pytest.mark.parametrize(
    "key,value,phrase",
    [
        ("train.time_budget", "1e12", "30 days"),
        ("search.time_budget", "1e7", "30 days"),
        ("compare.budget", "1e300", "30 days"),
        ("train.epochs", "1000001", "10^6 epochs"),
        ("search.epochs", "1000001", "10^6 epochs"),
    ],
)
def test_a_budget_or_plan_above_its_bound_is_one_clear_message(tmp_path, key, value, phrase):
    """The issue's case through the CLI: exit code 2, the setting, the value and the bound in
    one line, nothing written."""
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--out", str(out), *tiny_sets(f"{key}={value}")])
    assert res.exit_code == 2, res.output
    assert key in res.stderr and phrase in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_time_budget_planning_more_than_a_million_epochs_is_refused():
    """A budget within 30 days that fast epochs turn into more than 10^6 epochs."""
    with pytest.raises(UserError, match=r"train.time_budget=2e\+06 seconds .* 1000000 epochs"):
        plan(2e6, 0.0001, 0.0, 10, "train.time_budget")
    ok = plan(20, 0.0001, 0.0, 10, "train.time_budget")
    assert ok.epochs <= bounds.MAX_EPOCHS


def test_plan_totals_are_closed_form():
    """The bookkeeping of a plan of 10^11 epochs takes no longer than that of 10 (the issue's
    1e12 budget spun here summing over every planned epoch)."""
    import torch

    from scinas.placement import Batches
    from scinas.tasks import TASKS
    from scinas.train import Trainer

    x, y = torch.zeros(8, 1, 4, 4), torch.zeros(8, dtype=torch.long)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    one = torch.zeros(1)
    batches = Batches(x, y, one, one + 1, 4, torch.device("cpu"))
    t = Trainer(
        model, TASKS.get("classification")(), None, {"train": batches},
        epochs=10, lr=0.1, lr_min=0.0, momentum=0.9, weight_decay=0.0, grad_clip=5.0,
    )  # fmt: skip
    assert t.planned_steps() == 10 * t.n_steps
    t.epochs, t.last_steps = 10**11, 1
    t0 = time.perf_counter()
    assert t.planned_steps() == (10**11 - 1) * t.n_steps + 1
    # a re-plan to a deadline from a 10^11-epoch plan: counted at once, not epoch by epoch
    t.deadline = time.perf_counter() + 100.0
    t.epoch_ends, t.epoch_loops = [0.0, 1.0], [(0.5, t.n_steps, 0.1)]
    t.fit_to_deadline(1)
    assert time.perf_counter() - t0 < 1.0
    assert t.epochs < 1000


def test_absurd_scales_end_by_themselves(tmp_path):
    """The settings with no upper bound (`bounds.SCALES`) at 1e12 in one tiny training: the
    work stays that of the plan (here the divergence guard ends it with exit code 1)."""
    scales = [k for k in bounds.SCALES if k.startswith("train.")]
    sets = tiny_sets(*(f"{k}=1e12" for k in scales))
    t0 = time.monotonic()
    res = scinas_cli("train", "--genotype", "resnet_tiny", "--out", tmp_path / "t", *sets)
    assert res.returncode in (0, 1), res.stderr
    assert res.returncode == 0 or "diverged" in res.stderr
    assert time.monotonic() - t0 < 240
    assert TINY  # the same tiny plan as every end-to-end test


def test_a_plan_made_for_its_timings_alone_is_not_bounded():
    """`scinas compare` times the final training with a budget no setting can give
    (`budget.TIMINGS_ONLY`) before planning it to the run's deadline."""
    from scinas.budget import TIMINGS_ONLY

    assert TIMINGS_ONLY > bounds.MAX_SECONDS
    assert plan(TIMINGS_ONLY, 0.01, 0.0, 4, "train.time_budget").epochs > bounds.MAX_EPOCHS
