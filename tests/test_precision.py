"""precision=bf16|fp16|fp32 and compile=true (issue 16, part 3): end to end in bf16 on the CPU,
fp16 refused on a CPU, the second-order finite-difference step in float32 whatever the autocast,
the fp16 scaler's state checkpointed, compile refused where torch.compile cannot work, and
thread counts (OMP_NUM_THREADS) the machine cannot give held to its cores or refused."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY, tiny_sets
from scinas import parallel, precision
from scinas.cli import app
from scinas.precision import Mixed
from scinas.spaces.darts.supernet import Supernet
from scinas.strategies.darts import Architect
from scinas.tasks import Classification


def cli(*args: str):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stderr, res.stdout


def refused(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    assert err.count("error:") == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


def test_bf16_search_and_training_run_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "run"
    code, err, stdout = cli(
        "run", "--out", out, "--quiet", *tiny_sets("precision=bf16", "search.arch_lr=3e-4")
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["precision"] == "bf16"
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    assert torch.isfinite(torch.tensor(results["supernet"]["val"]["loss"]))


def test_bf16_supernet_step_with_the_lean_ops_sizes(lean_always):
    """Under autocast the lean autograd ops (`scinas.ops`, on for large inputs; here for any)
    step aside: their backward recomputes convolutions from saved bf16 activations and float32
    weights, which failed on real-size data (test data is below `LEAN_FROM`)."""
    from scinas.spaces.darts import DARTS_OPS
    from scinas.spaces.darts.supernet import Supernet

    torch.manual_seed(0)
    net = Supernet(1, 10, (8, 8), C=4, layers=3, op_names=DARTS_OPS)
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    from scinas.train import model_output

    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model_output(net, x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())


def test_fp16_on_cpu_is_refused_and_nothing_written(tmp_path):
    out = tmp_path / "run"
    code, err, _ = cli("search", "--out", out, "--device", "cpu", *tiny_sets("precision=fp16"))
    refused(code, err, "precision=fp16", "bf16")
    assert not out.exists()


def test_unknown_precision_is_refused(tmp_path):
    code, err, _ = cli("search", "--out", tmp_path / "r", "--set", "precision=fp8")
    refused(code, err, "precision")
    assert not (tmp_path / "r").exists()


def _recorded_dtypes(model):
    """The dtypes of every convolution output during the passes that follow."""
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("order, expected", [(1, torch.bfloat16), (2, torch.float32)])
def test_second_order_step_stays_float32_under_bf16_autocast(order, expected):
    """Under the run's bf16 autocast the first-order architecture step runs in bf16, and the
    second-order one (a finite-difference Hessian-vector product) in float32."""
    torch.manual_seed(0)
    model = Supernet(1, 10, (8, 8), C=4, layers=2)
    task = Classification(num_outputs=10)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    architect = Architect(model, task, lr=3e-4, weight_decay=1e-3, order=order)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    seen = _recorded_dtypes(model)
    before = [a.detach().clone() for a in model.arch_parameters()]
    with Mixed("bf16", "cpu").autocast():
        loss = architect.step(x, y, x, y, 0.1, w_opt)
    assert seen and set(seen) == {expected}
    assert isinstance(loss, float) and loss == loss
    moved = any(not torch.equal(a, b) for a, b in zip(model.arch_parameters(), before, strict=True))
    assert moved


def test_fp16_scaler_state_round_trips():
    """The fp16 gradient scaler's state (its scale after a skipped overflow) is what a checkpoint
    keeps and a resume restores; fp32/bf16 have none."""
    assert Mixed("bf16", "cpu").state_dict() == {}
    mixed = Mixed("fp16", "cpu")
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    mixed.backward(p.sum() * float("inf"))  # an overflow: the step is skipped, the scale halves
    mixed.unscale(opt)
    mixed.step(opt)
    assert torch.equal(p.detach(), torch.ones(3))
    state = mixed.state_dict()
    assert state["scale"] == 2.0**15
    fresh = Mixed("fp16", "cpu")
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == 2.0**15


def test_trainer_checkpoint_carries_the_scaler(tmp_path):
    from scinas.checkpoint import Checkpointer
    from scinas.placement import Placement
    from scinas.rundir import RunDir
    from scinas.train import network_trainer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    place = Placement(torch.device("cpu"), False, [0.0], [1.0])
    x, y = torch.randn(8, 1, 2, 2), torch.arange(8) % 2
    run = RunDir.create(tmp_path / "r", kind="train", config={})

    def make():
        return network_trainer(
            net,
            Classification(num_outputs=2),
            place.batches(x, y, 4, shuffle=True),
            place.batches(x, y, 4),
            epochs=1,
            lr=0.1,
            lr_min=0.0,
            momentum=0.9,
            weight_decay=0.0,
            grad_clip=5.0,
            checkpointer=Checkpointer(run, "train"),
            precision="fp16",
        )

    trainer = make()
    trainer.run()
    state = Checkpointer(run, "train").load()
    assert state["scaler"]["scale"] == trainer.mixed.scaler.get_scale() > 0
    resumed = make()
    resumed.mixed.scaler = precision.new_scaler("fp16", "cpu")
    resumed.mixed.scaler.scale(torch.ones(1))  # its own initial scale, 2**16
    resumed.mixed.scaler.update(1.0)  # a different one: the resume must replace it
    assert resumed.resume()
    assert resumed.mixed.scaler.get_scale() == state["scaler"]["scale"]


def test_compile_unavailable_is_refused_and_nothing_written(tmp_path, monkeypatch):
    """No C++ compiler (what the CPU backend needs): compile=true is refused, naming it."""
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(precision.shutil, "which", lambda _name: None)
    out = tmp_path / "run"
    code, err, _ = cli("search", "--out", out, "--device", "cpu", *tiny_sets("compile=true"))
    refused(code, err, "compile=true", "C++ compiler")
    assert not out.exists()


def test_compile_with_cxx_naming_a_missing_compiler_is_refused(tmp_path, monkeypatch):
    """CXX is the compiler inductor runs: one that is not there is refused, naming it, even
    where g++ is installed (which let it through before, to a compiler traceback at the first
    step and a silently eager run)."""
    monkeypatch.setenv("CXX", "no-such-compiler")
    out = tmp_path / "run"
    code, err, _ = cli("search", "--out", out, "--device", "cpu", *tiny_sets("compile=true"))
    refused(code, err, "compile=true", "C++ compiler", "CXX=no-such-compiler")
    assert not out.exists()


@pytest.fixture
def threads_kept():
    """torch's thread count as it was before the test (setup may change it)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_more_threads_than_cores_fall_back_to_the_cores(monkeypatch, capsys, threads_kept):
    from scinas.config import build_config
    from scinas.context import setup

    cores = parallel.usable_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 3))
    torch.set_num_threads(cores + 3)  # as torch took it from the variable at start
    setup(build_config("tiny", overrides=TINY))
    err = capsys.readouterr().err
    assert err.count("OMP_NUM_THREADS") == 1, err
    assert f"OMP_NUM_THREADS={cores + 3} asks for more threads than the {cores} CPU" in err
    assert torch.get_num_threads() == cores


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_a_thread_count_that_is_not_one_is_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    out = tmp_path / "run"
    code, err, _ = cli("search", "--out", out, *tiny_sets())
    refused(code, err, f"OMP_NUM_THREADS={value} is not a thread count", "or unset it")
    assert not out.exists()


def test_compile_runs_a_search(tmp_path, monkeypatch):
    """compile=true compiles the supernet in place and the search runs (the eager backend:
    dynamo's capture without inductor's C++ build, seconds instead of a minute)."""
    monkeypatch.setattr(precision, "BACKEND", "eager")
    compiled = []
    real = precision.maybe_compile

    def spy(model, enabled):
        out = real(model, enabled)
        compiled.append(getattr(out, "_compiled_call_impl", None) is not None)
        return out

    monkeypatch.setattr("scinas.strategies.oneshot.maybe_compile", spy)
    sets = [s for s in TINY if s.startswith("search.")]
    small = ["search.layers=1", "search.nodes=2", "search.ops=[skip_connect,sep_conv_3x3]"]
    extra = [*small, "compile=true", "search.arch_lr=3e-4"]  # dynamo traces every op: few
    args = [a for s in [*sets, *extra] for a in ("--set", s)]
    code, err, stdout = cli("search", "--out", tmp_path / "run", "--quiet", *args)
    assert code == 0, err
    assert compiled == [True]
    assert json.loads(stdout.strip().splitlines()[-1])["normal"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_live_on_the_gpu_and_match_the_cpu_ones():
    """GPU data feeding: the raw data moves to the device once, batches are gathered and
    normalised there, and equal the CPU path's."""
    from scinas.placement import Placement

    x = torch.randint(0, 255, (70, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(70) % 10
    cpu = Placement(torch.device("cpu"), False, [0.5] * 3, [0.2] * 3)
    gpu = Placement(torch.device("cuda"), False, [0.5] * 3, [0.2] * 3)
    b_cpu, b_gpu = cpu.batches(x, y, 32, shuffle=True), gpu.batches(x, y, 32, shuffle=True)
    assert b_gpu.x.is_cuda
    for (xc, yc), (xg, yg) in zip(b_cpu, b_gpu, strict=True):
        assert xg.is_cuda and torch.allclose(xc, xg.cpu()) and torch.equal(yc, yg.cpu())


# ----------------------------------------------------------------------------- precision=auto


def test_dense_share_counts_dense_kernels_against_the_rest():
    """On 1×8×8: a dense 3×3 (4,608 FLOPs), a depthwise 3×3 (4,608), a 1×1 (4,096) and a linear
    layer (10,240): the dense share is 4,608 / 23,552, and the counts add up to torch's."""
    from scinas.flops import count_flops

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False),
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
        torch.nn.Conv2d(4, 8, 1, bias=False),
        torch.nn.Flatten(),
        torch.nn.Linear(512, 10),
    )
    assert count_flops(net, (1, 8, 8)) == 23_552
    assert precision.dense_share(net, (1, 8, 8)) == pytest.approx(4_608 / 23_552)
    assert precision.dense_share(torch.nn.Sequential(torch.nn.Flatten()), (1, 2, 2)) == 0.0


def _baselines():
    from scinas.spaces.baselines import BASELINES, SERIES_ONLY

    return [(n, (1, 64) if n in SERIES_ONLY else (3, 16, 16)) for n in BASELINES.names()]


def _build(name, shape):
    import scinas
    from scinas.spaces import load_genotype, space_of

    arch = load_genotype(name)
    return space_of(arch).build_network(arch, scinas.build_config("tiny").train, shape, 10)


@pytest.mark.parametrize("name, shape", _baselines())
def test_auto_takes_bf16_for_every_baseline_on_amx_only(monkeypatch, name, shape):
    """Every hand-designed baseline is dense convolutions (its share at least DENSE_SHARE): bf16
    where the CPU has AMX-BF16, fp32 where it has not and on a GPU (not measured there)."""
    net = _build(name, shape)
    assert precision.dense_share(net, shape) >= precision.DENSE_SHARE
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "has_amx_bf16", lambda: True)
    assert precision.resolve("auto", net, shape, cpu)[0] == "bf16"
    assert precision.resolve("auto", net, shape, torch.device("cuda"))[0] == "fp32"
    assert precision.resolve("fp32", net, shape, cpu) == ("fp32", None)
    monkeypatch.setattr(precision, "has_amx_bf16", lambda: False)
    chosen, why = precision.resolve("auto", net, shape, cpu)
    assert chosen == "fp32" and "AMX" in why


def test_auto_keeps_fp32_for_depthwise_cells_and_supernets(monkeypatch):
    """DARTS cells (depthwise-separable) and a supernet, where bf16 measured slower: fp32."""
    monkeypatch.setattr(precision, "has_amx_bf16", lambda: True)
    cell = _build("DARTS_V2", (1, 16, 16))
    supernet = Supernet(1, 10, (8, 8), C=4, layers=2)
    for net, shape in ((cell, (1, 16, 16)), (supernet, (1, 8, 8))):
        chosen, why = precision.resolve("auto", net, shape, torch.device("cpu"))
        assert chosen == "fp32" and "dense convolutions do" in why


def test_dense_share_leaves_the_network_and_the_rng_alone():
    """Its forward pass changes no BatchNorm statistic, no mode and no random state, so a run's
    numbers depend on auto only through the precision it picks."""

    class Draws(torch.nn.Module):
        def forward(self, x):
            return x + torch.rand(1)

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), Draws())
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    precision.dense_share(net, (1, 6, 6))
    assert net.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_dense_share_runs_a_compiled_network_eagerly():
    """compile=true compiles the network before its trainer is made: the share's one-sample
    forward must not make the compiler trace an evaluation graph of batch 1."""
    traced = []

    def backend(gm, _example_inputs):
        traced.append(gm)
        return gm.forward

    class Net(torch.nn.Module):  # dynamo skips torch.nn's own containers: a module of ours
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(144, 2)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    net = Net()
    net.compile(backend=backend)
    assert precision.dense_share(net, (1, 8, 8)) == pytest.approx(2 * 144 * 9 / (2 * 144 * 9 + 576))
    assert traced == []
    net(torch.zeros(2, 1, 8, 8))  # the backend is live: a real call compiles
    assert traced


def test_dense_share_of_a_network_that_cannot_take_one_sample_is_zero():
    class NeedsTwo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            if len(x) < 2:
                raise RuntimeError("needs a batch of two")
            return self.conv(x)

    assert precision.dense_share(NeedsTwo(), (1, 8, 8)) == 0.0


@pytest.mark.parametrize("amx, chosen", [(True, "bf16"), (False, "fp32")])
def test_auto_trains_a_resnet_in_its_choice_and_says_so(tmp_path, monkeypatch, amx, chosen):
    """`scinas train --genotype resnet_tiny` with the default precision: the log names auto's
    choice, the convolutions' outputs are in that dtype, config.json keeps "auto"."""
    monkeypatch.setattr(precision, "has_amx_bf16", lambda: amx)
    seen = []
    original = precision.Mixed.autocast

    def autocast(self):
        seen.append(self.precision)
        return original(self)

    monkeypatch.setattr(precision.Mixed, "autocast", autocast)
    out = tmp_path / "run"
    code, err, stdout = cli("train", "--genotype", "resnet_tiny", "--out", out, *tiny_sets())
    assert code == 0, err
    assert f"precision auto -> {chosen}" in stdout + err
    assert seen and set(seen) == {chosen}
    assert json.loads((out / "config.json").read_text())["precision"] == "auto"
