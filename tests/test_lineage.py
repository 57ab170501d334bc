"""The lineage search (`scinas.strategies.lineage`): function-preserving morphisms of macro
networks, the paired noise rule, the recipe it searches, and the compare methods built on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import scinas
from conftest import TINY, for_strategy
from scinas.config import build_config
from scinas.data.augment_series import SERIES_AUGMENTS
from scinas.errors import UserError
from scinas.fit import train_augment
from scinas.spaces import load_genotype
from scinas.spaces.macro import MacroArch, MacroNetwork, MacroStage
from scinas.spaces.macro_morph import morphs
from scinas.strategies.branch import (
    AUGMENTS,
    EARLY_MARGIN,
    RECIPE_DIMS,
    Recipe,
    favoured_early,
    judge,
    recipe_moves,
    weakens,
)
from scinas.strategies.lineage import WeightAverage, paired
from scinas.tasks import TASKS

OPTIONS = [
    "search.space=macro",
    "search.widths=[8,16,32,64,128]",
    "search.depths=[0,1,2,3]",
    "search.kernels=[3,5,7]",
    "search.blocks=[basic,bottleneck,inverted]",
]
START = {
    "resnet_tiny": load_genotype("macro:resnet_tiny"),
    "bottlenecks": MacroArch(
        16,
        (
            MacroStage(1, 16, downsample=False, block="bottleneck", expansion=2),
            MacroStage(2, 32, block="bottleneck", expansion=4, kernel=5),
        ),
    ),
    "same-width stages": MacroArch(8, (MacroStage(1, 8, False), MacroStage(1, 8, False))),
}


def _search_section():
    return build_config(
        "tiny", overrides=for_strategy(["search.strategy=lineage", *OPTIONS])
    ).search


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    """A network whose BatchNorms are far from their start (zero residual weights included)."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.randn(m.weight.shape, generator=g)
            m.bias.data = torch.randn(m.bias.shape, generator=g)
            m.running_mean = torch.randn(m.running_mean.shape, generator=g)
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5
    return net


def _all_morphs():
    s = _search_section()
    for name, arch in START.items():
        for hw in ((28, 28), (64, 64)):
            for m in morphs(arch, s.space_own, hw):
                yield pytest.param(arch, hw, m, id=f"{name}-{hw[0]}-{m.name}")


@pytest.mark.parametrize("arch,hw,morph", list(_all_morphs()))
def test_a_morphism_keeps_the_function(arch, hw, morph):
    net = _randomised(MacroNetwork(arch, 3, 5, hw))
    new = morph.apply(net, seed=3)
    assert isinstance(new, MacroNetwork) and new.arch == morph.target != arch
    x = torch.randn(6, 3, *hw)
    for training in (False, True):  # BatchNorm with running and with batch statistics
        net.train(training)
        new.train(training)
        with torch.no_grad():
            before, after = net(x)[0], new(x)[0]
        assert torch.allclose(before, after, rtol=1e-4, atol=1e-5), morph.name
    if morph.name.startswith("widen"):
        assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in net.parameters())


def test_the_morphisms_stay_within_the_options_and_cover_each_kind():
    s = _search_section()
    names = [m.name for m in morphs(START["resnet_tiny"], s.space_own, (28, 28))]
    assert {n.split()[0] for n in names} == {"deepen", "kernel", "widen"}
    # resnet_tiny's first stage reads the stem at its own width: widening it would need a new
    # shortcut, so it is not offered
    assert not any(n.startswith("widen stage 1") for n in names)
    narrow = build_config(
        "tiny",
        overrides=for_strategy(
            [
                "search.strategy=lineage",
                "search.space=macro",
                "search.widths=[16,32,64]",
                "search.depths=[1]",
                "search.kernels=[3]",
            ]
        ),
    ).search
    # depths and kernels at their limits, widths up to 64: only the middle stage can double
    assert [m.name for m in morphs(START["resnet_tiny"], narrow.space_own, (28, 28))] == [
        "widen stage 2 to 64"
    ]


def test_a_widened_network_learns_two_different_features_from_one():
    arch = START["resnet_tiny"]
    morph = next(
        m for m in morphs(arch, _search_section().space_own, (28, 28)) if m.name.startswith("widen")
    )
    new = morph.apply(_randomised(MacroNetwork(arch, 1, 3, (28, 28))), seed=0)
    x, y = torch.randn(8, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    torch.nn.functional.cross_entropy(new(x)[0], y).backward()
    stage = int(morph.name.split()[2]) - 1
    grad = new.stages[stage][0].branch[0].weight.grad
    half = grad.shape[0] // 2
    assert not torch.allclose(grad[:half], grad[half:])  # the split weights break the symmetry


def test_paired_advantage_and_noise():
    inc = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0] * 50, dtype=torch.float)
    better = inc.clone()
    better[1::8] = 1  # right on 50 more samples, wrong on none more
    adv, se = paired(better, inc)
    assert adv == pytest.approx(50 / 400)
    d = (better - inc).double()
    assert se == pytest.approx(float(d.std()) / 400**0.5)
    assert adv > 2 * se
    same_mean = inc[torch.randperm(400, generator=torch.Generator().manual_seed(0))]
    adv, se = paired(same_mean, inc)  # as many right, different samples: no advantage
    assert adv == 0 and se > 0


def test_no_challenger_is_judged_where_even_a_perfect_one_could_not_win():
    from scinas.strategies.branch import out_of_reach

    assert out_of_reach(torch.ones(50), 1.0, 2.0) == (0.0, 0.0)  # every sample right already
    six_of_seven = torch.tensor([1.0] * 6 + [0.0])
    adv, se = out_of_reach(six_of_seven, 1.0, 2.0)  # +1/7 at one standard error: no proof
    assert adv == pytest.approx(1 / 7) and se == pytest.approx(1 / 7)
    assert out_of_reach(six_of_seven, 1.0, 0.5) is None  # a looser rule could accept one
    assert out_of_reach(torch.tensor([1.0, 0.0] * 50), 1.0, 2.0) is None  # room to win
    assert out_of_reach(-torch.rand(50), None, 2.0) is None  # unbounded scores (regression)


@pytest.mark.parametrize("dim", RECIPE_DIMS)
def test_each_recipe_move_changes_one_setting_and_only_along_the_dims_given(dim):
    t = build_config("tiny").train
    start = Recipe.of(t)
    task = TASKS.get("classification")
    moves = recipe_moves(start, [dim], t, 1000, task, (28, 28))
    assert moves, f"no move along {dim}"
    for name, r in moves:
        changed = {k for k in RECIPE_DIMS if getattr(r, k) != getattr(start, k)}
        assert dim in changed and name.startswith(dim.replace("_", " ")), (name, changed)
        # a new optimizer brings its own rate and decay; every other move changes one setting
        assert changed <= ({dim, "lr", "weight_decay"} if dim == "optimizer" else {dim})
    every = recipe_moves(start, RECIPE_DIMS, t, 1000, task, (28, 28))
    others = recipe_moves(start, [d for d in RECIPE_DIMS if d != dim], t, 1000, task, (28, 28))
    assert len(every) == len(others) + len(moves)


def _augmented(t, augment: str, x: torch.Tensor) -> torch.Tensor:
    """What the training augmentation of ``augment`` makes of ``x`` (seeded)."""
    t = t.model_copy(update={"augment": augment})
    hook = train_augment(t, tuple(x.shape[2:]), torch.Generator().manual_seed(0))
    return x if hook is None else hook(x.clone())


@pytest.mark.parametrize(
    "shape,augment",
    [((8, 1, 28, 28), a) for a in ("auto", *AUGMENTS)] + [((8, 1, 96), a) for a in SERIES_AUGMENTS],
)
def test_every_augment_move_changes_what_the_network_trains_with(shape, augment):
    t = build_config("tiny").train
    start = Recipe.of(t.model_copy(update={"augment": augment}))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    task = TASKS.get("classification")
    moves = recipe_moves(start, ["augment"], t, 1000, task, shape[2:])
    assert moves, "no augmentation move"
    for name, m in moves:  # a move that trains as the incumbent does is compute thrown away
        assert not torch.equal(_augmented(t, m.augment, x), _augmented(t, start.augment, x)), name


@pytest.mark.parametrize(
    "change,weaker",
    [
        ({"augment": "none"}, True),
        ({"augment": "rotation"}, False),
        ({"weight_decay": 1e-5}, True),
        ({"weight_decay": 1e-2}, False),
        ({"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.05}, False),
        ({"optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-5}, False),  # not comparable
        ({"lr": 0.5}, False),
        ({"batch_size": 32}, False),
    ],
)
def test_weakening_moves_are_those_that_regularise_less(change, weaker):
    start = Recipe("sgd", 0.1, 0.9, 5e-4, 64, 0.1, "default")
    assert weakens(start, Recipe(**{**start.__dict__, **change})) is weaker
    assert weakens(start, Recipe(**{**start.__dict__, "label_smoothing": 0.0}))


@pytest.mark.parametrize(
    "adv,se,verdict",
    [
        (0.05, 0.01, "accepted"),
        (0.02, 0.01, "within noise"),  # exactly at the margin is not beyond it
        (0.0, 0.0, "within noise"),  # a tie with no noise: neither better nor worse
        (-0.015, 0.01, "within noise"),
        (-0.05, 0.01, "worse"),
        (float("-inf"), float("nan"), "diverged"),
    ],
)
def test_the_verdict_of_a_decision(adv, se, verdict):
    win, said = judge(adv, se, 2.0)
    assert said == verdict and win is (verdict == "accepted")


def test_a_switch_to_an_adaptive_optimizer_needs_the_larger_margin():
    t = build_config("tiny").train
    start = Recipe.of(t)
    assert start.optimizer == "sgd"
    moves = dict(recipe_moves(start, RECIPE_DIMS, t, 1000, TASKS.get("classification"), (28, 28)))
    early = [name for name, m in moves.items() if favoured_early(start, m)]
    assert early == ["optimizer sgd -> adamw"]
    adamw = moves["optimizer sgd -> adamw"]
    # the advantage that won Fashion-MNIST's round at 2.4 standard errors no longer does
    assert judge(0.028, 0.0119, 2.0)[0] and not judge(0.028, 0.0119, 2.0 * EARLY_MARGIN)[0]
    back = dict(recipe_moves(adamw, ["optimizer"], t, 1000, TASKS.get("classification"), (28, 28)))
    assert not favoured_early(adamw, back["optimizer adamw -> sgd"])


def test_without_weaken_no_move_regularises_less():
    t = build_config("tiny", overrides=["train.label_smoothing=0.1"]).train
    start = Recipe.of(t)
    task = TASKS.get("classification")
    every = recipe_moves(start, RECIPE_DIMS, t, 1000, task, (28, 28))
    kept = recipe_moves(start, RECIPE_DIMS, t, 1000, task, (28, 28), weaken=False)
    left_out = {name for name, _ in every} - {name for name, _ in kept}
    assert left_out == {
        f"augment {start.augment} -> none",
        f"weight decay {start.weight_decay:g} -> {start.weight_decay * 0.25:g}",
        "label smoothing 0.1 -> 0",
    }
    assert all(not weakens(start, m) for _, m in kept)


def test_the_weight_average_is_an_exponential_average_of_weights_and_buffers():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    avg = WeightAverage(net, steps=9)  # each step weighs 3/9
    expect = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    for _ in range(4):
        net(torch.randn(2, 3, 8, 8)).square().mean().backward()
        opt.step()
        avg.update()
        for k, v in net.state_dict().items():
            expect[k] = v.clone() if not v.is_floating_point() else expect[k] + (v - expect[k]) / 3
    for k, v in avg.net.state_dict().items():
        torch.testing.assert_close(v, expect[k])
    assert int(avg.net[1].num_batches_tracked) == 4
    assert not torch.equal(avg.net[0].weight, net[0].weight)  # a copy, not the network


def test_decisions_score_the_averaged_weights_not_the_last_step(tmp_path, monkeypatch):
    import scinas.strategies.lineage as lineage

    averaged, scored = [], []
    real_init, real_score = lineage.WeightAverage.__init__, lineage.Lineage.score

    def init(self, net, steps):
        real_init(self, net, steps)
        averaged.append(self.net)

    def score(self, net, proper=None):
        scored.append(net)
        return real_score(self, net)

    monkeypatch.setattr(lineage.WeightAverage, "__init__", init)
    monkeypatch.setattr(lineage.Lineage, "score", score)
    _lineage_run(tmp_path, "search.budget=2")
    assert len(averaged) == 4 and len(scored) >= 5  # the floor's looks, then 2 per round
    assert all(any(n is a for a in averaged) for n in scored[-4:])


def test_the_brier_score_of_classes_against_a_hand_computed_one():
    task = TASKS.get("classification")(num_outputs=2)
    logits = torch.tensor([[0.0, float(torch.tensor(3.0).log())]] * 2)  # p = (0.25, 0.75)
    scores = task.sample_scores(logits, torch.tensor([1, 0]), proper=True)
    assert scores.tolist() == pytest.approx([-(0.25**2) * 2, -(0.75**2) * 2])
    assert task.sample_scores(logits, torch.tensor([1, 0])).tolist() == [1.0, 0.0]
    sure = task.sample_scores(torch.tensor([[-50.0, 50.0]]), torch.tensor([1]), proper=True)
    assert float(sure) == pytest.approx(task.best_proper_score)


@pytest.mark.parametrize("n, m", [(200, 2), (1000, 10)])
def test_auto_scores_are_proper_where_right_or_wrong_cannot_accept_a_point(n, m):
    from scinas.strategies.branch import RESOLUTION, proper_scoring

    inc = torch.tensor([1.0, 0.0] * (n // 2))
    ch = inc.clone()
    ch[1 : 2 * m : 2] = 1  # m samples (a point) turned right, none wrong
    assert float(ch.mean() - inc.mean()) == pytest.approx(RESOLUTION)
    accepted = judge(*paired(ch, inc), 2.0)[0]
    classes, values = TASKS.get("classification")(3), TASKS.get("regression")(1)
    assert proper_scoring("auto", classes, n, 2.0) is (not accepted)
    assert proper_scoring("auto", values, n, 2.0) is False  # minus the loss: continuous already
    assert proper_scoring("metric", classes, 10, 2.0) is False
    assert proper_scoring("proper", classes, 10**6, 2.0) is True


@pytest.mark.parametrize("proper", [False, True], ids=["metric", "proper"])
@pytest.mark.parametrize("task_name", list(TASKS.names()))
def test_sample_scores_average_with_the_primary_metric_and_a_constant_is_worse(task_name, proper):
    cls = TASKS.get(task_name)
    raw = torch.as_tensor(cls.example_targets(60))
    targets = raw.float() if raw.is_floating_point() else raw
    k = 3 if targets.dim() == 1 else targets.shape[1]
    task = cls(num_outputs=k)
    enc = task.encode_targets(targets)
    # a network that knows the answer: one-hot logits for class ids, logits of the right sign
    # for 0/1 labels, the standardised value for regression
    if enc.dim() == 1:
        good = torch.nn.functional.one_hot(enc.long(), k).float() * 4
    elif raw.is_floating_point():
        good = enc.float()
    else:
        good = (2 * enc.float() - 1) * 4
    noisy = good + 0.1 * torch.randn(good.shape, generator=torch.Generator().manual_seed(0))
    scores = task.sample_scores(noisy, targets, proper)
    assert scores.shape == (60,)
    if proper:  # even odds: a constant output
        constant = task.sample_scores(torch.zeros_like(noisy), targets, proper=True)
    else:
        constant = task.constant_scores(targets, targets)
    assert scores.mean() > constant.mean()


def _lineage_run(tmp_path, *extra, data=None, resume=False):
    cfg = build_config(
        "tiny",
        overrides=for_strategy(
            [
                *TINY,
                "search.strategy=lineage",
                "search.start_from=[macro:resnet_tiny]",
                *OPTIONS,
                "search.budget=3",
                "search.segment_steps=4",
                "search.patience=null",  # every round decides; the patience has its own tests
                "search.symmetries=false",  # its own tests: tests/test_symmetry.py
                "search.wait_for_plateau=false",  # a challenger each round; its own tests below
                "search.scores=metric",  # the scripted scores are right (1) or wrong (0)
                *extra,
            ]
        ),
    )
    return scinas.run(cfg, tmp_path / "run", resume=resume)


def test_a_lineage_run_logs_every_decision_and_trains_its_result_on(tmp_path):
    res = _lineage_run(tmp_path, "train.epochs=2")
    run = tmp_path / "run"
    events = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    floor = [e for e in events if e["event"] == "lineage_floor"]
    decisions = [e for e in events if e["event"] == "lineage_decision"]
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert len(floor) == 1 and floor[0]["steps"] > 0
    if floor[0]["above_chance"]:
        assert len(decisions) == 3
        for d in decisions:
            assert d["verdict"] in {"accepted", "within noise", "worse", "diverged"}
            assert d["priced"] == "flops"  # no time budget: the same FLOPs, a replayable run
            # the margin: 2 standard errors, twice that for a switch to an adaptive optimizer
            assert d["margin_z"] == (4.0 if d["move"] == "optimizer sgd -> adamw" else 2.0)
            if d["verdict"] == "accepted":
                assert d["advantage"] > d["margin_z"] * d["noise"]
            elif d["verdict"] != "diverged":
                assert d["advantage"] <= d["margin_z"] * d["noise"]
        assert result["accepted"] + result["rejected"] == 3
    else:
        assert decisions == []
    assert json.loads((run / "genotype.json").read_text()) == result["arch"]
    assert (run / "winner.pt").is_file()  # the final training goes on from the incumbent
    # the lineage's changes, and train.augment=auto's choice: the lineage did not look at the
    # data's symmetries (search.symmetries=false), so the final training did
    assert result["recipe_changes"].get("augment") != "default"
    assert res["recipe"] == result["recipe_changes"] | {"augment": res["recipe"]["augment"]}
    assert "auto_augment" in res
    assert json.loads((run / "recipe.json").read_text()) == res["recipe"]
    assert res["test"]["accuracy"] > 0.3  # 10 digit classes, 120 training images


@pytest.mark.parametrize("amx, chosen", [(True, "bf16"), (False, "fp32")])
def test_the_lineage_trains_its_branches_in_autos_choice(tmp_path, monkeypatch, amx, chosen):
    """The search's segments run in the precision the final training takes (`precision=auto`:
    bf16 for ResNets on a CPU with AMX-BF16), not always in fp32."""
    from scinas import precision
    from scinas.strategies import lineage

    monkeypatch.setattr(precision, "has_amx_bf16", lambda: amx)
    seen = []

    class Spy(precision.Mixed):
        def __init__(self, chosen_here, device_type):
            seen.append(chosen_here)
            super().__init__(chosen_here, device_type)

    monkeypatch.setattr(lineage, "Mixed", Spy)
    _lineage_run(tmp_path, "train.epochs=1", "search.budget=1")
    assert seen and set(seen) == {chosen}


def test_under_a_time_budget_a_challenger_trains_for_the_incumbents_seconds(tmp_path, monkeypatch):
    """Priced in the budget's currency: on a clock where a step costs seconds in proportion to
    the network's parameters, each challenger trains until the incumbent's segment time (its
    steps times its last measured pace) has passed, and its decision logs the steps it took."""
    import math
    import types

    import scinas.strategies.lineage as lineage

    clock = [0.0]
    monkeypatch.setattr(lineage, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    real_output, real_train = lineage.model_output, lineage.Lineage.train

    def output(net, xb):  # one step: a second per 1,000 parameters (whole: exact sums)
        clock[0] += sum(p.numel() for p in net.parameters()) // 1000
        return real_output(net, xb)

    calls = []

    def train(self, b, steps, seed, seconds=None):
        before = b.steps
        real_train(self, b, steps, seed, seconds)
        calls.append((b, seconds, b.steps - before, b.pace))

    monkeypatch.setattr(lineage, "model_output", output)
    monkeypatch.setattr(lineage.Lineage, "train", train)
    _lineage_run(tmp_path, "search.time_budget=100000")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    decisions = [e for e in events if e["event"] == "lineage_decision"]
    assert decisions and all(e["priced"] == "seconds" for e in decisions)
    priced = [i for i, c in enumerate(calls) if c[1] is not None]
    assert [calls[i][2] for i in priced] == [e["challenger_steps"] for e in decisions]
    for i, e in zip(priced, decisions, strict=True):
        _, seconds, done, pace = calls[i]
        incumbent_pace = calls[i + 1][3]  # its segment follows, at its unchanged pace
        assert seconds == pytest.approx(e["steps"] * incumbent_pace)
        assert done == math.ceil(seconds / pace)  # stopped once the seconds had passed
    moves = [e["move"] for e in decisions]
    grown = [e for e in decisions if "stage" in e["move"]]
    assert grown and all(e["challenger_steps"] < e["steps"] for e in grown), moves


def test_decisions_pair_over_more_of_the_validation_split_than_max_val_keeps():
    from types import SimpleNamespace

    from scinas.data import Split
    from scinas.strategies.lineage import decision_split

    y = torch.arange(1000) % 10
    whole = Split(torch.arange(1000).float()[:, None], y)
    capped = Split(whole.x[:100], whole.y[:100])
    data = SimpleNamespace(val=capped, val_whole=whole)
    got = decision_split(data, 400, seed=0)
    assert len(got) == 400 and torch.bincount(got.y).tolist() == [40] * 10  # stratified
    assert set(got.x[:, 0].tolist()) <= set(whole.x[:, 0].tolist())
    again = decision_split(data, 400, seed=0)
    assert torch.equal(again.x, got.x)  # seeded: a resumed lineage pairs the same samples
    assert decision_split(data, 5000, seed=0) is whole  # all of it where it has no more
    assert decision_split(data, None, seed=0) is capped  # None: what data.max_val left
    uncapped = SimpleNamespace(val=whole, val_whole=None)
    assert len(decision_split(uncapped, 400, seed=0)) == 400  # a cap of its own, for its cost
    assert decision_split(uncapped, 4000, seed=0) is whole


def test_a_lineage_decides_on_search_decision_val_samples_not_max_val(tmp_path):
    _lineage_run(tmp_path, "data.max_val=40", "search.decision_val=120", "search.budget=1")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    (floor,) = [e for e in events if e["event"] == "lineage_floor"]
    assert floor["val_samples"] == 120
    # the trainer's epochs still score the 40 data.max_val keeps
    assert json.loads((tmp_path / "run" / "data.json").read_text())["sizes"]["val"] == 40


def test_a_lineage_at_chance_decides_nothing(tmp_path, monkeypatch):
    import scinas.strategies.lineage as lineage

    monkeypatch.setattr(lineage, "FLOOR_MAX", 40)  # the start's looks end sooner
    # a start that never rises above a constant prediction: every score is the constant's
    monkeypatch.setattr(
        lineage.Lineage,
        "score",
        lambda self, net, proper=None: (self.chance_scores(), {"accuracy": 0.1, "loss": 2.3}),
    )
    _lineage_run(tmp_path)
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [e["above_chance"] for e in events if e["event"] == "lineage_floor"] == [False]
    assert not [e for e in events if e["event"] == "lineage_decision"]
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert (
        result["accepted"] == 0 and result["arch"] == load_genotype("macro:resnet_tiny").to_dict()
    )
    # it never looked at the data's symmetries: train.augment=auto's choice is the final
    # training's, not a change to 'default' the lineage did not decide
    assert result["recipe_changes"] == {}


def _five_to_judge(tmp_path):
    """Digits 0 and 1 with a validation split of five (three 0s, two 1s; 0 the training
    majority), as GunPoint's 50 series leave 5 for validation."""
    from scinas.data import load_dataset

    d = load_dataset("digits")
    x = torch.cat([d.train.x, d.val.x])[:, 0].numpy()
    y = torch.cat([d.train.y, d.val.y]).numpy()
    zeros, ones = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    val, train = np.r_[zeros[:3], ones[:2]], np.r_[zeros[3:], ones[2:-20]]
    test = (d.test.y < 2).numpy()
    path = tmp_path / "five.npz"
    np.savez(path, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
             x_test=d.test.x[test][:, 0].numpy(), y_test=d.test.y[test].numpy())  # fmt: skip
    return path


def test_a_split_where_nothing_can_beat_chance_searches_nothing(tmp_path):
    # a network right on all five validation samples is 1.6 standard errors above a constant
    # prediction: no look at the start and no challenger could ever be judged
    _lineage_run(tmp_path, f"data.dataset={_five_to_judge(tmp_path)}", "train.epochs=4")
    run = tmp_path / "run"
    events = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    (stop,) = [e for e in events if e["event"] == "lineage_stop"]
    assert stop["reason"] == "chance"
    assert stop["best_advantage"] == pytest.approx(0.4) and stop["noise"] > 0.2
    assert not [e for e in events if e["event"] in ("lineage_floor", "lineage_decision")]
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert result["steps"] == 0 and result["arch"] == START["resnet_tiny"].to_dict()
    # the start trains from scratch, as alone: no lineage weights to continue from
    assert not (run / "winner.pt").exists()
    assert json.loads((run / "results.json").read_text())["test"]["accuracy"] > 0.5


def test_a_better_challenger_is_accepted_and_a_worse_one_is_not(tmp_path, monkeypatch):
    import scinas.strategies.lineage as lineage

    monkeypatch.setattr(lineage, "out_of_reach", lambda *a: None)  # winners score 1 everywhere

    calls = {"n": 0}
    real_score = lineage.Lineage.score

    def score(self, net, proper=None):
        scores, metrics = real_score(self, net)
        calls["n"] += 1
        # after the floor, each round scores the challenger first: make round 1's far better
        # and round 2's far worse than the incumbent
        if calls["n"] == 2:
            return torch.ones_like(scores), {**metrics, "accuracy": 1.0}
        if calls["n"] == 4:
            return torch.zeros_like(scores), {**metrics, "accuracy": 0.0}
        return scores, metrics

    monkeypatch.setattr(lineage.Lineage, "score", score)
    monkeypatch.setattr(
        lineage.Lineage, "chance_scores", lambda self: torch.zeros(len(self.ctx.data.val))
    )
    _lineage_run(tmp_path, "search.budget=2")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    verdicts = [e["verdict"] for e in events if e["event"] == "lineage_decision"]
    assert verdicts == ["accepted", "worse"]
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert result["accepted"] == 1 and result["rejected"] == 1


def _scripted_scores(monkeypatch, verdicts: dict[int, float]):
    """Round k's challenger scores ``verdicts[k]`` on every sample (1: far better than the
    incumbent, 0: far worse); other rounds and the incumbent score what they really score."""
    import scinas.strategies.lineage as lineage

    real_score = lineage.Lineage.score
    calls = {"n": 0}

    def score(self, net, proper=None):
        scores, metrics = real_score(self, net)
        calls["n"] += 1
        k = calls["n"] // 2  # the floor scores once, then each round: challenger, incumbent
        if calls["n"] % 2 == 0 and k in verdicts:
            v = verdicts[k]
            return torch.full_like(scores, v), {**metrics, "accuracy": v}
        return scores, metrics

    monkeypatch.setattr(lineage.Lineage, "score", score)
    monkeypatch.setattr(
        lineage.Lineage, "chance_scores", lambda self: torch.zeros(len(self.ctx.data.val))
    )
    # a challenger scripted right on every sample leaves its successor at the ceiling, where
    # the search would stop (its own test below)
    monkeypatch.setattr(lineage, "out_of_reach", lambda *a: None)


def test_the_search_stops_after_patience_challengers_in_a_row_fail(tmp_path, monkeypatch):
    _scripted_scores(monkeypatch, {1: 0.0, 2: 1.0, 3: 0.0, 4: 0.0, 5: 1.0})
    _lineage_run(tmp_path, "search.budget=6", "search.patience=2")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    verdicts = [e["verdict"] for e in events if e["event"] == "lineage_decision"]
    # the acceptance in round 2 starts the count again; rounds 3 and 4 spend the patience
    assert verdicts == ["worse", "accepted", "worse", "worse"]
    (stop,) = [e for e in events if e["event"] == "lineage_stop"]
    assert stop["reason"] == "patience" and stop["rejected_in_a_row"] == 2
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert result["accepted"] == 1 and result["rejected"] == 3


def test_without_patience_every_round_decides(tmp_path, monkeypatch):
    _scripted_scores(monkeypatch, {k: 0.0 for k in range(1, 5)})
    _lineage_run(tmp_path, "search.budget=4")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [e["verdict"] for e in events if e["event"] == "lineage_decision"] == ["worse"] * 4
    assert not [e for e in events if e["event"] == "lineage_stop"]


@pytest.mark.parametrize("kind", ["metric", "proper"])
def test_a_lineage_at_the_ceiling_of_its_validation_split_stops_without_a_challenger(
    tmp_path, monkeypatch, kind
):
    import scinas.strategies.lineage as lineage

    real_score = lineage.Lineage.score

    def perfect(self, net, proper=None):  # every validation sample sure and right
        scores, metrics = real_score(self, net, proper)
        best = self.task.best_sample_score if proper is False else self.best
        return torch.full_like(scores, best), {**metrics, "accuracy": 1.0}

    monkeypatch.setattr(lineage.Lineage, "score", perfect)
    _lineage_run(tmp_path, "search.budget=4", f"search.scores={kind}")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [e["scores"] for e in events if e["event"] == "lineage_floor"] == [kind]
    assert not [e for e in events if e["event"] == "lineage_decision"]
    (stop,) = [e for e in events if e["event"] == "lineage_stop"]
    assert stop["reason"] == "ceiling" and stop["best_advantage"] == 0.0
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert result["accepted"] == 0 and result["rejected"] == 0


def _score_sequence(monkeypatch, values: list[float]):
    """The n-th score (the floor's first) is ``values[n]`` on every sample; a constant
    prediction scores -1, so the start is above chance at once."""
    import scinas.strategies.lineage as lineage

    real_score = lineage.Lineage.score
    calls = iter(values)

    def score(self, net, proper=None):
        scores, metrics = real_score(self, net)
        v = next(calls)
        return torch.full_like(scores, v), {**metrics, "accuracy": v}

    monkeypatch.setattr(lineage.Lineage, "score", score)
    monkeypatch.setattr(
        lineage.Lineage, "chance_scores", lambda self: -torch.ones(len(self.ctx.data.val))
    )


def _lineage_rounds(run) -> list[str]:
    events = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return [
        ("alone, gaining" if e["gaining"] else "alone, plateau")
        if e["event"] == "lineage_segment"
        else e["verdict"]
        for e in events
        if e["event"] in ("lineage_segment", "lineage_decision")
    ]


def test_challengers_wait_until_the_incumbent_stops_gaining(tmp_path, monkeypatch):
    # floor 0; alone: 0.2 (gains), 0.4 (gains), 0.4 (plateau); then a challenger round
    # (challenger 0.0, incumbent 0.5: worse, and the incumbent gained: it trains alone again),
    # alone 0.5 (plateau), a challenger round (1.0 against 0.5: accepted)
    _score_sequence(monkeypatch, [0.0, 0.2, 0.4, 0.4, 0.0, 0.5, 0.5, 1.0, 0.5])
    _lineage_run(tmp_path, "search.budget=2", "search.wait_for_plateau=true")
    assert _lineage_rounds(tmp_path / "run") == [
        "alone, gaining",
        "alone, gaining",
        "alone, plateau",
        "worse",
        "alone, plateau",
        "accepted",
    ]
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    rounds = [e["round"] for e in events if e["event"] in ("lineage_segment", "lineage_decision")]
    assert rounds == [1, 2, 3, 4, 5, 6]
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert result["accepted"] == 1 and result["rejected"] == 1


def test_without_a_time_budget_the_wait_for_a_plateau_is_bounded(tmp_path, monkeypatch):
    import scinas.strategies.lineage as lineage

    # the incumbent gains beyond noise in every segment alone
    _score_sequence(monkeypatch, [0.0, 0.1, 0.2, 0.3, 0.4, 0.0, 0.45])
    _lineage_run(tmp_path, "search.budget=1", "search.wait_for_plateau=true")
    assert _lineage_rounds(tmp_path / "run") == ["alone, gaining"] * lineage.PLATEAU_WAIT + [
        "worse"
    ]


def test_challengers_change_the_recipe_and_the_architecture_in_turn(tmp_path, monkeypatch):
    _scripted_scores(monkeypatch, {k: 0.0 for k in range(1, 5)})  # every challenger worse
    _lineage_run(tmp_path, "search.budget=4")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    moves = [e["move"] for e in events if e["event"] == "lineage_decision"]
    assert len(moves) == 4
    morph = ("deepen", "kernel", "widen")
    assert [m.split()[0] in morph for m in moves] == [False, True, False, True], moves
    # the recipe's changes of the rate, optimizer or augmentation come first
    assert all(m.split()[0] in ("lr", "optimizer", "augment") for m in moves[::2]), moves
    assert not any(m.endswith("-> none") for m in moves), moves  # search.weaken is off
    assert len(set(moves)) == 4


def test_the_next_moves_alternate_kinds_and_fall_back_to_the_kind_left():
    from scinas.strategies.branch import Branch, next_moves

    r = Recipe.of(build_config("tiny").train)
    b = Branch(START["resnet_tiny"], None, r, None)
    every = [("deepen", object()), ("widen", object())] + recipe_moves(
        r, RECIPE_DIMS, build_config("tiny").train, 1000, TASKS.get("classification")(3), (8, 8)
    )
    names = lambda opts: {n for n, _ in opts}  # noqa: E731
    first = names(next_moves(b, every, set()))
    assert first and all(n.split()[0] in ("lr", "optimizer", "augment") for n in first)
    one = next(iter(first))
    assert names(next_moves(b, every, {one})) == {"deepen", "widen"}
    assert one not in names(next_moves(b, every, {one, "deepen"}))
    assert not names(next_moves(b, every, {one, "deepen"})) & {"deepen", "widen"}
    # the architecture's moves all tried: the recipe's go on
    assert names(next_moves(b, every, {"deepen", "widen"})) <= first
    recipe_only = [o for o in every if isinstance(o[1], Recipe)]
    assert names(next_moves(b, recipe_only, {one})) == first - {one}


def test_an_interrupted_lineage_resumes_from_its_last_round_identically(tmp_path, monkeypatch):
    import scinas.strategies.lineage as lineage
    from scinas.signals import Interrupted

    def lineage_events(run):
        events = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        return [
            {k: v for k, v in e.items() if k not in ("time", "seconds")}
            for e in events
            if e["event"].startswith("lineage")
        ]

    # with the symmetry step and the wait for a plateau, which the checkpoint keeps as well
    both = (
        "search.budget=3",
        "search.patience=2",
        "search.symmetries=true",
        "search.wait_for_plateau=true",
    )
    reference = _lineage_run(tmp_path / "ref", *both)
    real_train = lineage.Lineage.train

    def train(self, b, steps, seed, seconds=None):
        if any(e["event"] in ("lineage_decision", "lineage_segment") for e in self.events):
            raise Interrupted("stopped by the test")
        return real_train(self, b, steps, seed, seconds)

    monkeypatch.setattr(lineage.Lineage, "train", train)
    with pytest.raises(Interrupted):
        _lineage_run(tmp_path, *both)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    monkeypatch.setattr(lineage.Lineage, "train", real_train)
    resumed = _lineage_run(tmp_path, *both, resume=True)
    assert lineage_events(tmp_path / "run") == lineage_events(tmp_path / "ref" / "run")
    assert resumed["test"] == reference["test"]


def test_the_hpo_method_keeps_the_architecture(tmp_path):
    from scinas.compare import compare

    cfg = build_config("tiny", overrides=[*TINY, "compare.budget=null", "train.epochs=1"])
    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"budget": 2})})
    res = compare(cfg, tmp_path / "cmp", seeds=1, methods=["hpo"])
    run = tmp_path / "cmp" / "hpo" / "seed0"
    conf = json.loads((run / "config.json").read_text())
    assert conf["search"]["strategy"] == "lineage" and conf["search"]["morph"] is False
    assert (
        json.loads((run / "genotype.json").read_text())
        == load_genotype("macro:resnet_tiny").to_dict()
    )
    assert res["methods"]["hpo"]["seeds_done"] == [0]


@pytest.mark.parametrize(
    "setting,needle",
    [
        ("train.lr=-0.1", "train.lr"),
        ("train.optimizer=adam", "train.optimizer"),
        ("train.augment=flip", "train.augment"),
        ("train.label_smoothing=1.5", "train.label_smoothing"),
        ("train.weight_decay=-1", "train.weight_decay"),
        ("search.noise_z=0", "search.noise_z"),
        ("search.patience=0", "search.patience"),
    ],
)
def test_a_recipe_setting_out_of_range_is_refused_before_anything_runs(tmp_path, setting, needle):
    with pytest.raises(UserError, match=needle.replace(".", r"\.")):
        cfg = build_config(
            "tiny", overrides=for_strategy([*TINY, "search.strategy=lineage", *OPTIONS, setting])
        )
        scinas.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_label_smoothing_is_refused_for_regression(tmp_path, rotated_mnist_npz):
    cfg = build_config(
        "tiny",
        overrides=[*TINY, f"data.dataset={rotated_mnist_npz}", "train.label_smoothing=0.1"],
    )
    with pytest.raises(UserError, match="label_smoothing"):
        scinas.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_adamw_and_label_smoothing_reach_the_trainer(tmp_path):
    from scinas.placement import Placement
    from scinas.train import network_trainer

    task = TASKS.get("classification")(num_outputs=3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(16, 1, 3, 4), torch.arange(16) % 3
    place = Placement(torch.device("cpu"), False, torch.zeros(1), torch.ones(1))
    batches = place.batches(x, y, 8)
    trainer = network_trainer(
        net,
        task,
        batches,
        batches,
        epochs=1,
        lr=0.002,
        lr_min=0.0,
        momentum=0.8,
        weight_decay=0.05,
        grad_clip=5.0,
        optimizer="adamw",
        label_smoothing=0.1,
    )
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.8, 0.999)
    loss, out, _ = trainer.hooks.loss(((x, y),), trainer.optimizer, "a test")
    expected = torch.nn.functional.cross_entropy(net(x), y, label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item())
    assert loss.item() != pytest.approx(torch.nn.functional.cross_entropy(net(x), y).item())
    res = scinas.run(
        build_config(
            "tiny",
            overrides=[
                *TINY,
                "train.optimizer=adamw",
                "train.lr=0.003",
                "train.label_smoothing=0.1",
            ],
        ),
        tmp_path / "run",
    )
    conf = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (conf["optimizer"], conf["label_smoothing"]) == ("adamw", 0.1)
    assert res["test"]["loss"] == res["test"]["loss"]  # finite: trained without diverging


def test_recipe_dims_left_out_stay_fixed(tmp_path, monkeypatch):
    import scinas.strategies.lineage as lineage

    # every challenger is judged far better, so each accepted change shows in the recipe
    real_score = lineage.Lineage.score
    calls = {"n": 0}

    def score(self, net, proper=None):
        scores, metrics = real_score(self, net)
        calls["n"] += 1
        better = calls["n"] % 2 == 0  # the floor's score is call 1, then challenger, incumbent
        return (torch.ones_like(scores) if better else torch.zeros_like(scores)), metrics

    monkeypatch.setattr(lineage.Lineage, "score", score)
    monkeypatch.setattr(lineage, "out_of_reach", lambda *a: None)  # winners score 1 everywhere
    monkeypatch.setattr(
        lineage.Lineage, "chance_scores", lambda self: -torch.ones(len(self.ctx.data.val))
    )
    _lineage_run(
        tmp_path,
        "search.morph=false",
        "search.recipe_dims=[augment,label_smoothing]",
        "search.budget=4",
    )
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    moves = [e["move"] for e in events if e["event"] == "lineage_decision"]
    assert len(moves) == 4
    assert all(m.startswith(("augment", "label smoothing")) for m in moves)
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert set(result["recipe_changes"]) <= {"augment", "label_smoothing"}
    assert result["accepted"] == 4 and result["recipe_changes"]


def test_architecture_challengers_stay_under_the_cost_cap(tmp_path, monkeypatch):
    import scinas.strategies.lineage as lineage

    seen = []
    real_moves = lineage.Lineage.moves

    def moves(self, b):
        out = real_moves(self, b)
        seen.append((self, [m for _, m in out if not isinstance(m, lineage.Recipe)]))
        return out

    monkeypatch.setattr(lineage.Lineage, "moves", moves)
    _lineage_run(tmp_path, "search.max_cost=1.5", "search.recipe=false", "search.budget=2")
    assert seen
    for lin, morphs_ in seen:
        assert morphs_  # cheap morphisms remain (deeper first stage, bigger kernels)
        for m in morphs_:
            assert lin.cost(m.target, lineage.Recipe.of(lin.cfg.train)) <= (
                1.5 * lin.start_cost + 1e-6
            )
    # widening the last stage to 128 quadruples its convolutions: over the cap
    names = {m.name for _, ms in seen for m in ms}
    assert "widen stage 3 to 128" not in names
