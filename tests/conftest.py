from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

from scinas.spaces.darts import DartsSpace

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PLUGINS = Path(__file__).resolve().parent / "plugins"  # throwaway entries, one file each

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist (`pytest -n 2`) each worker gets one core: one thread for torch here
    # and, through the environment, in every scinas process a test starts. Two workers with two
    # OpenMP threads each would spin against each other on 2 cores (5-10x slower).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Settings small enough that an end-to-end run takes seconds on 2 CPU cores.
TINY = [
    "search.epochs=1",
    "search.C=4",
    "search.layers=3",
    "search.max_samples=120",
    "search.batch_size=32",
    "train.epochs=1",
    "train.C=4",
    "train.layers=3",
    "train.max_samples=120",
    "train.batch_size=32",
    "report=false",  # report.html and its figures cost about a second; REPORT asks for them
]
REPORT = "report=true"  # after TINY: the run writes its report

# The DARTS space's default op set in the tests' own process: 4 of its 8 ops, one of each kind
# (the zero op, a parameter-free op, a separable convolution, a pooling), so every kind of edge
# the default has is searched at under half its compute. Tests of the 8-op default itself are
# marked `all_ops`; the scinas processes a test starts search the real default.
FEW_OPS = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3")
DARTS_DEFAULT_OPS = DartsSpace.default_ops


def for_strategy(sets: list[str]) -> list[str]:
    """``sets`` without the ``search.KEY`` settings that the strategy they name (darts when
    none) does not have, e.g. TINY's ``search.epochs`` for a black-box strategy (which the
    config refuses when given explicitly). Spaces' own settings are kept."""
    from scinas.config import SearchConfig
    from scinas.spaces import SPACES
    from scinas.strategies import STRATEGIES

    strategy = "darts"
    for item in sets:
        if item.startswith("search.strategy="):
            strategy = item.partition("=")[2]
    own = set(STRATEGIES.get(strategy).Settings.model_fields)
    own |= {k for name in SPACES for k in SPACES.get(name).Settings.model_fields}

    def keep(item: str) -> bool:
        key = item.partition("=")[0]
        if not key.startswith("search."):
            return True
        name = key.removeprefix("search.")
        return name in SearchConfig.model_fields or name in own

    return [item for item in sets if keep(item)]


def scinas_cli(*args) -> subprocess.CompletedProcess:
    """``scinas ARGS`` in this process (typer's runner), as `subprocess.run` of
    ``python -m scinas ARGS`` reports it: for the tests of what the CLI says and writes, where
    the process boundary is not what is tested (a process costs seconds of imports). An
    exception that would end a real process shows in stderr with its traceback, exit code 1."""
    from typer.testing import CliRunner

    from scinas.cli import app

    argv = [str(a) for a in args]
    res = CliRunner().invoke(app, argv, prog_name="scinas")
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(res.exception)
        )
    return subprocess.CompletedProcess(["scinas", *argv], res.exit_code, res.stdout, stderr)


def tiny_sets(*extra: str) -> list[str]:
    out = []
    for item in [*TINY, *extra]:
        out += ["--set", item]
    return out


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True, scope="module")
def _few_ops():
    """FEW_OPS as the DARTS space's default for a module's tests and its module-scoped fixtures
    (a run they share is searched as the tests resume it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DartsSpace, "default_ops", lambda self: FEW_OPS)
        yield


@pytest.fixture(autouse=True)
def _all_ops(request, monkeypatch):
    """The DARTS space's real default for a test marked `all_ops`."""
    if request.node.get_closest_marker("all_ops") is not None:
        monkeypatch.setattr(DartsSpace, "default_ops", DARTS_DEFAULT_OPS)


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture
def rotated_mnist_npz(tmp_path) -> Path:
    """A regression dataset from real images: MNIST digits rotated by a known angle.

    Targets (2 per image, different units): the rotation angle in degrees and the image's ink
    mass (sum of pixel values / 255) after rotation.
    """
    from scinas.data.idx import read_idx

    x = read_idx(shared("mnist", "t10k-images-idx3-ubyte.gz"))[:600].astype(np.float32) / 255
    rng = np.random.default_rng(0)
    angle = rng.uniform(-60, 60, len(x)).astype(np.float32)
    theta = np.deg2rad(angle)
    cos, sin = np.cos(theta), np.sin(theta)
    mat = np.zeros((len(x), 2, 3), np.float32)
    mat[:, 0, 0], mat[:, 0, 1], mat[:, 1, 0], mat[:, 1, 1] = cos, -sin, sin, cos
    grid = torch.nn.functional.affine_grid(
        torch.from_numpy(mat), (len(x), 1, 28, 28), align_corners=False
    )
    rot = torch.nn.functional.grid_sample(
        torch.from_numpy(x)[:, None], grid, align_corners=False
    ).numpy()
    ink = rot.sum(axis=(1, 2, 3))
    y = np.stack([angle, ink], axis=1).astype(np.float32)
    path = tmp_path / "rotated_mnist.npz"
    np.savez(path, x_train=rot[:450], y_train=y[:450], x_test=rot[450:], y_test=y[450:])
    return path


@pytest.fixture
def lean_always(monkeypatch):
    """scinas.lean_ops' lean autograd functions for any input size (by default they switch on from
    LEAN_FROM elements, and test tensors are small)."""
    import scinas.lean_ops

    monkeypatch.setattr(scinas.lean_ops, "LEAN_FROM", 0)


@pytest.fixture(params=["gemm", "convolution"])
def pointwise_path(request, monkeypatch):
    """Each way `scinas.lean_ops.pointwise` computes a 1×1 convolution of a channels-last map
    (by its size, `GEMM_BELOW`: test maps are small)."""
    import scinas.lean_ops

    below = 1 << 62 if request.param == "gemm" else 0
    monkeypatch.setattr(scinas.lean_ops, "GEMM_BELOW", below)
    return request.param


@pytest.fixture
def plugin(monkeypatch):
    """``plugin(name)`` imports ``tests/plugins/<name>.py`` as a user's module would be, so the
    entries it registers exist for this test only (every registry is restored after it)."""
    import importlib.util

    from scinas.compare_methods import COMPARE_METHODS
    from scinas.data.formats import READERS
    from scinas.data.named import DATASETS
    from scinas.ops import OPS
    from scinas.registry import SPACES, STRATEGIES, TASKS

    for registry in (SPACES, STRATEGIES, TASKS, READERS, DATASETS, OPS, COMPARE_METHODS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"plugin_{name}", PLUGINS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # as an import would (dataclasses)
        spec.loader.exec_module(module)
        return module

    return load
