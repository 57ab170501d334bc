"""The one trainer: a final network and a supernet (DARTS, GDAS, rsws) stopped anywhere resume to
the same bits, and both phases plan their time budgets with the same planner."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch
from torch import nn

import scinas.budget
import scinas.fit
import scinas.strategies.oneshot
from scinas.config import build_config
from scinas.context import setup
from scinas.placement import Placement
from scinas.progress import Reporter
from scinas.signals import STOP, Interrupted
from scinas.strategies import create_strategy
from scinas.strategies.oneshot import build_supernet, search_halves
from scinas.tasks import Classification
from scinas.train import network_trainer


class MemoryCheckpointer:
    """A `scinas.checkpoint.Checkpointer` in memory, loading as it does (weights_only)."""

    enabled = True
    folder = "memory"  # where its checkpoints are, as messages name it

    def __init__(self):
        self.saved: list[bytes] = []

    def save(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        self.saved.append(buf.getvalue())

    def load(self) -> dict | None:
        if not self.saved:
            return None
        return torch.load(io.BytesIO(self.saved[-1]), weights_only=True)


def stop_at(label: str, step: int):
    """A progress `track` that requests a stop during the ``step``-th step of the pass labelled
    ``label`` (as SIGTERM would)."""

    def track(items, total, description):
        for i, item in enumerate(items):
            if description == label and i + 1 == step:
                STOP.requested = True
            yield item

    return track


def interrupted(trainer) -> None:
    try:
        with pytest.raises(Interrupted):
            trainer.run()
    finally:
        STOP.requested = False


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# ----------------------------------------------------------------------------- final network


def network_trainer_for_test(checkpointer=None, track=None, on_epoch=None, epochs=3, on_event=None):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 3
    place = Placement(torch.device("cpu"), True, (100.0,), (60.0,))
    model = place.module(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.3),  # draws from the global RNG
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
    )
    aug = torch.Generator().manual_seed(2)
    trainer = network_trainer(
        model,
        Classification(num_outputs=3),
        place.batches(x, y, 8, shuffle=True, seed=3),
        place.batches(x, y, 16),
        epochs=epochs,
        lr=0.05,
        lr_min=0.0,
        momentum=0.9,
        weight_decay=3e-4,
        grad_clip=5.0,
        augment=lambda xb: xb + 0.1 * torch.randn(xb.shape, generator=aug),
        generators={"augment": aug},
        checkpointer=checkpointer,
        track=track,
        on_epoch=on_epoch,
        steps_per_epoch=4,  # of 5: each epoch a fresh shuffle, its tail unused
    )
    trainer.on_event = on_event
    return trainer


@pytest.mark.parametrize(
    "label,step",
    [("train 1/3", 2), ("train 2/3", 4), ("train 3/3", 1)],
    ids=["mid-epoch", "last-step-of-an-epoch", "first-step-of-the-last-epoch"],
)
def test_a_final_network_resumes_mid_epoch_to_the_same_bits(label, step):
    reference = network_trainer_for_test()
    expected = reference.run()
    ckpt = MemoryCheckpointer()
    interrupted(network_trainer_for_test(ckpt, track=stop_at(label, step)))
    torch.rand(5)  # the resumed run restores the global RNG, whatever it is now
    resumed = network_trainer_for_test(ckpt)
    assert resumed.resume() and resumed.start_step == step
    assert without_seconds(resumed.run()) == without_seconds(expected)
    assert same(resumed.model.state_dict(), reference.model.state_dict())


@pytest.mark.parametrize("step", [1, 2], ids=["mid-partial-epoch", "end-of-partial-epoch"])
def test_a_partial_last_epoch_resumes_to_the_same_bits(step):
    """A last epoch planned partial (2 of 4 steps, as a deadline re-plan leaves it) and stopped
    in it resumes from the checkpoint alone to the same weights and records: the partial plan
    and its schedule are part of the checkpoint."""

    def partial(trainer):
        trainer.last_steps = 2
        trainer.scheduler.T_max = trainer.planned_steps()
        return trainer

    reference = partial(network_trainer_for_test())
    expected = reference.run()
    assert reference.scheduler.last_epoch == 4 + 4 + 2
    ckpt = MemoryCheckpointer()
    interrupted(partial(network_trainer_for_test(ckpt, track=stop_at("train 3/3", step))))
    resumed = network_trainer_for_test(ckpt)  # as a resumed run builds it: a whole last epoch
    assert resumed.resume() and (resumed.start_epoch, resumed.start_step) == (2, step)
    assert resumed.last_steps == 2 and resumed.scheduler.T_max == 10
    assert without_seconds(resumed.run()) == without_seconds(expected)
    assert same(resumed.model.state_dict(), reference.model.state_dict())


def test_a_final_network_stopped_between_epochs_resumes_to_the_same_bits():
    reference = network_trainer_for_test()
    expected = reference.run()
    ckpt = MemoryCheckpointer()

    def stop_after_first(stats):
        if stats.epoch == 1:
            STOP.requested = True

    interrupted(network_trainer_for_test(ckpt, on_epoch=stop_after_first))
    resumed = network_trainer_for_test(ckpt)
    assert resumed.resume() and (resumed.start_epoch, resumed.start_step) == (1, 0)
    assert without_seconds(resumed.run()) == without_seconds(expected)
    assert same(resumed.model.state_dict(), reference.model.state_dict())


# ----------------------------------------------------------------------------- supernet


@pytest.fixture(scope="module")
def contexts():
    made = {}

    def ctx(strategy: str):
        if strategy not in made:
            cfg = build_config(
                "tiny",
                overrides=[
                    f"search.strategy={strategy}",
                    "device=cpu",
                    "search.epochs=2",
                    "search.C=4",
                    "search.layers=3",
                    "search.max_samples=160",
                    "search.batch_size=32",
                    "data.max_val=40",
                    # a number: these trainers are built without the run's auto resolution
                    *(["search.arch_lr=3e-4"] if strategy == "darts" else []),
                ],
            )
            made[strategy] = setup(cfg, Reporter(quiet=True))
        return made[strategy]

    return ctx


def supernet_trainer(ctx, checkpointer=None, track=None):
    strategy = create_strategy(ctx.cfg.search.strategy)
    torch.manual_seed(ctx.cfg.seed)
    model = ctx.place.module(build_supernet(ctx))
    strategy.configure(model, ctx)
    trainer = strategy.trainer(
        ctx, model, search_halves(ctx, ctx.cfg.seed), None, checkpointer=checkpointer
    )
    trainer.track = track
    return trainer


@pytest.mark.parametrize("strategy", ["darts", "gdas", "drnas", "rsws"])
def test_a_supernet_resumes_mid_epoch_to_the_same_bits(contexts, strategy):
    """GDAS and DrNAS sample from the global RNG and keep an arch optimiser; rsws samples paths
    from its own numpy generator; DARTS averages BatchNorm statistics over the epoch's tail."""
    ctx = contexts(strategy)
    reference = supernet_trainer(ctx)
    assert reference.n_steps >= 2
    expected = reference.run()
    ckpt = MemoryCheckpointer()
    interrupted(supernet_trainer(ctx, ckpt, track=stop_at("search 2/2", 1)))
    torch.rand(5)
    resumed = supernet_trainer(ctx, ckpt)
    assert resumed.resume() and (resumed.start_epoch, resumed.start_step) == (1, 1)
    got = resumed.run()
    assert [h["genotype"] for h in got] == [h["genotype"] for h in expected]
    drop = ("seconds", "diagnostics")  # diagnostics: the same alphas, compared below
    assert [{k: v for k, v in h.items() if k not in drop} for h in got] == [
        {k: v for k, v in h.items() if k not in drop} for h in expected
    ]
    assert same(resumed.model.state_dict(), reference.model.state_dict())


# ----------------------------------------------------------------------------- planning


def test_both_phases_plan_with_the_one_planner_and_leave_the_rng_alone(contexts, monkeypatch):
    ctx = contexts("gdas")
    calls = []
    real = scinas.budget.plan_phase

    def spy(ctx, build, **kw):
        calls.append(kw["key"])
        return real(ctx, build, **kw)

    monkeypatch.setattr(scinas.fit, "plan_phase", spy)
    monkeypatch.setattr(scinas.strategies.oneshot, "plan_phase", spy)
    search = ctx.cfg.search.model_copy(update={"time_budget": 1e4})
    train = ctx.cfg.train.model_copy(
        update={"time_budget": 1e4, "C": 4, "layers": 3, "batch_size": 32}
    )
    bctx = replace(ctx, cfg=ctx.cfg.model_copy(update={"search": search, "train": train}))
    genotype = build_supernet(bctx).genotype()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    search_plan = create_strategy("gdas").plan_budget(bctx)
    train_plan = scinas.fit.plan_training(bctx, genotype, train, 100)
    assert torch.equal(torch.get_rng_state(), state)
    assert calls == ["search.time_budget", "train.time_budget"]
    assert search_plan.step_seconds > 0 and search_plan.eval_seconds > 0
    assert search_plan.full_epoch_steps == supernet_trainer(bctx).full_steps
    assert train_plan.full_epoch_steps == 4 and train_plan.step_seconds > 0


def test_no_training_step_starts_after_the_deadline():
    """`fit(deadline=...)`: a deadline already past lets one step run (an epoch needs one), then
    that epoch is validated and training ends; without one every planned epoch runs."""
    import time

    from conftest import TINY
    from scinas.config import build_config
    from scinas.context import setup
    from scinas.fit import fit
    from scinas.progress import Reporter
    from scinas.spaces import load_genotype

    cfg = build_config("tiny", overrides=[*TINY, "train.epochs=3"])
    s = setup(cfg, Reporter(quiet=True))
    x, y = s.data.train.x[:96], s.data.train.y[:96]
    arch = load_genotype("resnet_tiny")
    _, cut = fit(s, arch, cfg.train, x, y, deadline=time.perf_counter())
    assert len(cut) == 1
    _, full = fit(s, arch, cfg.train, x, y)
    assert len(full) == 3


@pytest.mark.parametrize(
    "planned,left,epochs,last",
    [
        (10, 20.6, 24, 2),
        (10, 4.6, 8, 2),
        (10, 7.2, 10, None),
        (10, 7.6, 11, 2),
        (10, 8.05, 11, None),
        (10, 6.95, 10, None),
        (10, 0.6, 4, 2),
        (10, 0.1, 3, None),
        (110, 108.5, 110, None),
        (110, 104.6, 108, 2),
    ],
    ids=[
        "faster-than-planned",
        "slower-than-planned",
        "ends-early-by-under-a-quarter-epoch",
        "ends-early-by-a-quarter-epoch-and-more",
        "ends-early-by-one-epoch-and-more",
        "overruns-by-under-a-tenth",
        "time-for-part-of-an-epoch",
        "no-time-left",
        "early-by-under-2-percent-of-the-time-left",
        "late-by-over-2-percent-of-the-time-left",
    ],
)
def test_the_epochs_left_are_replanned_to_end_at_the_deadline(planned, left, epochs, last):
    """With a deadline, after 3 of ``planned`` epochs that took 1 s each (the first one, the
    warm-up, not counted; 4 steps of 0.25 s each, since no step loop was timed), the epochs are
    re-planned to fill the ``left`` seconds: the whole epochs that fit, then a partial last one
    of the steps that fit in the rest. The cosine schedule then reaches its floor at the new
    last step, and the change is an event. A plan within a quarter of an epoch early (a tenth
    of one late), or 2% of the time left, of the deadline is kept."""
    import time

    events = []
    trainer = network_trainer_for_test(epochs=planned, on_event=events.append)
    assert trainer.n_steps == 4
    now = time.perf_counter()
    trainer.epoch_ends = [now - 9.0, now - 2.0, now - 1.0, now]  # 7 s, then 1 s and 1 s
    trainer.deadline = now + left
    trainer.fit_to_deadline(3)
    assert trainer.epochs == trainer.hooks.epochs == epochs
    assert trainer.last_steps == last
    assert trainer.scheduler.T_max == (epochs - 1) * 4 + (last or 4)
    if epochs == planned:
        assert events == []
    else:
        (e,) = events
        assert e["event"] == "budget_replan" and e["epochs_before"] == planned
        assert e["epochs"] == epochs and e["epoch_seconds"] == pytest.approx(1.0)
        assert e["last_epoch_steps"] == last


def test_a_partial_last_epoch_pays_for_its_validation_first():
    """The time an epoch spends outside its step loop (validation, checkpoint) is measured from
    the step loops, and a partial last epoch gets the steps that fit after paying it: epochs of
    1 s whose 4 steps took 0.5 s leave 0.95 - 0.5 s of a 0.95 s remainder for 3 steps."""
    import time

    trainer = network_trainer_for_test(epochs=10)
    now = time.perf_counter()
    trainer.epoch_ends = [now - 9.0, now - 2.0, now - 1.0, now]
    trainer.epoch_loops = [(6.0, 4, 0.4), (0.5, 4, 0.4), (0.5, 4, 0.4)]  # the first not counted
    trainer.deadline = now + 7.95
    trainer.fit_to_deadline(3)
    assert (trainer.epochs, trainer.last_steps) == (11, 3)
    assert trainer.scheduler.T_max == 10 * 4 + 3


def test_a_deadline_keeps_the_time_of_the_testing_after_training():
    """``finish_passes``: the work after training (testing on a split that many times the
    validation split) is paid from the same deadline. Its seconds come from the measured time an
    epoch spends validating (0.5 s here, so 1 s for 2 passes): the plan of the test above, with
    1 s more left, and the steps stop 1 s before the deadline."""
    import time

    trainer = network_trainer_for_test(epochs=10)
    trainer.finish_passes = 2.0
    now = time.perf_counter()
    trainer.epoch_ends = [now - 9.0, now - 2.0, now - 1.0, now]
    trainer.epoch_loops = [(6.0, 4, 0.5), (0.5, 4, 0.5), (0.5, 4, 0.5)]  # 0.5 s validating
    trainer.deadline = now + 8.95
    trainer.fit_to_deadline(3)
    assert trainer.finish_seconds == pytest.approx(1.0)
    assert (trainer.epochs, trainer.last_steps) == (11, 3)
    trainer.deadline = time.perf_counter() + 0.9  # no step starts: its testing would overrun
    assert trainer.past_deadline()
    trainer.finish_passes = trainer.finish_seconds = 0.0
    assert not trainer.past_deadline()


def test_a_deadline_keeps_the_time_of_the_test_time_views():
    """Test-time views (train.tta, or those train.augment=auto finds as it trains) cost a test
    pass each, and their check on the validation split: 2 views after a 2-pass test are
    (2 + 1) * (1 + 2) passes of 0.5 s."""
    import time

    trainer = network_trainer_for_test(epochs=10)
    found: list[str] = []
    trainer.finish_views = lambda: len(found)
    trainer.finish_passes = 2.0
    now = time.perf_counter()
    trainer.epoch_ends = [now - 9.0, now - 2.0, now - 1.0, now]
    trainer.epoch_loops = [(6.0, 4, 0.5), (0.5, 4, 0.5), (0.5, 4, 0.5)]
    trainer.deadline = now + 100.0
    trainer.fit_to_deadline(3)
    assert trainer.finish_seconds == pytest.approx(1.0)  # no view yet: the test alone
    found += ["hflip", "vflip"]
    trainer.fit_to_deadline(3)
    assert trainer.finish_seconds == pytest.approx(4.5)


def test_a_partial_last_epoch_takes_its_planned_steps_and_ends_the_schedule():
    """A plan whose last epoch is partial runs exactly its steps: the whole epochs, then the
    planned part of the last one, validated like any epoch, and the learning rate reaches its
    floor (0 here) at that last step, not before and not cut above it."""
    trainer = network_trainer_for_test(epochs=3)
    trainer.last_steps = 2
    trainer.scheduler.T_max = trainer.planned_steps()
    assert trainer.planned_steps() == 4 + 4 + 2
    history = trainer.run()
    assert len(history) == 3 and trainer.scheduler.last_epoch == 10
    assert [steps for _, steps, _ in trainer.epoch_loops] == [4, 4, 2]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert "loss" in history[-1]["val"]


def test_a_run_with_a_deadline_fills_it_and_ends_its_schedule():
    """Planned for 3 epochs with time for many more, training re-plans after each epoch from
    its measured epochs: it runs more than 3, every epoch's record names the re-planned total,
    and the learning rate ends near its floor instead of being cut mid-schedule."""
    import time

    trainer = network_trainer_for_test(epochs=3)
    start = time.perf_counter()
    trainer.deadline = start + 1.0
    history = trainer.run()
    took = time.perf_counter() - start
    assert len(history) > 3
    assert history[-1]["epochs"] == len(history)
    # no epoch starts after the deadline: the run ends within one epoch of it (an epoch is
    # ~10 ms alone; the bound follows the measured ones, so a loaded machine does not fail it)
    assert took < 1.0 + 2 * max(h["seconds"] for h in history) + 0.25
    assert trainer.optimizer.param_groups[0]["lr"] < 0.2 * 0.05


def test_an_epoch_slower_than_the_measured_ones_ends_the_plan_with_it():
    """An epoch that overruns what the measured ones promised (a loaded machine) leaves no time
    for the epochs planned after it: the run ends with it, and its record, the trainer and the
    events name the epochs that ran (its record named the plan made before it ran)."""
    import time

    events = []

    def slow_fifth(stats):
        if stats.epoch == 5:  # runs past the deadline, as a descheduled epoch does
            time.sleep(max(0.0, trainer.deadline - time.perf_counter()) + 0.05)

    trainer = network_trainer_for_test(epochs=3, on_epoch=slow_fifth, on_event=events.append)
    trainer.deadline = time.perf_counter() + 1.0
    history = trainer.run()
    assert len(history) == 5 == history[-1]["epochs"] == trainer.epochs
    assert history[-2]["epochs"] > 5  # planned to fill the second
    assert events[-1]["event"] == "budget_replan" and events[-1]["epochs"] == 5


def test_epochs_replanned_to_a_deadline_are_checkpointed_and_resumed():
    """A run re-planned to its deadline and stopped keeps the re-planned epochs when resumed
    (the scheduler's state holds their cosine): it ends where the schedule reaches its floor,
    not at the epochs first planned."""
    import time

    ckpt = MemoryCheckpointer()
    replanned = []

    def stop_after_second(stats):
        if stats.epoch == 2:
            replanned.append(stats.epochs)
            STOP.requested = True

    first = network_trainer_for_test(ckpt, on_epoch=stop_after_second, epochs=3)
    first.deadline = time.perf_counter() + 1.0  # time for many more than 3
    interrupted(first)
    assert replanned[0] > 3
    resumed = network_trainer_for_test(ckpt, epochs=3)  # as a resumed run builds it
    assert resumed.resume() and resumed.epochs == resumed.hooks.epochs == replanned[0]
    assert resumed.last_steps == first.last_steps  # a partial last epoch stays partial
    assert resumed.scheduler.T_max == first.planned_steps() == resumed.planned_steps()
    history = resumed.run()
    assert len(history) == history[-1]["epochs"] == replanned[0]
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_a_time_budgeted_training_is_replanned_to_end_within_its_budget(tmp_path, monkeypatch):
    """``train.time_budget``: the phase ends at its start plus the budget. A plan from timed
    steps that promises far more epochs than fit (as when the steps slow down after they were
    timed) is re-planned after the first epochs, and the run ends within an epoch of the budget
    instead of running every planned epoch (about 2.5 times the budget, as it did before this)."""
    import dataclasses
    import json

    import scinas
    import scinas.pipeline
    from conftest import TINY

    real = scinas.pipeline.budget_plan
    planned = 400  # ~2.5x what fits in the budget below (158 epochs alone on 2 cores)

    def optimistic(ctx, run, phase, make):
        return dataclasses.replace(real(ctx, run, phase, make), epochs=planned)

    monkeypatch.setattr(scinas.pipeline, "budget_plan", optimistic)
    budget = 4.0
    cfg = build_config("tiny", overrides=[*TINY, f"train.time_budget={budget}"])
    out = tmp_path / "train"
    res = scinas.train(cfg, "resnet_tiny", out, reporter=Reporter(quiet=True))
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "train_epoch"]
    replans = [e for e in events if e["event"] == "budget_replan"]
    assert replans and replans[0]["epochs_before"] == planned
    assert len(epochs) < planned
    # the schedule was fitted to the epochs that ran (a last one cut by the deadline aside)
    assert epochs[-1]["epochs"] - len(epochs) <= 1
    # no epoch starts after the deadline (the budget counts from the phase's start)
    longest = max(e["seconds"] for e in epochs)
    assert res["train_seconds"] < budget + 2 * longest + 1.0
