from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scinas.errors import UserError
from scinas.spaces.darts.genotype import num_edges
from scinas.spaces.darts.supernet import Supernet
from scinas.strategies.darts import unrolled_arch_grads
from scinas.tasks import Classification

OPS4 = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


@pytest.mark.parametrize("shape", [(1, 8, 8), (5, 30, 80)])
def test_supernet_forward_and_genotype(shape):
    net = Supernet(shape[0], 3, shape[1:], C=4, layers=3)
    assert net(torch.randn(2, *shape)).shape == (2, 3)
    assert net.alpha_normal.shape == (num_edges(4), 8)
    g = net.genotype()
    assert len(g.normal) == 8 and all(op != "none" for op, _ in g.normal + g.reduce)


def test_arch_and_weight_parameters_are_disjoint_and_complete():
    net = Supernet(1, 2, (8, 8), C=4, layers=2)
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert len(arch) == 2
    assert len(arch) + len(weights) == len(list(net.parameters()))
    assert not {id(p) for p in arch} & {id(p) for p in weights}


def test_none_gets_a_gradient_though_it_is_never_computed():
    net = Supernet(1, 2, (8, 8), C=4, layers=2)
    loss = F.cross_entropy(net(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    none_col = net.op_names.index("none")
    assert net.alpha_reduce.grad[:, none_col].abs().sum() > 0


def test_mixed_edge_equals_explicit_weighted_sum_of_all_ops():
    """The optimised edge (none skipped, shared ReLU, fused adds) computes sum_k w_k op_k(x)."""
    torch.manual_seed(0)
    net = Supernet(1, 2, (8, 8), C=4, layers=1, op_names=OPS4, reductions=0).eval()
    edge = net.cells[0].edges[0]
    x = torch.randn(2, 4, 4, 4)
    w = torch.softmax(torch.randn(len(OPS4)), 0)
    got = edge(x, F.relu(x), w, None)
    want = torch.zeros_like(got)
    for k, col in enumerate(edge.columns):
        inp = F.relu(x) if edge.takes_relu[k] else x
        want += w[col] * edge.ops[k](inp)
    torch.testing.assert_close(got, want)


def test_bad_op_lists():
    with pytest.raises(UserError, match="at least one op besides 'none'"):
        Supernet(1, 2, (8, 8), C=4, layers=2, op_names=("none",))
    with pytest.raises(UserError, match="twice"):
        Supernet(1, 2, (8, 8), C=4, layers=2, op_names=("none", "skip_connect", "skip_connect"))
    with pytest.raises(UserError, match="Did you mean"):
        Supernet(1, 2, (8, 8), C=4, layers=2, op_names=("none", "skip_conect"))


def _loss(model, x, y):
    return F.cross_entropy(model(x), y)


def test_second_order_gradient_matches_finite_differences():
    """The unrolled DARTS gradient against a central-difference derivative of
    F(α) = L_val(w − ξ(momentum·buf + ∇w L_train(w, α) + wd·w), α), in float64."""
    torch.manual_seed(0)
    model = Supernet(
        1, 3, (8, 8), C=4, layers=3, op_names=OPS4, steps=2, multiplier=2, reductions=1
    ).double()
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0, 0.5)
    task = Classification(num_outputs=3)
    xt, yt = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    xv, yv = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.tensor([2, 1, 0, 2, 1, 0])
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    _loss(model, xt, yt).backward()  # one real step so the momentum buffer takes part
    opt.step()
    opt.zero_grad()
    eta = 0.1
    weights_before = [w.detach().clone() for w in model.weight_parameters()]

    # The paper's step r=0.01 crosses ReLU/max-pool kinks on a network this small; in float64 a
    # small step isolates the formula (the step itself is `search.hvp_r`).
    _, grads = unrolled_arch_grads(model, task, xt, yt, xv, yv, eta, opt, r=1e-6)
    got = torch.cat([g.flatten() for g in grads])
    for w, b in zip(model.weight_parameters(), weights_before, strict=True):
        assert torch.equal(w, b), "the virtual step must be undone exactly"

    weights = model.weight_parameters()
    bufs = [opt.state[w]["momentum_buffer"] for w in weights]

    def unrolled_val_loss() -> float:
        g = torch.autograd.grad(_loss(model, xt, yt), weights)
        with torch.no_grad():
            for w, gi, buf in zip(weights, g, bufs, strict=True):
                w.sub_(eta * (0.9 * buf + gi + 3e-4 * w))
            value = _loss(model, xv, yv).item()
            for w, b in zip(weights, weights_before, strict=True):
                w.copy_(b)
        return value

    h = 1e-5
    ref = []
    for a in model.arch_parameters():
        flat = a.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = unrolled_val_loss()
            flat[i] = old - h
            down = unrolled_val_loss()
            flat[i] = old
            ref.append((up - down) / (2 * h))
    ref = torch.tensor(ref, dtype=torch.float64)
    rel = (got - ref).norm() / ref.norm()
    assert rel < 1e-2, f"relative error {rel:.2e}"
    # and it differs from the first-order gradient (the Hessian term matters here)
    first = torch.cat(
        [g.flatten() for g in torch.autograd.grad(_loss(model, xv, yv), model.arch_parameters())]
    )
    assert (first - ref).norm() / ref.norm() > 10 * rel


def test_cell_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = Supernet(2, 3, (8, 8), C=4, layers=3)
    ckpt = Supernet(2, 3, (8, 8), C=4, layers=3, checkpoint_cells=True)
    ckpt.load_state_dict(plain.state_dict())
    x, y = torch.randn(4, 2, 8, 8), torch.tensor([0, 1, 2, 0])
    grads = []
    for net in (plain, ckpt):
        loss = F.cross_entropy(net(x), y)
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_first_order_arch_gradient_with_frozen_weights_equals_plain_autograd():
    from scinas.strategies.darts import _alpha_grads

    torch.manual_seed(0)
    net = Supernet(1, 3, (8, 8), C=4, layers=3)
    task = Classification(num_outputs=3)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    want = torch.autograd.grad(F.cross_entropy(net(x), y), net.arch_parameters())
    _, got = _alpha_grads(net, task, x, y)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    assert all(w.requires_grad for w in net.weight_parameters()), "weights are unfrozen after"


def test_auto_checkpointing_switches_on_when_a_step_would_take_half_the_memory():
    from scinas.config import build_config
    from scinas.memory import available_memory, search_step_bytes, use_checkpointing

    GiB = 2**30
    tiny, paper = build_config(preset="tiny").search, build_config(preset="paper").search
    assert not use_checkpointing(tiny, (1, 8, 8))  # this machine's memory
    # the paper's supernet (batch 64, C=16, 8 cells, 32×32): ~3.6 GiB a first-order step
    assert 3 * GiB < search_step_bytes(paper, (3, 32, 32)) < 4 * GiB
    assert use_checkpointing(paper, (3, 32, 32), available=6 * GiB)
    assert not use_checkpointing(paper, (3, 32, 32), available=16 * GiB)
    second = build_config(preset="paper", overrides=["search.order=2"]).search
    assert search_step_bytes(second, (3, 32, 32)) > search_step_bytes(paper, (3, 32, 32))
    forced = build_config(preset="tiny", overrides=["search.checkpoint_cells=true"]).search
    assert use_checkpointing(forced, (1, 8, 8), available=64 * GiB)
    off = build_config(preset="paper", overrides=["search.checkpoint_cells=false"]).search
    assert not use_checkpointing(off, (3, 32, 32), available=1 * GiB)
    free = available_memory()
    assert free is None or 0 < free < 2**50


@pytest.mark.parametrize("lean", [False, True])
def test_naive_benchmark_reference_computes_the_same_supernet(lean, monkeypatch):
    """benchmarks/naive_darts.py (the original DARTS code's structure, the same-run reference of
    benchmarks/search_step.py) and scinas' Supernet are one function: same weights and alphas give
    the same outputs and the same alpha gradients, so the benchmark compares equal work. The
    reference runs scinas' ops as plain torch modules (none of the lean autograd functions), and
    also computes the same weight gradients. With ``lean`` scinas' side runs its lean autograd
    functions (as on inputs of LEAN_FROM elements up)."""
    import sys
    from pathlib import Path

    import scinas.lean_ops

    if lean:
        monkeypatch.setattr(scinas.lean_ops, "LEAN_FROM", 0)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from naive_darts import NaiveNetwork
    finally:
        sys.path.pop(0)

    torch.manual_seed(0)
    ours = Supernet(3, 10, (16, 16), C=4, layers=5)
    naive = NaiveNetwork(C=4, num_classes=10, layers=5)
    mine = ours.weight_parameters()
    theirs = list(naive.parameters())
    assert [p.shape for p in theirs] == [p.shape for p in mine]
    with torch.no_grad():
        for a, b in zip(theirs, mine, strict=True):
            a.copy_(b)
        for a, b in zip(naive.arch_parameters(), ours.arch_parameters(), strict=True):
            b.copy_(torch.randn_like(b))  # far from uniform, so every op's weight matters
            a.copy_(b)
    x = torch.randn(6, 3, 16, 16)
    y = torch.randint(0, 10, (6,))
    out_ours, out_naive = ours(x), naive(x)
    assert torch.allclose(out_ours, out_naive, atol=1e-5, rtol=1e-4)

    # every edge's BatchNorm statistics, the pooling ops' (computed once per state) included
    def stats(net):
        bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return [t for m in bns for t in (m.running_mean, m.running_var)]

    assert len(stats(ours)) == len(stats(naive)) > 0
    for a, b in zip(stats(ours), stats(naive), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    g_ours = torch.autograd.grad(F.cross_entropy(out_ours, y), ours.arch_parameters())
    g_naive = torch.autograd.grad(F.cross_entropy(out_naive, y), naive.arch_parameters())
    for a, b in zip(g_ours, g_naive, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    w_ours = torch.autograd.grad(F.cross_entropy(ours(x), y), mine)
    w_naive = torch.autograd.grad(F.cross_entropy(naive(x), y), theirs)
    for a, b in zip(w_ours, w_naive, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-3)
    from scinas.ops import DilConv, LeanBatchNorm2d

    assert not any(isinstance(m, LeanBatchNorm2d) for m in naive.modules())
    assert all("forward" in vars(m) for m in naive.modules() if isinstance(m, DilConv))


def test_average_bn_is_the_plain_mean_over_batches_and_resumes_from_a_state_dict():
    """The DARTS supernet is scored with BatchNorm statistics averaged over an epoch's last steps
    (scinas.train.average_bn): the running mean/var are the plain means of the batches' own
    statistics, and a copy restored from a state_dict midway continues the same mean."""
    import copy

    from scinas.train import average_bn, batchnorms, stop_average_bn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    xs = [torch.randn(8, 3, 6, 6) * (k + 1) + k for k in range(3)]
    with torch.no_grad():
        for x in xs[:2]:  # statistics before the tail: forgotten by reset=True
            net(x)
        average_bn(net, reset=True)
        feats = [net[0](x) for x in xs]
        net(xs[0])
        net(xs[1])
        midway = copy.deepcopy(net.state_dict())
        net(xs[2])
    bn = net[1]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats])
    variances = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1) for f in feats])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, variances.mean(0), atol=1e-4)

    resumed = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    resumed.load_state_dict(midway)
    average_bn(resumed, reset=False)  # what a resumed search does past the tail's first step
    with torch.no_grad():
        resumed(xs[2])
    assert torch.allclose(resumed[1].running_mean, bn.running_mean, atol=1e-6)
    assert torch.allclose(resumed[1].running_var, bn.running_var, atol=1e-6)

    stop_average_bn(net)
    assert [m.momentum for m in batchnorms(net)] == [0.1]
