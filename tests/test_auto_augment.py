"""``train.augment=auto`` (`scinas.symmetry.AutoAugment`): the network in training probes the
data's symmetries, the augmentation follows them, the choice resumes exactly, and a training
on data mirrored by construction ends with the mirror as augmentation and test-time view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import scinas
from conftest import TINY
from scinas.config import build_config
from scinas.symmetry import AutoAugment
from scinas.tasks import Classification, make_task
from test_symmetry import TopOrBottom, _mirrored_digits, _top_or_bottom
from test_trainer import (
    MemoryCheckpointer,
    interrupted,
    network_trainer_for_test,
    same,
    stop_at,
    without_seconds,
)


def _batches(x, y):
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]


def test_a_network_that_knows_the_data_decides_at_once_and_chooses_the_mirror():
    x, y = _top_or_bottom()
    records = []
    auto = AutoAugment(
        make_task("classification", 2),
        _batches(x, y),
        ["hflip", "vflip", "rot90"],
        log=records.append,
    )
    assert auto.end_epoch(TopOrBottom(), epoch=1, epochs=10)  # the augmentation changes
    assert (auto.augment, auto.symmetries, auto.decided_at) == ("natural", ["hflip"], 1)
    assert records[-1]["decided"] and records[-1]["augment"] == "natural"
    assert not auto.end_epoch(TopOrBottom(), epoch=2, epochs=10)  # decided once
    assert len(records) == 1


class Constant(nn.Module):
    def forward(self, x):
        return torch.zeros(len(x), 2)


def test_a_network_at_chance_decides_nothing_until_half_the_epochs_then_keeps_the_default():
    x, y = _top_or_bottom()
    records = []
    auto = AutoAugment(
        make_task("classification", 2), _batches(x, y), ["hflip", "vflip"], log=records.append
    )
    for epoch in range(1, 5):
        assert not auto.end_epoch(Constant(), epoch, epochs=10)
    assert auto.decided_at is None
    for epoch in range(5, 11):  # half the epochs: it stops probing and keeps the default
        assert not auto.end_epoch(Constant(), epoch, epochs=10)
    assert (auto.augment, auto.symmetries, auto.decided_at) == ("default", [], 5)
    assert [r["decided"] for r in records] == [False] * 5  # no margin over a constant output
    assert [r["stops"] for r in records] == [False] * 4 + [True]


def test_its_state_round_trips():
    x, y = _top_or_bottom()
    auto = AutoAugment(make_task("classification", 2), _batches(x, y), ["hflip", "vflip", "rot90"])
    auto.end_epoch(TopOrBottom(), 1, 4)
    again = AutoAugment(make_task("classification", 2), _batches(x, y), ["hflip", "vflip", "rot90"])
    again.load_state_dict(auto.state_dict())
    assert (again.augment, again.symmetries, again.decided_at) == ("natural", ["hflip"], 1)
    assert again.decided


class DecidesAfterTheFirstEpoch(AutoAugment):
    """The real hooks around a scripted decision: ``natural`` after epoch 1."""

    def end_epoch(self, model, epoch, epochs, plain=None):
        if self.decided_at is None and epoch == 1:
            self.augment, self.symmetries, self.decided_at = "natural", ["hflip"], 1
            return True
        return False


def _trainer(checkpointer=None, track=None):
    """test_trainer's network trainer, its augmentation chosen by a scripted auto."""
    trainer = network_trainer_for_test(checkpointer, track)
    aug = trainer.generators["augment"]
    scale = {"default": 0.1, "natural": 1.0}

    def make(name):  # each name its own augmentation, on the one generator
        return lambda xb: xb + scale[name] * torch.randn(xb.shape, generator=aug)

    auto = DecidesAfterTheFirstEpoch(Classification(num_outputs=3), [], ["hflip"])
    auto.make = make
    trainer.hooks.auto_augment, trainer.hooks.augment = auto, make("default")
    return trainer


@pytest.mark.parametrize(
    "label,step", [("train 2/3", 2), ("train 1/3", 3)], ids=["after", "before"]
)
def test_the_choice_resumes_to_the_same_bits(label, step):
    reference = _trainer()
    expected = reference.run()
    assert reference.hooks.auto_augment.augment == "natural"
    ckpt = MemoryCheckpointer()
    interrupted(_trainer(ckpt, track=stop_at(label, step)))
    resumed = _trainer(ckpt)
    assert resumed.resume()
    assert without_seconds(resumed.run()) == without_seconds(expected)
    assert same(resumed.model.state_dict(), reference.model.state_dict())


def test_a_training_on_mirrored_data_finds_the_mirror_and_keeps_it(tmp_path):
    data = _mirrored_digits(tmp_path)
    sets = [
        *TINY,
        f"data.dataset={data}",
        "train.augment=auto",
        "train.epochs=6",
        "train.max_samples=null",
        "train.steps_per_epoch=25",
    ]
    res = scinas.train(build_config("tiny", overrides=sets), "macro:resnet_tiny", tmp_path / "run")
    run = tmp_path / "run"
    events = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    probes = [e for e in events if e["event"] == "augment_probe"]
    assert probes and probes[-1]["decided"] and len([p for p in probes if p["decided"]]) == 1
    # digits are not symmetric under a flip upside down or a quarter turn; their mirrored copies
    # are under the left-right mirror
    assert probes[-1]["symmetries"] == ["hflip"] and probes[-1]["augment"] == "natural"
    assert res["auto_augment"]["symmetries"] == ["hflip"]
    assert res["recipe"]["augment"] == "natural"
    recipe = json.loads((run / "recipe.json").read_text())
    assert recipe == res["recipe"]
    assert "hflip" in res["tta_checks"]
    views = res["tta"]["views"] if "tta" in res else []
    assert recipe.get("tta", []) == views
    predictor = scinas.load(run)  # the views kept are those the loaded predictor averages
    assert predictor.views == views
    saved = np.load(run / "predictions_test.npz")
    x = torch.as_tensor(np.load(data)["x_test"][:40, None], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(
            predictor(x), torch.as_tensor(saved["outputs"][:40]), rtol=1e-4, atol=1e-4
        )


def test_auto_on_series_is_no_augmentation_and_probes_nothing(tmp_path):
    from test_series import TINY_SERIES, _slice

    sets = [f"data.dataset={_slice(tmp_path)}", *TINY_SERIES, "train.epochs=3"]
    runs = {}
    for augment in ("auto", "default"):
        cfg = build_config("tiny", overrides=[*sets, f"train.augment={augment}"])
        runs[augment] = scinas.train(cfg, "resnet1d", tmp_path / augment)
    assert runs["auto"]["test"] == runs["default"]["test"]  # the same training, bit for bit
    events = (tmp_path / "auto" / "metrics.jsonl").read_text()
    assert "augment_probe" not in events and not (tmp_path / "auto" / "recipe.json").exists()


def test_compare_says_what_auto_chose_for_a_baseline(tmp_path):
    from scinas.compare import compare
    from scinas.compare_summary import table

    data = _mirrored_digits(tmp_path)
    sets = [*TINY, f"data.dataset={data}", "train.augment=auto", "train.epochs=4"]
    sets += ["train.max_samples=null", "train.steps_per_epoch=25", "compare.budget=null"]
    res = compare(
        build_config("tiny", overrides=sets), tmp_path / "cmp", seeds=1, methods=["resnet_tiny"]
    )
    (recipe,) = res["methods"]["resnet_tiny"]["recipe"].values()
    saved = json.loads((tmp_path / "cmp" / "resnet_tiny" / "seed0" / "recipe.json").read_text())
    assert recipe == saved and recipe["augment"] == "natural"
    assert "resnet_tiny seed 0: recipe augment=natural" in table(res)
