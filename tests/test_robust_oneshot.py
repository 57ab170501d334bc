"""Robust one-shot search (issue 15 items 1, 2, 3, 5): DrNAS' Dirichlet relaxation, the
regularisers of the architecture loss (entropy, Beta-Decay, Dirichlet KL) checked against finite
differences, DARTS-' auxiliary skip, progressive pruning that really skips the pruned ops and
survives an interrupted and resumed search, the decidedness measure and its message, and the
refusals of bad settings. Every supernet space is tested through the registry."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import scinas
from conftest import FEW_OPS, TINY, tiny_sets
from scinas.cli import app
from scinas.config import SearchConfig
from scinas.progress import Reporter
from scinas.signals import STOP, Interrupted
from scinas.spaces import SPACES
from scinas.spaces.common import mixing_weights
from scinas.strategies import STRATEGIES
from scinas.strategies.decided import (
    DECIDED_MARGIN,
    margin_entropy,
    stable_since,
    undecided_advice,
)
from scinas.strategies.pruning import Pruner
from scinas.strategies.regularisers import (
    ArchPenalty,
    beta_decay_loss,
    dirichlet_kl,
    mean_entropy,
)

SUPERNET_SPACES = [n for n in SPACES if SPACES.get(n).has_supernet and SPACES.get(n).has_alphas]


def supernet(space: str, sampling: str = "softmax"):
    s = SearchConfig.model_validate({"strategy": "darts", "space": space, "C": 4, "layers": 3})
    torch.manual_seed(0)
    model = SPACES.get(space).build_supernet(s, (1, 8, 8), 3)
    model.sampling = sampling
    return model


def op_calls(model) -> dict:
    """Forward calls per (reduction cell?, edge, alpha column), counted with hooks on every
    edge's ops (on an op's last layer where it has layers: a supernet may run the first, a
    ReLU, once for all the edges of a state)."""
    calls: dict[tuple, int] = {}
    for cell in model.cells:
        if not hasattr(cell, "edges"):
            continue
        for e, edge in enumerate(cell.edges):
            for k, op in zip(edge.columns, edge.ops, strict=True):

                def hook(*_, key=(getattr(cell, "reduction", False), e, k)):
                    calls[key] = calls.get(key, 0) + 1

                layers = list(op.children())
                (layers[-1] if layers else op).register_forward_hook(hook)
    return calls


# ----------------------------------------------------------------------------- regularisers


def test_regulariser_gradients_match_finite_differences():
    torch.manual_seed(0)
    a = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2] = False
    assert torch.autograd.gradcheck(
        lambda x, y: mean_entropy({"n": F.softmax(x, -1), "r": F.softmax(y, -1)}), (a, b)
    )
    assert torch.autograd.gradcheck(
        lambda x, y: beta_decay_loss({"n": x, "r": y}, {"r": mask}), (a, b)
    )
    assert torch.autograd.gradcheck(lambda x: dirichlet_kl({"n": x}, prior=1.0), (a,))


@pytest.mark.parametrize("space", SUPERNET_SPACES)
@pytest.mark.parametrize("sampling", ["softmax", "dirichlet"])
def test_entropy_term_has_a_real_gradient_on_the_alphas(space, sampling):
    """Unlike an L1 norm of softmax weights (always 1), the entropy term moves the alphas: a
    non-zero gradient that lowers the entropy when followed."""
    model = supernet(space, sampling)
    with torch.no_grad():
        for a in model.arch_parameters():
            a.copy_(0.3 * torch.randn_like(a))
    penalty = ArchPenalty(model, entropy_weight=1.0)
    term = penalty()
    grads = torch.autograd.grad(term, model.arch_parameters())
    assert all(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        for a, g in zip(model.arch_parameters(), grads, strict=True):
            a -= 0.5 * g / g.norm()
    assert penalty() < term
    assert penalty.last["entropy"] == pytest.approx(float(penalty().detach()))


def test_beta_decay_ramps_up_and_regularisers_off_unless_asked():
    model = supernet("darts")
    # gdas and drnas: off by default; darts' robust default has the entropy term and Beta-Decay
    for strategy in ("gdas", "drnas"):
        s = SearchConfig.model_validate({"strategy": strategy})
        assert ArchPenalty.from_settings(model, s) is None
    default = ArchPenalty.from_settings(model, SearchConfig.model_validate({}))
    assert (default.entropy_weight, default.beta_decay) == (3.0, 1.0)
    plain = SearchConfig.model_validate({"entropy_weight": 0, "aux_skip": 0, "beta_decay": 0})
    assert ArchPenalty.from_settings(model, plain) is None
    p = ArchPenalty(model, beta_decay=2.0, epochs=4)
    values = []
    for epoch in range(4):
        p.set_epoch(epoch)
        values.append(float(p().detach()))
    assert values[0] < values[1] < values[2] < values[3]
    assert values[3] == pytest.approx(2.0 * float(beta_decay_loss(model.op_alphas()).detach()))


def test_entropy_ramp_grows_to_the_weight_at_the_last_epoch():
    """search.entropy_schedule=ramp: the entropy term's weight is W·(e+1)/epochs in epoch e, so
    the edges are pushed to commit at the end of the search, not in its first epochs."""
    model = supernet("darts")
    with torch.no_grad():
        for a in model.arch_parameters():
            a.copy_(0.3 * torch.randn_like(a))
    entropy = float(mean_entropy(model.op_weights()).detach())
    s = SearchConfig.model_validate({"entropy_schedule": "ramp", "beta_decay": 0, "epochs": 4})
    p = ArchPenalty.from_settings(model, s)
    assert p.entropy_schedule == "ramp"
    got = []
    for epoch in range(4):
        p.set_epoch(epoch)
        got.append(float(p().detach()))
    assert got == pytest.approx([3.0 * entropy * (e + 1) / 4 for e in range(4)], rel=1e-6)
    constant = ArchPenalty(model, entropy_weight=3.0, epochs=4)
    constant.set_epoch(0)
    assert float(constant().detach()) == pytest.approx(3.0 * entropy, rel=1e-6)


# ----------------------------------------------------------------------------- relaxations


@pytest.mark.parametrize("space", SUPERNET_SPACES)
def test_dirichlet_relaxation_samples_in_training_and_uses_the_mean_in_eval(space):
    model = supernet(space, "dirichlet")
    x = torch.randn(4, 1, 8, 8)
    model.train()
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in model.arch_parameters())
    a = torch.zeros(6, 5)
    w1, _ = mixing_weights(a, None, "dirichlet", 1.0, training=True)
    w2, _ = mixing_weights(a, None, "dirichlet", 1.0, training=True)
    assert not torch.allclose(w1, w2) and torch.allclose(w1.sum(-1), torch.ones(6))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # the mean: deterministic
    for w in model.op_weights().values():  # the mean at alpha ~ 0: uniform
        assert torch.allclose(w, torch.full_like(w, 1 / w.shape[-1]), atol=1e-2)


@pytest.mark.parametrize("space", SUPERNET_SPACES)
def test_aux_skip_changes_the_mixture_but_not_a_fixed_path(space):
    model = supernet(space).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        base = model(x)
        arch = model.genotype()
        model.set_arch(arch)
        path = model(x)
        model.set_aux_skip(1.0)
        assert torch.equal(model(x), path)  # a fixed path: the derived network, no skip
        model.set_arch(None)
        assert not torch.allclose(model(x), base)
        model.set_aux_skip(0.0)
        assert torch.equal(model(x), base)


# ----------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("space", SUPERNET_SPACES)
@pytest.mark.parametrize("sampling", ["softmax", "gumbel", "dirichlet"])
def test_pruned_ops_are_not_computed_and_get_no_weight(space, sampling):
    model = supernet(space, sampling)
    masks = model.op_masks()
    cell, mask = next(iter(masks.items()))
    keep = mask.clone()
    keep[:, 1:-1] = False  # every edge keeps its first and last op only
    model.set_op_mask(cell, keep)
    calls = op_calls(model)
    x = torch.randn(4, 1, 8, 8)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
    weights = model.op_weights()[cell].detach()
    assert torch.all(weights[~keep] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(len(weights)))
    assert calls and all(keep[e, k] for (red, e, k) in calls if not red)
    if sampling != "gumbel":
        model.set_op_mask(cell, torch.ones_like(keep))
        calls.clear()
        model(x)
        assert any(not keep[e, k] for (red, e, k) in calls if not red)  # unmasked: they run
    model.set_op_mask(cell, keep)
    geno = model.genotype()  # a pruned op is never derived
    first = SPACES.get(space).cell_ops(geno.to_dict())
    allowed = {model.op_names[0], model.op_names[-1]}
    assert set(next(iter(first.values()))) <= allowed


@pytest.mark.parametrize("space", SUPERNET_SPACES)
def test_masks_travel_in_the_state_dict(space):
    model = supernet(space)
    cell, mask = next(iter(model.op_masks().items()))
    keep = mask.clone()
    keep[0, -1] = False  # the last op: computed while unpruned (`none` never is)
    model.set_op_mask(cell, keep)
    fresh = supernet(space)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.op_masks()[cell], keep)
    calls = op_calls(fresh)
    fresh(torch.randn(2, 1, 8, 8))
    full = supernet(space)
    full_calls = op_calls(full)
    full(torch.randn(2, 1, 8, 8))
    masked = (getattr(fresh.cells[0], "reduction", False), 0, keep.shape[1] - 1)
    assert masked in full_calls and masked not in calls  # the loaded mask took effect
    older = {k: v for k, v in full.state_dict().items() if "mask" not in k}
    fresh.load_state_dict(older)  # a supernet saved before pruning existed: nothing pruned
    assert all(m.all() for m in fresh.op_masks().values())


class FakeSupernet:
    op_names = ("none", "skip_connect", "conv", "pool")

    def __init__(self, weights):
        self.w = torch.tensor(weights, dtype=torch.float64)
        self.mask = torch.ones_like(self.w, dtype=torch.bool)

    def op_weights(self):
        w = self.w * self.mask
        return {"cell": w / w.sum(-1, keepdim=True)}

    def op_masks(self):
        return {"cell": self.mask}

    def set_op_mask(self, cell, mask):
        self.mask = mask.clone()


def test_pruner_waits_for_patience_keeps_the_best_and_an_op_that_is_not_none():
    model = FakeSupernet([[0.04, 0.03, 0.9, 0.03], [0.5, 0.02, 0.03, 0.45]])
    pruner = Pruner(threshold=0.05, patience=2, greedy=False)
    assert pruner.update(model, 1) == []  # below once: not yet
    events = pruner.update(model, 2)
    assert {(e["edge"], e["op"]) for e in events} == {
        (0, "none"),
        (0, "skip_connect"),
        (0, "pool"),
        (1, "skip_connect"),
        (1, "conv"),
    }
    assert model.mask[0].tolist() == [False, False, True, False]
    # edge 1: none (0.5) is its best and stays; pool must stay too (the last op not `none`)
    assert model.mask[1].tolist() == [True, False, False, True]
    state = pruner.state_dict()
    again = Pruner(threshold=0.05, patience=2, greedy=False)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert again.below == pruner.below


def test_greedy_decision_fixes_an_edge_whose_op_is_clearly_ahead():
    model = FakeSupernet([[0.1, 0.1, 0.6, 0.2], [0.3, 0.2, 0.3, 0.2]])
    events = Pruner(threshold=None, patience=1, greedy=True).update(model, 1)
    assert {e["edge"] for e in events} == {0} and len(events) == 3
    assert model.mask[0].tolist() == [False, False, True, False] and model.mask[1].all()


def _events(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


PRUNE = [
    *TINY,
    "search.epochs=2",
    "search.arch_lr=0.05",
    f"search.prune_threshold={0.96 / len(FEW_OPS):.2f}",  # just under the uniform share
    "search.prune_patience=1",
]


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A tiny search that prunes after its first epoch (shared by the tests below)."""
    out = tmp_path_factory.mktemp("pruned") / "r"
    scinas.search(scinas.build_config("tiny", overrides=PRUNE), out, reporter=Reporter(quiet=True))
    return out


def test_pruning_is_logged_reported_and_makes_epochs_cheaper(pruned_run):
    out = pruned_run
    events = _events(out)
    pruned = [e for e in events if e["event"] == "prune"]
    epochs = [e for e in events if e["event"] == "search_epoch"]
    assert pruned and all(e["op"] in e["reason"] or "below" in e["reason"] for e in pruned)
    assert epochs[0]["ops_left"] == epochs[0]["ops_total"]  # pruned after the record
    assert epochs[-1]["ops_left"] < epochs[-1]["ops_total"]
    # each record counts the ops removed after the records before it, and nothing is removed
    # after the last one (it would save nothing and change the cell after its record)
    for e in epochs:
        removed = sum(1 for p in pruned if p["epoch"] < e["epoch"])
        assert e["ops_total"] - e["ops_left"] == removed
    assert epochs[-1]["ops_total"] - epochs[-1]["ops_left"] == len(pruned)
    genotype = json.loads((out / "genotype.json").read_text())
    assert genotype == epochs[-1]["genotype"]  # the final cell is the last one logged
    from scinas.report import write_report

    page = write_report(out).read_text()
    assert f"Pruning ({len(pruned)} ops removed)" in page and "Search epochs" in page
    # a pruned op has no weight from then on (the derivation reads these weights)
    records = [json.loads(x) for x in (out / "arch_weights.jsonl").read_text().splitlines()]
    for e in pruned:
        for r in records[e["epoch"] :]:
            assert r[e["cell"]][e["edge"]][r["ops"].index(e["op"])] == 0


def test_pruned_search_interrupted_and_resumed_ends_the_same(tmp_path, monkeypatch, pruned_run):
    cfg = scinas.build_config("tiny", overrides=PRUNE)
    ref = pruned_run
    real = Pruner.update

    def stop_after_epoch_1(self, model, epoch):
        out = real(self, model, epoch)
        assert out  # the interruption comes after ops were pruned
        STOP.requested = True
        return out

    monkeypatch.setattr(Pruner, "update", stop_after_epoch_1)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        scinas.search(cfg, out, reporter=Reporter(quiet=True))
    monkeypatch.setattr(Pruner, "update", real)
    scinas.search(cfg, out, reporter=Reporter(quiet=True), resume=True)

    def clean(path):
        return [{k: v for k, v in e.items() if k not in ("time", "seconds")} for e in _events(path)]

    assert clean(out) == clean(ref)
    assert (out / "genotype.json").read_text() == (ref / "genotype.json").read_text()


# ----------------------------------------------------------------------------- decidedness


def test_margin_entropy_of_known_weights():
    assert margin_entropy(torch.full((3, 4), 0.25)) == pytest.approx((0.0, 1.0))
    assert margin_entropy([[1.0, 0.0, 0.0, 0.0]]) == pytest.approx((0.75, 0.0), abs=1e-9)
    m, h = margin_entropy({"a": [[0.5, 0.5]], "b": [[1.0, 0.0]]})
    assert m == pytest.approx(0.25) and h == pytest.approx(0.5, abs=1e-6)
    assert margin_entropy(torch.zeros(2, 5), logits=True) == pytest.approx((0.0, 1.0))
    assert "close to a random one" in undecided_advice(0.01, 3, 3e-4)


def test_stable_since_and_the_advice_for_small_but_consistent_weights():
    assert stable_since([]) is None
    assert stable_since(["a"]) == 1
    assert stable_since(["a", "b", "b", "b"]) == 2
    assert stable_since(["b", "b", "a"]) == 3
    assert stable_since(["b", "b", "b"]) == 1
    # the cell unchanged over the second half: a consistent ranking, said so
    said = undecided_advice(0.05, 50, 3e-4, stable=5)
    assert "the same since epoch 5 of 50" in said and "random one" not in said.split(".")[0]
    # changed late, or a search too short to tell: close to a random one
    assert "close to a random one" in undecided_advice(0.05, 50, 3e-4, stable=40)
    assert "close to a random one" in undecided_advice(0.05, 3, 3e-4, stable=1)


def _search(out, *extra) -> list[str]:
    """A tiny 2-epoch search into ``out``; returns its log lines."""
    sets = [*TINY, "search.epochs=2", "search.arch_lr=0.03", *extra]
    lines: list[str] = []
    rep = Reporter(quiet=True)
    rep.log = lines.append
    scinas.search(scinas.build_config("tiny", overrides=sets), out, reporter=rep)
    return lines


def _last_diagnostics(out) -> dict:
    return [e for e in _events(out) if e["event"] == "search_epoch"][-1]["diagnostics"]


# the DARTS paper's search (scinas' default adds the auxiliary skip and the entropy term)
PLAIN = ["search.aux_skip=0", "search.entropy_weight=0"]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "r"
    return out, _search(out, *PLAIN)


def test_entropy_term_ends_the_search_with_lower_edge_entropy(tmp_path, plain_run):
    sparse = tmp_path / "sparse"
    _search(sparse, *PLAIN, "search.entropy_weight=1")
    plain, sparse = _last_diagnostics(plain_run[0]), _last_diagnostics(sparse)
    assert sparse["mean_entropy"] < plain["mean_entropy"] and sparse["margin"] > plain["margin"]


def test_an_undecided_search_says_so_in_the_log_and_the_report(plain_run):
    out, lines = plain_run
    assert any("ended undecided" in line and "close to a random one" in line for line in lines)
    assert any("margin" in line and "skip/pool/none" in line for line in lines)
    (undecided,) = [e for e in _events(out) if e["event"] == "undecided"]
    assert undecided["margin"] < DECIDED_MARGIN
    cells = [e["genotype"] for e in _events(out) if e["event"] == "search_epoch"]
    assert undecided["stable_since"] == (1 if cells[0] == cells[1] else 2)
    from scinas.report import write_report

    assert "Undecided search" in write_report(out).read_text()


def test_an_undecided_search_with_a_stable_cell_says_so_instead(tmp_path):
    """Alphas that hardly move (arch_lr 1e-6) keep their first ranking: over 4 epochs the cell
    never changes, so the message names the epoch it has been the same since, not a random cell."""
    out = tmp_path / "stable"
    lines = _search(out, *PLAIN, "search.beta_decay=0", "search.epochs=4", "search.arch_lr=1e-6")
    (undecided,) = [e for e in _events(out) if e["event"] == "undecided"]
    assert undecided["stable_since"] == 1
    assert "the same since epoch 1 of 4" in undecided["message"]
    assert "close to a random one" not in undecided["message"]
    assert any("the same since epoch 1 of 4" in line for line in lines)


def test_select_best_val_epoch_takes_the_lowest_validation_loss_after_the_warm_up():
    from scinas.strategies.oneshot import select_best_val_epoch

    def rec(epoch, loss, genotype="g"):
        return {"epoch": epoch, "val": {"loss": loss}, "genotype": genotype}

    history = [rec(1, 0.5), rec(2, 1.0), rec(3, 0.7), rec(4, math.nan), rec(5, 0.7), rec(6, 0.9)]
    assert select_best_val_epoch(history)["epoch"] == 1
    assert select_best_val_epoch(history, warmup_epochs=1)["epoch"] == 5  # tie: the later
    assert select_best_val_epoch([rec(1, 0.2, None), rec(2, 0.4)])["epoch"] == 2  # no cell
    assert select_best_val_epoch([rec(1, math.inf)]) is None
    assert select_best_val_epoch([]) is None


def test_a_search_with_select_epoch_best_val_returns_that_epochs_cell(tmp_path, monkeypatch):
    from scinas.strategies.oneshot import OneShotStrategy

    scripted = iter([1.0, 0.4, 0.8, 1.3])  # the supernet's validation loss per epoch
    real = OneShotStrategy.evaluate_supernet

    def evaluate(self, model, ctx, val_batches):
        return {**real(self, model, ctx, val_batches), "loss": next(scripted)}

    monkeypatch.setattr(OneShotStrategy, "evaluate_supernet", evaluate)
    out = tmp_path / "r"
    lines = _search(out, "search.epochs=4", "search.select_epoch=best_val")
    epochs = [e for e in _events(out) if e["event"] == "search_epoch"]
    assert [e["val"]["loss"] for e in epochs] == [1.0, 0.4, 0.8, 1.3]
    (chosen,) = [e for e in _events(out) if e["event"] == "select_epoch"]
    assert (chosen["epoch"], chosen["val_loss"], chosen["last_epoch"]) == (2, 0.4, 4)
    space = SPACES.get("darts")
    saved = space.from_dict(json.loads((out / "genotype.json").read_text()))
    assert saved == space.from_dict(epochs[1]["genotype"]) == space.from_dict(chosen["genotype"])
    assert any("the cell derived at epoch 2" in line for line in lines)


def test_drnas_is_registered_for_every_supernet_space():
    assert "drnas" in STRATEGIES and STRATEGIES.get("drnas").kind == "one-shot"
    for space in SUPERNET_SPACES:
        s = SearchConfig.model_validate({"strategy": "drnas", "space": space})
        STRATEGIES.get("drnas").check_search(s, SPACES.get(space))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "sets, phrase",
    [
        (["search.prune_threshold=0"], "search.prune_threshold must lie strictly between 0"),
        (["search.prune_threshold=1.5"], "search.prune_threshold must lie strictly between 0"),
        (["search.entropy_weight=-1"], "search.entropy_weight must be a finite weight >= 0"),
        (["search.beta_decay=inf"], "search.beta_decay must be a finite"),
        (["search.aux_skip=nan"], "search.aux_skip must be a finite"),
        (["search.strategy=drnas", "search.kl_weight=-0.1"], "search.kl_weight must be a finite"),
        (["search.strategy=gdas", "search.beta_decay=-2"], "search.beta_decay must be a finite"),
        (["search.select_epoch=best"], "'last' or 'best_val'"),
        (["search.entropy_schedule=linear"], "'constant' or 'ramp'"),
        (["search.arch_lr_schedule=step"], "'constant' or 'cosine'"),
        (
            ["search.select_epoch=best_val", "search.derive=supernet"],
            "search.derive=supernet keeps the last epoch's supernet",
        ),
        (
            ["search.select_epoch=best_val", "train.init=supernet"],
            "search.select_epoch=best_val may return an earlier epoch's cell",
        ),
    ],
)
def test_bad_robust_settings_exit_2_with_one_message_and_write_nothing(tmp_path, sets, phrase):
    """In-process (`typer.testing.CliRunner`: the same exit code and stderr as a process)."""
    out = tmp_path / "out"
    args = [a for s in sets for a in ("--set", s)]
    res = CliRunner().invoke(app, ["run", "--out", str(out), *tiny_sets(), *args])
    assert res.exit_code == 2 and phrase in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
