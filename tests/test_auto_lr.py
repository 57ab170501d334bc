"""Automatic learning rates (the range test behind ``search.lr=auto`` / ``train.lr=auto``) and the
trainer's divergence guard (roll back, halve the learning rate, continue)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import scinas
from conftest import REPORT, TINY, tiny_sets
from scinas.cli import app
from scinas.config import build_config
from scinas.errors import TrainingDiverged
from scinas.lr_finder import (
    ARCH_LR_MAX,
    ARCH_LR_MIN,
    ARCH_TRAVEL,
    arch_lr_for,
    choose,
    range_test,
    smooth,
)
from scinas.progress import Reporter
from scinas.train import MAX_ROLLBACKS, LossGuard
from test_trainer import network_trainer_for_test, without_seconds

# ----------------------------------------------------------------------------- divergence guard


def test_loss_guard_flags_nan_absurd_and_exploded_losses_only():
    guard = LossGuard()
    for v in [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4]:
        assert guard.problem(v) is None
    assert guard.start == 2.3  # the first step's loss, before any update
    assert "not finite" in guard.problem(math.nan)
    assert "not finite" in guard.problem(math.inf)
    assert guard.problem(1e5) is not None
    assert guard.problem(30.0) is None  # > 10x median and above the start: a suspect
    assert "running median" in guard.problem(30.0)  # and the next full batch too: exploded
    assert guard.problem(2.0) is None  # a bad batch, but below where the phase started
    early = LossGuard()
    assert early.problem(2.9) is None
    assert early.problem(1504.0) is None  # 30x the digits rate: the second step explodes...
    assert early.problem(9e3) is not None  # ...and the third climbs on
    late = LossGuard({"recent": [0.02] * 20, "start": 2.3})
    assert late.problem(0.3) is None  # 15x the median of a well-trained net: noise, not divergence
    assert late.problem(5.0) is None and late.problem(5.0) is not None


def test_one_exploded_batch_of_a_network_that_fits_its_data_is_an_outlier():
    """60 training series fitted to a median loss of 0.0002; one batch of 16 at 1.6 (above
    twice the starting 0.69) each epoch, and the next batch back at the median: no divergence,
    and the outlier stays out of the median's window. A suspect survives a checkpoint."""
    guard = LossGuard({"recent": [0.0002] * 50, "start": 0.69})
    for _ in range(20):
        assert guard.problem(1.6, 16) is None
        assert guard.suspect == 1.6 and max(guard.recent) == 0.0002
        assert guard.problem(0.0002, 16) is None and guard.suspect is None
    guard.problem(1.6, 16)
    assert LossGuard(guard.state_dict()).problem(1.8, 16) is not None


def test_confidently_wrong_batches_of_a_two_class_network_are_not_a_divergence():
    """GunPoint's resnet1d at epoch 37 (45 series, batches of 16): median 0.067, then batches at
    0.934 and 0.748, above the starting log 2 but under twice it: noise of small batches that a
    few confident mistakes raise above chance, not a rate that diverges (it failed the seed
    after 6 rollbacks). A run that does diverge passes twice the start at once."""
    guard = LossGuard({"recent": [0.067] * 50, "start": math.log(2)})
    for v in (0.934, 0.748, 0.9, 1.2):
        assert guard.problem(v, 16) is None
    assert guard.suspect is None and max(guard.recent) == 1.2
    diverging = LossGuard({"recent": [0.067] * 50, "start": math.log(2)})
    assert diverging.problem(3.0, 16) is None and diverging.problem(12.0, 16) is not None


def test_a_network_that_starts_trained_is_guarded_from_a_constant_outputs_loss():
    # a search's winner going on: first loss 0.0003, then a noisy batch at 0.32 (10 classes: a
    # constant output's loss is log 10 = 2.3)
    guard = LossGuard()
    guard.floor = math.log(10)
    for v in [0.0003, 0.0002, 0.0002]:
        assert guard.problem(v) is None
    assert guard.start == pytest.approx(math.log(10))
    assert guard.problem(0.32) is None  # before the floor, this counted as diverging
    assert guard.problem(30.0) is None and guard.problem(30.0) is not None
    bare = LossGuard()  # without the floor (as before): the same batches trip it
    for v in [0.0003, 0.0002, 0.0002]:
        bare.problem(v)
    assert bare.problem(0.32) is None and bare.problem(0.32) is not None


def test_the_trainer_sets_the_floor_from_a_constant_output():
    trainer = network_trainer_for_test(epochs=1)
    trainer.run()
    assert trainer.guard.floor == pytest.approx(math.log(3), rel=1e-5)  # 3 classes: log 3
    assert trainer.guard.start >= trainer.guard.floor


def test_a_small_last_batch_is_only_checked_for_nan_and_absurd_losses():
    # an overfitted supernet (median 0.04) scoring 2.8 on an epoch's last 4 images of 2,500
    guard = LossGuard({"recent": [0.04] * 50, "start": 2.32})
    assert guard.problem(0.05, 32) is None
    assert guard.problem(2.8, 4) is None  # noise of a ragged batch: not a divergence
    assert list(guard.recent)[-1] == 0.05  # nor does it join the median's window
    assert guard.problem(5.0, 32) is None  # a full batch that high: a suspect...
    assert guard.problem(5.0, 32) is not None  # ...and with the next one, exploded
    assert "not finite" in guard.problem(math.nan, 4)
    assert guard.problem(1e5, 4) is not None
    resumed = LossGuard(guard.state_dict())  # the largest batch seen survives a checkpoint
    assert resumed.largest == 32 and resumed.problem(2.8, 4) is None
    first = LossGuard({"recent": [0.04] * 50, "start": 2.32})  # nothing seen: a full batch
    assert first.problem(5.0, 4) is None and first.problem(5.0, 4) is not None


def _inject(trainer, when, times: int = 1):
    """Make the loss of the steps in ``when`` (epoch, step), 1-based as logged, NaN the first
    ``times`` times they run."""
    original, fired = trainer.hooks.loss, {"n": 0}

    def loss(batch, optimizer, where):
        out = original(batch, optimizer, where)
        if any(where.endswith(f"epoch {e}, step {s}") for e, s in when) and fired["n"] < times:
            fired["n"] += 1
            return out[0] * math.nan, out[1], out[2]
        return out

    trainer.hooks.loss = loss


def test_the_guard_rolls_back_the_epoch_halves_the_lr_and_the_run_completes():
    reference = network_trainer_for_test()
    expected = reference.run()
    events = []
    trainer = network_trainer_for_test()
    trainer.on_event = events.append
    _inject(trainer, [(2, 3)])
    history = trainer.run()
    assert len(history) == 3 and all(math.isfinite(h["train"]["loss"]) for h in history)
    assert [e["event"] for e in events] == ["divergence"]
    event = events[0]
    assert event["epoch"] == 2 and event["at"] == "training epoch 2, step 3"
    assert event["loss"] == "nan" and event["lr_after"] == pytest.approx(event["lr_before"] / 2)
    assert "rolled back to the start of training epoch 2" in event["message"]
    # epoch 1 is untouched; epoch 2 ran again from its start at half the schedule
    assert without_seconds(history[:1]) == without_seconds(expected[:1])
    assert history[1]["lr"] == pytest.approx(expected[1]["lr"] / 2)
    assert trainer.scheduler.base_lrs == [pytest.approx(0.025)]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_a_diverged_architecture_loss_halves_the_architecture_rate_too():
    from scinas.train import diverged

    trainer = network_trainer_for_test()
    original, calls, fired = trainer.hooks.loss, [], []

    def loss(batch, optimizer, where):
        if where.endswith("epoch 1, step 2") and not fired:
            fired.append(where)
            raise diverged(math.nan, where, "search.arch_lr", 3e-4)
        return original(batch, optimizer, where)

    trainer.hooks.loss, trainer.hooks.scale_lr = loss, calls.append
    events = []
    trainer.on_event = events.append
    trainer.run()
    assert calls == [0.5] and events[0]["lr_key"] == "search.arch_lr"
    assert "search.arch_lr too" in events[0]["message"]


def test_a_recorded_range_test_is_reused_on_resume(tmp_path):
    from types import SimpleNamespace

    from scinas.lr_finder import RangeTest, auto_train, record
    from scinas.rundir import RunDir

    run = RunDir.create(tmp_path / "r", kind="train", config={}, overwrite=False)
    ctx = SimpleNamespace(
        run=run,
        resume=False,
        reporter=Reporter(quiet=True),
        plans={},
        data=SimpleNamespace(name="d"),
    )
    rt = RangeTest([1e-3, 1e-2], [2.0, 1.0], [2.0, 1.5], 1e-3, 1e-2, 2.0, 1.5, "reached 10")
    record(ctx, "train", "train.lr", rt, {"lr": 1e-3})
    t = build_config(overrides=["train.lr=auto"]).train

    def never(_):
        raise AssertionError("the range test ran again")

    assert auto_train(SimpleNamespace(**{**vars(ctx), "resume": True}), never, t).lr == 1e-3
    record(ctx, "train", "train.lr", rt, {"lr": None})  # a failed test is not reused
    with pytest.raises(AssertionError, match="ran again"):
        auto_train(SimpleNamespace(**{**vars(ctx), "resume": True}), never, t)
    run.close()


def test_the_guard_gives_up_after_max_rollbacks():
    trainer = network_trainer_for_test()
    events = []
    trainer.on_event = events.append
    _inject(trainer, [(1, 2)], times=100)
    with pytest.raises(TrainingDiverged, match="Lower the learning rate train.lr"):
        trainer.run()
    assert len(events) == MAX_ROLLBACKS
    assert events[-1]["lr_after"] == pytest.approx(0.05 / 2**MAX_ROLLBACKS)


def test_the_guard_state_survives_a_checkpoint():
    from test_trainer import MemoryCheckpointer

    ckpt = MemoryCheckpointer()
    trainer = network_trainer_for_test(ckpt)
    _inject(trainer, [(1, 2)])
    trainer.run()
    resumed = network_trainer_for_test(ckpt)
    assert resumed.resume()
    assert resumed.rollbacks == 1
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(
        trainer.optimizer.param_groups[0]["lr"]
    )
    assert resumed.guard.state_dict() == trainer.guard.state_dict()


# ----------------------------------------------------------------------------- range test rule


def test_smooth_is_a_bias_corrected_moving_average():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    out = smooth([1.0, 0.0], beta=0.5)
    assert out == pytest.approx([1.0, (0.5 * 0.5) / 0.75])


def test_choose_takes_a_tenth_of_the_rate_at_the_smoothed_minimum():
    lrs = [10 ** (-4 + i / 8) for i in range(40)]
    # a valley: the loss falls until lr 0.1 (index 24) and explodes after it
    losses = [
        2.3 - 2.0 * min(i, 24) / 24 + (0.0 if i <= 24 else 0.5 * (i - 24) ** 2) for i in range(40)
    ]
    rt = choose(lrs, losses)
    k = min(range(40), key=rt.smoothed.__getitem__)
    assert rt.lr_at_min == lrs[k] and rt.lr == pytest.approx(lrs[k] / 10)
    assert 0.01 < rt.lr_at_min <= 0.2


def test_choose_refuses_a_curve_that_never_falls():
    lrs = [10 ** (-4 + i / 8) for i in range(40)]
    flat = [2.3 + 0.05 * ((-1) ** i) for i in range(40)]
    rt = choose(lrs, flat)
    assert rt.lr is None and rt.lr_at_min is None


def test_range_test_on_a_quadratic_finds_a_stable_rate():
    """Gradient descent on f(w) = w^2/2 is stable for lr < 2: the chosen rate must be."""
    w = torch.tensor([5.0])

    def step(lr):
        nonlocal w
        loss = float(0.5 * w @ w)
        w = w - lr * w
        return loss

    rt = range_test(step)
    assert rt.lr is not None and 0.01 < rt.lr < 2.0


def test_range_test_stops_on_a_diverging_step():
    def step(lr):
        if lr > 1:
            raise TrainingDiverged("boom")
        return 1.0 / (1 + lr * 100)

    rt = range_test(step)
    assert "diverged" in rt.stopped and max(rt.lrs) <= 1 and rt.lr is not None


def test_arch_lr_lets_alphas_travel_the_same_distance():
    assert arch_lr_for(60) == pytest.approx(ARCH_TRAVEL / 60)
    assert arch_lr_for(10**6) == ARCH_LR_MIN  # a paper-length search keeps DARTS' 3e-4
    assert arch_lr_for(1) == ARCH_LR_MAX
    assert json.dumps(arch_lr_for(100))  # plain float


# ----------------------------------------------------------------------------- end to end


def _events(out, kind=None):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [e for e in rows if kind is None or e["event"] == kind]


def test_a_diverging_learning_rate_is_rolled_back_and_the_training_completes(tmp_path):
    out = tmp_path / "t"
    cfg = build_config("tiny", overrides=[*TINY, REPORT, "train.lr=20"])
    res = scinas.train(cfg, "DARTS_V2", out, reporter=Reporter(quiet=True))
    div = _events(out, "divergence")
    assert div and all(e["lr_after"] == pytest.approx(e["lr_before"] / 2) for e in div)
    assert div[0]["lr_before"] == 20 and div[0]["phase"] == "training"
    epochs = _events(out, "train_epoch")
    assert epochs[0]["lr"] == pytest.approx(20 / 2 ** len(div))
    assert math.isfinite(res["test"]["loss"]) and (out / "model.pt").is_file()
    assert "Divergence guard" in (out / "report.html").read_text()


def test_search_lr_auto_chooses_the_weight_and_architecture_rates(tmp_path, monkeypatch):
    monkeypatch.setattr("scinas.lr_finder.RANGE_STEPS", 12)
    out = tmp_path / "search"
    cfg = build_config("tiny", overrides=[*TINY, REPORT, "search.lr=auto"])
    assert (cfg.search.lr, cfg.search.arch_lr, cfg.search.lr_min) == ("auto", "auto", None)
    scinas.search(cfg, out, reporter=Reporter(quiet=True))
    search = json.loads((out / "lr_range.json").read_text())["search"]
    assert search["lr"] == pytest.approx(search["test"]["lr_at_min"] / 10)
    assert search["lr_min"] == pytest.approx(search["lr"] / 25)
    assert len(search["test"]["lrs"]) <= 12 and search["test"]["seconds"] > 0
    # TINY: 1 epoch of 2 steps (60 + 60 images, batch 32): the alphas may travel ARCH_TRAVEL,
    # at darts' default cosine rate, whose mean share is (1 + lr_min/lr)/2 of its peak
    mean = (1 + 1 / 25) / 2
    assert search["arch_lr"] == pytest.approx(min(ARCH_LR_MAX, arch_lr_for(2) / mean))
    assert _events(out, "search_epoch")[0]["lr"] == pytest.approx(search["lr"])
    assert [e["phase"] for e in _events(out, "lr_range_test")] == ["search"]
    assert json.loads((out / "config.json").read_text())["search"]["lr"] == "auto"
    assert "Learning-rate range tests" in (out / "report.html").read_text()


def test_train_lr_auto_chooses_the_rate_on_the_training_data(tmp_path):
    out = tmp_path / "train"  # the default 40 steps: a discrete network's are cheap
    sets = [*TINY, "train.lr=auto", "train.max_samples=600", "train.C=8"]
    res = scinas.train(
        build_config("tiny", overrides=sets), "DARTS_V2", out, reporter=Reporter(quiet=True)
    )
    train = json.loads((out / "lr_range.json").read_text())["train"]
    assert train["lr"] == pytest.approx(train["test"]["lr_at_min"] / 10)
    assert train["key"] == "train.lr" and train["test"]["start_loss"] > train["test"]["min_loss"]
    assert _events(out, "train_epoch")[0]["lr"] == pytest.approx(train["lr"])
    assert math.isfinite(res["test"]["loss"])


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(res.exception, SystemExit | None), res.exception
    return res.exit_code, res.stderr


@pytest.mark.parametrize(
    "sets,phrase",
    [
        (["train.lr=auto", "train.lr_min=0.001"], "train.lr_min=0.001 is an absolute rate"),
        (["search.lr=auto", "search.lr_min=0.001"], "search.lr_min=0.001 is an absolute rate"),
        (["train.lr=fast"], "must be a positive finite number or 'auto'"),
    ],
)
def test_lr_auto_with_an_absolute_schedule_floor_is_refused(tmp_path, sets, phrase):
    out = tmp_path / "r"
    code, err = _cli("run", "--out", out, *[a for s in sets for a in ("--set", s)])
    assert code == 2 and err.count("error:") == 1 and phrase in err, err
    assert not out.exists()


def test_a_range_test_where_the_loss_never_falls_stops_with_one_message(tmp_path, monkeypatch):
    """Constant images with balanced labels: nothing can be learned, no rate makes the loss
    fall. The run stops (exit 2) after its directory exists; what it holds is consistent."""
    monkeypatch.setattr("scinas.lr_finder.RANGE_STEPS", 12)
    data = tmp_path / "const.npz"
    np.savez(data, x_train=np.zeros((200, 8, 8), np.uint8), y_train=np.arange(200) % 2)
    out = tmp_path / "t"
    code, err = _cli(
        "train", "--genotype", "DARTS_V2", "--data", data, "--out", out,
        *tiny_sets("train.lr=auto"),
    )  # fmt: skip
    assert code == 2 and err.count("error:") == 1, err
    assert "found no rate at which the loss falls on const" in err
    assert "labels follow the inputs" in err and "give train.lr as a number" in err
    assert not (out / "results.json").exists() and not (out / "model.pt").exists()
    record = json.loads((out / "lr_range.json").read_text())["train"]
    assert record["lr"] is None and len(record["test"]["lrs"]) == 12
    assert [e["event"] for e in _events(out)] == ["lr_range_test"]
    assert not (out / ".lock").exists() and not (out / "checkpoints").exists()


def test_cosine_arch_schedule_follows_the_weights_rate_and_keeps_the_travel(tmp_path):
    """search.arch_lr_schedule=cosine: each architecture step's rate is arch_lr times the
    weights' rate over their peak, arch_lr=auto raises the peak by the cosine's mean (so the
    alphas may travel as far), and the divergence guard's halving of it survives a checkpoint."""
    from scinas.spaces.nb201 import NB201Supernet
    from scinas.strategies.darts import Architect
    from scinas.tasks import Classification

    torch.manual_seed(0)
    model = NB201Supernet(3, 10, (8, 8), C=4, cells_per_stage=1)
    arch = Architect(
        model, Classification(num_outputs=10), lr=0.01, weight_decay=0.0, order=1, follow=0.1
    )
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    for eta in (0.1, 0.05, 0.004):
        arch.step(x, y, x, y, eta, None)
        assert arch.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * eta / 0.1)

    out = tmp_path / "search"
    sets = [*TINY, "search.arch_lr=auto", "search.arch_lr_schedule=cosine"]
    scinas.search(build_config("tiny", overrides=sets), out, reporter=Reporter(quiet=True))
    chosen = json.loads((out / "lr_range.json").read_text())["search"]["arch_lr"]
    mean = (1 + 0.001 / 0.025) / 2  # the fixed search.lr and lr_min: the cosine's mean share
    assert chosen == pytest.approx(min(ARCH_LR_MAX, arch_lr_for(2) / mean))


def test_the_halved_arch_peak_of_a_cosine_schedule_is_checkpointed():
    from scinas.strategies import STRATEGIES
    from scinas.strategies.darts import Architect
    from scinas.tasks import Classification

    model = torch.nn.Linear(2, 2)
    model.arch_parameters = lambda: [torch.nn.Parameter(torch.zeros(3))]
    strategy = STRATEGIES.get("darts")()
    strategy.architect = Architect(
        model, Classification(num_outputs=2), lr=0.01, weight_decay=0.0, order=1, follow=0.1
    )
    strategy.architect.lr *= 0.5  # as the guard's scale_lr does
    state = strategy.state_dict()
    fresh = STRATEGIES.get("darts")()
    fresh.architect = Architect(
        model, Classification(num_outputs=2), lr=0.01, weight_decay=0.0, order=1, follow=0.1
    )
    fresh.load_state_dict(state)
    assert fresh.architect.lr == pytest.approx(0.005)
