from __future__ import annotations

import math
import os

import pytest

from scinas.config import PRESETS, build_config, parse_set
from scinas.errors import UserError


def test_presets_and_defaults():
    assert set(PRESETS) == {"tiny", "small", "paper"}
    paper = build_config(preset="paper")
    # the DARTS paper's settings
    assert (paper.search.epochs, paper.search.C, paper.search.layers, paper.search.batch_size) == (
        50,
        16,
        8,
        64,
    )
    assert (paper.train.epochs, paper.train.C, paper.train.layers, paper.train.batch_size) == (
        600,
        36,
        20,
        96,
    )
    assert paper.search.arch_lr == 3e-4 and paper.train.cutout == 16
    # the paper's DARTS
    assert (paper.search.aux_skip, paper.search.entropy_weight, paper.search.beta_decay) == (
        0,
        0,
        0,
    )
    assert build_config().preset == "tiny"


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_the_default_darts_is_the_robust_one_and_every_part_can_be_turned_off(preset):
    from scinas.strategies.darts import PLAIN_DARTS, ROBUST_DEFAULTS

    cfg = build_config(preset)
    assert cfg.search.strategy == "darts"
    assert {k: getattr(cfg.search, k) for k in ROBUST_DEFAULTS} == ROBUST_DEFAULTS
    plain = build_config(preset, overrides=[f"search.{k}={v}" for k, v in PLAIN_DARTS.items()])
    assert {k: getattr(plain.search, k) for k in PLAIN_DARTS} == PLAIN_DARTS
    # --preset paper is the paper's DARTS: every robust part off
    paper = build_config("paper")
    assert {k: getattr(paper.search, k) for k in PLAIN_DARTS} == PLAIN_DARTS
    # the other strategies keep their own defaults: the robust ones are DARTS' alone
    gdas = build_config(preset, overrides=["search.strategy=gdas"])
    own = (gdas.search.arch_lr, gdas.search.aux_skip, gdas.search.entropy_weight)
    assert own + (gdas.search.beta_decay,) == (3e-4, 0, 0, 0)


def test_precedence_preset_file_set_explicit(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("search:\n  epochs: 7\n  C: 12\ntrain:\n  epochs: 3\n")
    cfg = build_config(
        preset="small", file=f, overrides=["search.C=10"], seed=5, data__dataset="mnist"
    )
    assert cfg.search.epochs == 7 and cfg.search.C == 10 and cfg.train.epochs == 3
    assert cfg.seed == 5 and cfg.data.dataset == "mnist" and cfg.preset == "small"


def test_toml_and_json_files(tmp_path):
    t = tmp_path / "c.toml"
    t.write_text("seed = 3\n[search]\norder = 2\n")
    assert build_config(file=t).search.order == 2
    j = tmp_path / "c.json"
    j.write_text('{"train": {"C": 20}}')
    assert build_config(file=j).train.C == 20


def test_set_parses_yaml_values():
    tree = parse_set(["search.ops=[none, skip_connect]", "train.auxiliary=false", "seed=4"])
    assert tree == {
        "search": {"ops": ["none", "skip_connect"]},
        "train": {"auxiliary": False},
        "seed": 4,
    }


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (
            {"overrides": ["search.epoch=3"]},
            "unknown config key 'search.epoch'. Did you mean 'search.epochs'",
        ),
        ({"overrides": ["serch.epochs=3"]}, "Did you mean 'search'"),
        ({"overrides": ["search.epochs=0"]}, "search.epochs"),
        ({"overrides": ["search.ops=[none, sep_conv_3x4]"]}, "Did you mean 'sep_conv_3x3'"),
        ({"overrides": ["noequals"]}, "key=value"),
        ({"preset": "smal"}, "unknown preset 'smal'. Did you mean 'small'"),
        ({"file": "/nonexistent/c.yaml"}, "does not exist"),
    ],
)
def test_bad_config_is_a_user_error(kwargs, phrase):
    with pytest.raises(
        UserError, match=phrase.replace(".", r"\.").replace("[", r"\[").replace("(", r"\(")
    ):
        build_config(**kwargs)


def test_deterministic_flag_sets_torch_determinism_and_off_touches_nothing(monkeypatch):
    import torch

    from scinas.context import setup

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        torch.backends.cudnn.benchmark = True  # a user's own setting, kept when the flag is off
        setup(build_config(data__dataset="digits", device="cpu"))
        assert torch.backends.cudnn.benchmark is True
        assert not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ

        setup(build_config(data__dataset="digits", device="cpu", overrides=["deterministic=true"]))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic is True
        assert torch.backends.cudnn.benchmark is False
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]


@pytest.mark.parametrize(
    ("n", "batch", "steps", "expected"),
    [
        (540, 128, 16, 33),  # 4 steps an epoch become 17
        (60, 128, 16, 16),  # a batch above the training set: cut to the floor, not to 3
        (10_000, 128, 16, 128),  # enough steps already
        (540, 128, 0, 128),  # 0: as given
        (540, 8, 16, 8),  # never larger than asked
        (545, 128, 16, 35),  # 545 // 16 = 34 leaves a last batch of one sample
        (17, 128, 16, 17),  # 17 % 16 = 1: the next batch that leaves none
    ],
)
def test_the_training_batch_gives_a_small_set_its_steps_an_epoch(n, batch, steps, expected):
    from scinas.context import epoch_batch

    t = build_config(overrides=[f"train.batch_size={batch}", f"train.min_epoch_steps={steps}"])
    b, note = epoch_batch(t.train, n)
    assert b == expected and n % b != 1
    assert (note is None) is (b == batch)
    if note is not None:
        assert f"{batch} -> {b}" in note and "train.min_epoch_steps" in note


def test_setup_fits_the_presets_batch_and_says_so_and_keeps_a_batch_the_user_gives():
    """The context's config, which every phase trains with and config.json records, holds the
    preset's batch fitted to the training set; the data's notes, which the log prints, say why.
    A batch given with --set is trained at as given."""
    from scinas.context import epoch_batch, setup
    from scinas.progress import Reporter

    cfg = build_config(data__dataset="digits", device="cpu")  # the tiny preset: 128
    ctx = setup(cfg, Reporter(quiet=True))
    n, b = len(ctx.data.train), ctx.cfg.train.batch_size
    assert 16 <= b < 128 and math.ceil(n / b) >= 16 and b == epoch_batch(cfg.train, n)[0]
    assert any(f"train.batch_size 128 -> {b}" in note for note in ctx.data.notes)
    given = build_config(data__dataset="digits", device="cpu", overrides=["train.batch_size=128"])
    assert given.train.min_epoch_steps == 0
    assert setup(given, Reporter(quiet=True)).cfg.train.batch_size == 128
    both = ["train.batch_size=128", "train.min_epoch_steps=4"]
    assert build_config(overrides=both).train.min_epoch_steps == 4


@pytest.mark.parametrize("strategy", ["lineage", "darts"])
def test_a_run_stored_before_a_setting_existed_resumes_as_it_ran(strategy):
    """A config.json written before `ADDED_SETTINGS` existed: resumed, each lacking setting takes
    the value the run had (not the new default), and the check finds nothing changed; a setting
    of another strategy is not added."""
    from scinas.config import check_resumable, config_to_dict
    from scinas.config.load import ADDED_SETTINGS, with_added_settings

    stored = config_to_dict(build_config(search__strategy=strategy))
    assert stored["train"]["min_epoch_steps"] == 16  # the default now
    assert stored["precision"] == "auto"
    for key in ADDED_SETTINGS:
        section, _, field = key.rpartition(".")
        (stored[section] if section else stored).pop(field, None)
    upgraded = with_added_settings(stored)
    assert upgraded["train"]["min_epoch_steps"] == 0
    assert upgraded["precision"] == "fp32"
    if strategy == "lineage":
        assert upgraded["search"]["scores"] == "metric"
        assert upgraded["search"]["decision_val"] is None
    else:
        assert "scores" not in upgraded["search"] and "decision_val" not in upgraded["search"]
    assert "min_epoch_steps" not in stored["train"]  # the stored dict is left as it was
    resumed = config_to_dict(build_config(base=stored))
    assert resumed == upgraded
    check_resumable(stored, resumed, allow_changes=False)
    changed = config_to_dict(build_config(base=stored, overrides=["train.min_epoch_steps=16"]))
    with pytest.raises(UserError, match=r"train.min_epoch_steps: 0 -> 16"):
        check_resumable(stored, changed, allow_changes=False)
