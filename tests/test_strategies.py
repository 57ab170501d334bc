"""Search strategies: samplers, decision spaces, GDAS sampling, rsws paths, studies and resume."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from scinas.config import build_config
from scinas.errors import UserError
from scinas.spaces.common import gumbel_hard
from scinas.spaces.darts import darts_decisions
from scinas.spaces.darts.genotype import Genotype, edge_index
from scinas.spaces.darts.supernet import Supernet, genotype_paths
from scinas.spaces.nb201 import NB201_OPS, NB201Arch, nb201_decisions
from scinas.strategies import STRATEGIES, create_strategy
from scinas.strategies.blackbox import (
    best_trial,
    check_storage_url,
    open_study,
    run_study,
)
from scinas.strategies.gdas import temperature
from scinas.strategies.samplers import (
    RegularizedEvolutionSampler,
    ReinforceSampler,
)

# A toy objective on the NB201 decisions: +1 per nor_conv_3x3 edge, +0.5 per nor_conv_1x1.
VALUE = {"nor_conv_3x3": 1.0, "nor_conv_1x1": 0.5}


def toy(arch):
    return sum(VALUE.get(op, 0.0) for op in arch.ops), {}


def run_toy(sampler, budget, storage=None, name="toy"):
    study = open_study(storage, name, sampler)
    run_study(study, nb201_decisions(), toy, budget)
    return study


def test_all_strategies_registered():
    assert set(STRATEGIES.names()) >= {
        "darts",
        "gdas",
        "rsws",
        "random",
        "evolution",
        "tpe",
        "reinforce",
    }
    with pytest.raises(UserError, match="Did you mean 'gdas'"):
        create_strategy("gdaz")


BLACK_BOX = [n for n in STRATEGIES if STRATEGIES.get(n).kind == "black-box"]


def make_sampler(strategy, s, seed):
    return STRATEGIES.get(strategy).make_sampler(s, seed)


@pytest.mark.parametrize("strategy", BLACK_BOX)
def test_black_box_samplers_are_seeded_and_improve_on_toy(strategy):
    from scinas.strategies.samplers import UniformSampler

    s = build_config("tiny", search__strategy=strategy).search
    sampler = make_sampler(strategy, s, seed=3)
    a = run_toy(sampler, 60, name="a")
    b = run_toy(make_sampler(strategy, s, seed=3), 60, name="b")
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert len(a.trials) == 60
    # max is 6; the guided samplers find most of it in 60 trials, random ones less (zero-cost's
    # guidance is its proxy, before the study: its sampler is random)
    guided = not isinstance(sampler, UniformSampler)
    assert best_trial(a).value >= (4.5 if guided else 3.0)


@pytest.mark.parametrize("strategy", ["random", "evolution", "reinforce"])
def test_a_failed_trial_does_not_shift_the_draws_after_it(strategy):
    """A trial failed by a stop (then resumed) or a dead worker: the study's completed trials are
    what they would have been without it (each trial's stream is its place among the trials
    that did not fail)."""
    s = build_config("tiny", search__strategy=strategy).search
    space = nb201_decisions()

    def completed_trials(fail_at: set[int]) -> list:
        study = open_study(None, "toy", make_sampler(strategy, s, seed=3))
        while len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) < 30:
            trial = study.ask()
            arch = space.suggest(trial)
            if trial.number in fail_at:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            study.tell(trial, toy(arch)[0])
        done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        return [(t.params, t.value) for t in sorted(done, key=lambda t: t.number)]

    assert completed_trials(set()) == completed_trials({4}) == completed_trials({0, 21, 22})


def test_evolution_children_are_one_mutation_from_a_tournament_winner():
    sampler = RegularizedEvolutionSampler(population_size=10, sample_size=3, seed=0)
    study = run_toy(sampler, 40)
    trials = sorted(study.trials, key=lambda t: t.number)
    for child in trials[10:]:
        population = trials[child.number - 10 : child.number]
        dists = [sum(child.params[k] != p.params[k] for k in child.params) for p in population]
        assert min(dists) == 1  # a copy of a population member with exactly one change


def test_evolution_improves_over_its_initial_population():
    study = run_toy(RegularizedEvolutionSampler(10, 3, seed=1), 80)
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    assert np.mean(values[-20:]) > np.mean(values[:10]) + 1.0


def test_reinforce_policy_learns_the_rewarded_op():
    sampler = ReinforceSampler(lr=0.2, baseline_decay=0.9, seed=0)
    study = run_toy(sampler, 150)
    space = {
        n: optuna.distributions.CategoricalDistribution(list(NB201_OPS))
        for n, _ in nb201_decisions().decisions
    }
    logits = sampler.policy(study, space)
    value = np.array([VALUE.get(op, 0.0) for op in NB201_OPS])
    expected = 0.0
    for z in logits.values():
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert p @ value > 0.5  # better than uniform (0.3) on every edge
        expected += p @ value
    assert expected > 4.0  # the uniform policy's expected reward is 1.8, the maximum 6
    # The cached replay equals a replay from scratch by a fresh sampler.
    fresh = ReinforceSampler(lr=0.2, baseline_decay=0.9, seed=0).policy(study, space)
    for k in logits:
        np.testing.assert_allclose(logits[k], fresh[k])


@pytest.mark.parametrize("strategy", ["evolution", "reinforce", "tpe"])
def test_interrupted_study_resumes_from_storage(tmp_path, strategy):
    """30 trials, a new process-like start (new sampler, study loaded from SQLite), 30 more:
    the same trials as 60 in one go (evolution and reinforce are functions of the history)."""
    s = build_config("tiny", search__strategy=strategy).search
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_toy(make_sampler(strategy, s, seed=5), 30, storage=url, name="resume")
    resumed = run_toy(make_sampler(strategy, s, seed=5), 60, storage=url, name="resume")
    assert len(resumed.trials) == 60
    if strategy != "tpe":  # TPE's own RNG is stateful; resuming still works, not bit-equal
        straight = run_toy(make_sampler(strategy, s, seed=5), 60, name="straight")
        assert [t.params for t in resumed.trials] == [t.params for t in straight.trials]


def test_failed_objective_marks_trial_failed_and_does_not_count(tmp_path):
    study = open_study(None, "fail", optuna.samplers.RandomSampler(seed=0))

    def boom(arch):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        run_study(study, nb201_decisions(), boom, 3)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
    run_study(study, nb201_decisions(), toy, 3)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 3


def test_darts_decisions_decode_to_valid_genotypes():
    space = darts_decisions(("none", "sep_conv_3x3", "skip_connect", "max_pool_3x3"))
    rng = np.random.RandomState(0)
    for _ in range(50):
        g = space.sample(rng)
        assert isinstance(g, Genotype)
        g.validate()
        for node in range(4):
            (_, a), (_, b) = g.normal[2 * node : 2 * node + 2]
            assert a != b and max(a, b) < node + 2
        assert all(op != "none" for op, _ in g.normal + g.reduce)
    # 4 nodes x 2 cells x (inputs + 2 ops)
    assert len(space.decisions) == 24


def test_nb201_decisions_cover_the_space():
    space = nb201_decisions()
    assert len(space.decisions) == 6 and all(ch == NB201_OPS for _, ch in space.decisions)
    arch = space.sample(np.random.RandomState(0))
    assert isinstance(arch, NB201Arch) and NB201Arch.parse(str(arch)) == arch


@pytest.mark.parametrize(
    "url,match",
    [
        ("sqlite:////no/such/folder/study.db", "does not exist"),
        ("sqlite:/x.db", "SQLite URLs look like"),
        ("study.db", "is not a URL"),
        ("nosuchdb://host/db", "cannot open"),
    ],
)
def test_bad_storage_urls(url, match):
    with pytest.raises(UserError, match=match):
        check_storage_url(url)


def test_gumbel_hard_is_one_hot_with_soft_gradient():
    torch.manual_seed(0)
    alpha = torch.randn(14, 8, requires_grad=True)
    w, idx = gumbel_hard(alpha, tau=1.0)
    assert torch.equal(w.detach(), torch.nn.functional.one_hot(idx, 8).float())
    (w * torch.arange(8.0)).sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_gumbel_samples_follow_the_softmax_at_tau_one():
    torch.manual_seed(0)
    alpha = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(20000, 1)
    _, idx = gumbel_hard(alpha, tau=1.0)
    freq = torch.bincount(idx, minlength=3).float() / len(idx)
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02, rtol=0)


def test_temperature_schedule():
    assert temperature(0, 10, 10.0, 0.1) == 10.0
    assert temperature(9, 10, 10.0, 0.1) == pytest.approx(0.1)
    assert temperature(0, 1, 10.0, 0.1) == 10.0
    taus = [temperature(e, 5, 10.0, 0.1) for e in range(5)]
    assert np.allclose(np.diff(taus), -(10.0 - 0.1) / 4)


def _count_calls(model):
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += 1

    for edge in (m for c in model.cells for m in c.edges):
        for op in edge.ops:
            op.register_forward_hook(hook)
    return calls


def test_gdas_forward_runs_one_op_per_edge_and_alphas_get_gradients():
    torch.manual_seed(0)
    model = Supernet(3, 10, (16, 16), C=4, layers=3)
    calls = _count_calls(model)
    model(torch.randn(2, 3, 16, 16))
    n_edges = sum(len(c.edges) for c in model.cells)
    pools = sum("pool" in name for name in model.op_names)
    sources = sum(c.steps + 1 for c in model.cells)  # the states edges leave
    # DARTS mode: every non-none op on every edge, a pool once per state it pools
    assert calls["n"] == n_edges * (len(model.op_names) - 1 - pools) + sources * pools
    assert pools == 2 and calls["n"] < n_edges * 7
    model.sampling, model.tau = "gumbel", 5.0
    calls["n"] = 0
    out = model(torch.randn(2, 3, 16, 16))
    assert calls["n"] <= n_edges  # at most one op per edge (a sampled `none` runs nothing)
    out.sum().backward()
    assert model.alpha_normal.grad.abs().sum() > 0
    assert model.alpha_reduce.grad.abs().sum() > 0


def test_fixed_path_runs_only_the_genotype_and_trains_only_its_ops():
    torch.manual_seed(0)
    model = Supernet(3, 10, (16, 16), C=4, layers=3)
    g = darts_decisions(model.op_names).sample(np.random.RandomState(1))
    model.set_arch(g)
    calls = _count_calls(model)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert calls["n"] == 8 * len(model.cells)  # 2 edges x 4 nodes per cell
    assert model.alpha_normal.grad is None
    normal, _ = genotype_paths(g, model.op_names)
    cell = next(c for c in model.cells if not c.reduction)
    for node in range(4):
        for j in range(node + 2):
            e = edge_index(node, j)
            for col, op in zip(cell.edges[e].columns, cell.edges[e].ops, strict=True):
                grads = [p.grad for p in op.parameters()]
                on_path = normal[e] == col
                if grads and not on_path:
                    assert all(gr is None for gr in grads)
    model.set_arch(None)
    calls["n"] = 0
    model(torch.randn(2, 3, 16, 16))
    assert calls["n"] > 8 * len(model.cells)


def test_genotype_paths_round_trip():
    model = Supernet(3, 10, (16, 16), C=4, layers=3)
    g = darts_decisions(model.op_names).sample(np.random.RandomState(2))
    normal, reduce = genotype_paths(g, model.op_names)
    assert sum(k >= 0 for k in normal) == 8 and sum(k >= 0 for k in reduce) == 8
    for node in range(4):
        for op, j in g.normal[2 * node : 2 * node + 2]:
            assert model.op_names[normal[edge_index(node, j)]] == op


def test_fixed_gdas_reduction_cell_shapes_and_search():
    from scinas.spaces.darts.genotype import FIXED_REDUCE
    from scinas.spaces.darts.network import FixedReductionCell, Network

    cell = FixedReductionCell(12, 12, 8, reduction_prev=False)
    out = cell(torch.randn(2, 12, 7, 9), torch.randn(2, 12, 7, 9))
    assert out.shape == (2, 32, 4, 5)  # 4·C channels, ceil(H/2)×ceil(W/2)
    torch.manual_seed(0)
    model = Supernet(3, 10, (16, 16), C=4, layers=3, fixed_reduce=True)
    assert model.arch_parameters() == [model.alpha_normal]
    assert all(p is not model.alpha_reduce for p in model.weight_parameters())
    model.sampling = "gumbel"
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert model.alpha_normal.grad.abs().sum() > 0 and model.alpha_reduce.grad is None
    g = model.genotype()
    assert g.fixed_reduce and g.reduce == () and g.to_dict()["reduce_cell"] == FIXED_REDUCE
    assert Genotype.from_dict(g.to_dict()) == g
    net = Network(g, 3, 10, (15, 17), C=4, layers=5)
    assert sum(isinstance(c, FixedReductionCell) for c in net.cells) == 2
    assert net(torch.randn(2, 3, 15, 17))[0].shape == (2, 10)
    space = darts_decisions(model.op_names, fixed_reduce=True)
    assert len(space.decisions) == 12 and space.sample(np.random.RandomState(0)).fixed_reduce


def test_fixed_reduce_bad_genotypes():
    d = {
        "normal": [["skip_connect", 0]] * 8,
        "normal_concat": [2, 3, 4, 5],
        "reduce": [],
        "reduce_concat": [],
        "reduce_cell": "gdas_fixd",
    }
    with pytest.raises(UserError, match="unknown reduce_cell"):
        Genotype.from_dict(d)
    d["reduce_cell"] = "gdas_fixed"
    d["reduce"] = [["skip_connect", 0]] * 8
    with pytest.raises(UserError, match="must be empty"):
        Genotype.from_dict(d)
    with pytest.raises(UserError, match="darts space only"):
        build_config("tiny", overrides=["search.fixed_reduce=true", "search.space=nb201"])


def test_arch_step_when_no_op_reaches_the_loss():
    """GDAS can sample `none` on every edge; the architecture step then gets zero gradients
    instead of crashing."""
    from scinas.spaces.nb201 import NB201Supernet
    from scinas.strategies.darts import Architect
    from scinas.tasks import Classification

    torch.manual_seed(0)
    model = NB201Supernet(3, 10, (8, 8), C=4, cells_per_stage=1, op_names=("none", "nor_conv_3x3"))
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([[50.0, -50.0]]).repeat(6, 1))  # always samples none
    model.sampling = "gumbel"
    for p in model.weight_parameters():
        p.requires_grad_(False)
    arch = Architect(model, Classification(num_outputs=10), lr=0.1, weight_decay=0.0, order=1)
    before = model.alpha.detach().clone()
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    arch.step(x, y, x, y, 0.1, None)
    assert torch.equal(model.alpha.detach(), before)
