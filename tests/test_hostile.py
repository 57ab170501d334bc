"""Hostile input and faults (issue 17): every refusal is one clear message and exit code 2, with
no traceback and nothing written or overwritten.

A few real `scinas` processes check the contract at the process boundary; most cases run the
CLI in-process (`typer.testing.CliRunner`: the same exit code and stderr, without four seconds
of start-up each), and the rest are unit tests of the one place each class is handled.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY, tiny_sets
from scinas import memory
from scinas.checkpoint import Checkpointer
from scinas.cli import app
from scinas.config import Config, build_config
from scinas.errors import UserError
from scinas.progress import Reporter
from scinas.rundir import (
    RunDir,
    RunLock,
    check_out_dir,
    foreign_entries,
    load_state,
    read_json,
    read_mapping,
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
X = np.zeros((20, 8, 8), np.uint8)
Y = np.arange(20) % 2


def scinas(*args: str) -> subprocess.CompletedProcess:
    """A real `scinas` process."""
    return subprocess.run(
        [sys.executable, "-m", "scinas", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )


def cli(*args: str):
    """The CLI in this process: (exit code, stderr)."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exit_code not in (0, 2) or not isinstance(res.exception, SystemExit | None):
        raise AssertionError(f"scinas {' '.join(map(str, args))}: {res.exception!r}\n{res.output}")
    return res.exit_code, res.stderr


def refused(code: int, err: str, *phrases: str) -> None:
    """Exit code 2, one `error:` line naming the problem, no traceback."""
    assert code == 2, err
    assert err.count("error:") == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


def snapshot(path: Path) -> dict:
    """Every file under ``path`` with its bytes: nothing may change after a refusal."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny `scinas run` (copied by each test that changes it)."""
    from scinas.pipeline import run

    out = tmp_path_factory.mktemp("finished") / "run"
    run(build_config(overrides=TINY), out, reporter=Reporter(quiet=True))
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


# ----------------------------------------------------------------------------- 1. memory


def test_memory_preflight_refuses_a_very_wide_network_fast_and_writes_nothing(tmp_path):
    """Real process: train.C=4096 (its bound) needs over 100 GiB; the refusal names the figure
    and what to lower, and takes seconds (nothing is built but on the meta device)."""
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = scinas("run", "--out", out, "--set", "train.C=4096", "-q")
    seconds = time.perf_counter() - t0
    refused(proc.returncode, proc.stderr, "does not fit in memory", "GiB", "train.C (4096)")
    assert "train.batch_size" in proc.stderr and "Nothing was written" in proc.stderr
    assert not out.exists()
    assert seconds < 60, seconds  # start-up, data and the meta-device count; no real build


def test_memory_preflight_refuses_huge_images_before_the_search(tmp_path):
    data = npz(tmp_path / "big.npz", x_train=np.zeros((12, 2048, 2048), np.uint8), y_train=Y[:12])
    out = tmp_path / "out"
    code, err = cli("run", "--out", out, "--data", data, "-q")
    refused(code, err, "supernet", "does not fit in memory", "with cell checkpointing", "2048×2048")
    assert not out.exists()


@pytest.mark.parametrize(
    "strategy_sets, phrase",
    [
        (["search.C=4096"], "supernet"),
        (["search.strategy=random", "search.C=4096"], "a search candidate"),
        (["search.space=baseline", "search.strategy=random", "search.batch_size=100"], ""),
    ],
)
def test_memory_preflight_covers_every_search_kind(tmp_path, monkeypatch, strategy_sets, phrase):
    """One-shot supernets, black-box candidates, and the hand-designed networks (where only the
    batch size and image size are offered as what to lower)."""
    from scinas.pipeline import search

    if "search.space=baseline" in strategy_sets:  # small networks: a small memory, not a batch
        # larger than the data (which is refused as that, issue 36)
        monkeypatch.setattr(memory, "available_memory", lambda device=None: 1 << 20)
    cfg = build_config(overrides=[*TINY_FOR(strategy_sets), *strategy_sets])
    with pytest.raises(UserError, match="does not fit in memory") as e:
        search(cfg, tmp_path / "out", reporter=Reporter(quiet=True))
    assert phrase in str(e.value)
    if "baseline" in str(strategy_sets):
        assert "search.C" not in str(e.value) and "search.batch_size" in str(e.value)
    assert not (tmp_path / "out").exists()


def TINY_FOR(sets):
    from conftest import for_strategy

    return [s for s in for_strategy([*sets, *TINY]) if s not in sets]


def test_memory_refusal_suggests_a_batch_size_that_fits(monkeypatch, tmp_path):
    from scinas.pipeline import train

    cfg = build_config(overrides=TINY)
    # a batch of all 120 samples does not fit in 8 MiB (a batch larger than the data would be
    # refused as that instead, issue 36)
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 8 << 20)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 120})})
    with pytest.raises(UserError, match=r"--set train.batch_size=\d+ would fit") as e:
        train(cfg, "DARTS_V2", tmp_path / "out", reporter=Reporter(quiet=True))
    fits = int(str(e.value).split("train.batch_size=")[1].split()[0])
    assert not (tmp_path / "out").exists()
    # the suggestion passes the same check, with the same memory
    from scinas.context import setup
    from scinas.preflight import check_train
    from scinas.spaces import load_genotype

    smaller = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": fits})})
    check_train(setup(smaller, Reporter(quiet=True)), load_genotype("DARTS_V2"))


def test_memory_estimate_tracks_what_a_training_step_takes():
    """The meta-device forward sees what a real forward saves for backward (the same bytes,
    counted the same way on CPU), the parameter count is the real network's, and the estimate
    grows with the batch, C and the image size."""
    from scinas.spaces import SPACES

    space = SPACES.get("darts")
    arch = space.planning_stand_in()
    t = build_config(overrides=["train.C=8", "train.batch_size=16"]).train

    def need(t, shape):
        return memory.network_need(
            lambda: space.build_network(arch, t, shape, 10),
            section=t,
            name="train",
            what="x",
            input_shape=shape,
            n_samples=0,
            sample_bytes=0,
        )

    small = need(t, (1, 16, 16))
    net = space.build_network(arch, t, (1, 16, 16), 10).train()
    assert small.params == sum(p.numel() for p in net.parameters())
    saved, keep = {}, []

    def pack(x):
        saved.setdefault(id(x), x.numel() * x.element_size())
        keep.append(x)
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        net(torch.randn(16, 1, 16, 16))
    real = sum(saved.values())
    estimate = small.activation_bytes / memory.BACKWARD_FACTOR
    assert 0.9 * real <= estimate <= 1.1 * real, (estimate, real)
    bigger_batch = need(t.model_copy(update={"batch_size": 32}), (1, 16, 16))
    assert bigger_batch.activation_bytes > 1.9 * small.activation_bytes
    assert need(t.model_copy(update={"C": 16}), (1, 16, 16)).total > small.total
    assert need(t, (1, 32, 32)).activation_bytes > 3 * small.activation_bytes


def test_the_preflight_measures_each_network_once_per_process(monkeypatch):
    """A second preflight of the same sizes (a compare's next seed, the next run in a session)
    reuses what the meta builds measured, with the same verdict; other sizes are measured."""
    from scinas.context import setup
    from scinas.preflight import check_search, check_train
    from scinas.spaces import SPACES

    monkeypatch.setattr(memory, "_MEASURED", {})
    built = []
    real = memory.on_meta
    monkeypatch.setattr(memory, "on_meta", lambda b, w: built.append(w) or real(b, w))
    s = setup(build_config(overrides=TINY), Reporter(quiet=True))
    arch = SPACES.get("darts").planning_stand_in()
    check_search(s)
    check_train(s, arch)
    first = len(built)
    assert first >= 2  # the supernet and the final network
    check_search(s)
    check_train(s, arch)
    assert len(built) == first
    wider = build_config(overrides=[*TINY, "train.C=6", "search.C=6"])
    check_search(setup(wider, Reporter(quiet=True)))
    check_train(setup(wider, Reporter(quiet=True)), arch)
    assert len(built) == 2 * first


def test_absurd_class_labels_are_refused_quickly(tmp_path):
    data = npz(tmp_path / "d.npz", x_train=X, y_train=np.r_[Y[:-1], 10**9])
    t0 = time.perf_counter()
    code, err = cli("run", "--out", tmp_path / "out", "--data", data, "-q")
    refused(code, err, "1000000000", "class ids 0..K-1", "return_inverse")
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "out").exists()
    # more classes than samples (beyond a plausible subset of a labelled set) is refused too
    data = npz(tmp_path / "e.npz", x_train=X, y_train=np.r_[Y[:-1], 5000])
    refused(*cli("run", "--out", tmp_path / "out", "--data", data, "-q"), "5,001 classes")
    # float labels too large for int64 are refused before they wrap around
    data = npz(tmp_path / "f.npz", x_train=X, y_train=np.r_[Y[:-1], 1e300].astype(np.float64))
    refused(*cli("run", "--data", data, "--task", "classification", "-q"), "class ids")


# ----------------------------------------------------------------------------- 2. file system


def test_out_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub"
    refused(*cli("run", "--out", out, *tiny_sets(), "-q"), "regular file", str(tmp_path / "afile"))


def test_out_where_directories_cannot_be_made_is_refused(tmp_path):
    """A read-only place: /sys refuses mkdir even to root (EPERM), a 0555 folder to others."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out = ro / "run"
    else:
        out = Path("/sys/scinas-hostile-test")
        try:
            out.mkdir()
        except OSError:
            pass
        else:
            out.rmdir()
            pytest.skip("/sys accepts new folders here")
    code, err = cli("run", "--out", out, *tiny_sets(), "-q")
    refused(code, err, f"cannot create --out {out}", "read-only")
    assert not out.exists()


def test_run_dir_creation_failure_is_one_message_and_leaves_out_as_it_was(
    monkeypatch, tmp_path, run_copy
):
    """The one place: an OSError while creating the run directory (here EROFS while writing
    run.json) is a UserError; a new --out is removed, and a run being replaced is put back."""
    import scinas.rundir as rundir

    real = rundir.atomic_write

    def failing(path, write):
        if path.name == "run.json":
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real(path, write)

    monkeypatch.setattr(rundir, "atomic_write", failing)
    new = tmp_path / "a" / "b" / "new"
    with pytest.raises(UserError, match="Read-only file system"):
        RunDir.create(new, kind="run", config={})
    assert not (tmp_path / "a").exists()
    before = snapshot(run_copy)
    with pytest.raises(UserError, match="Read-only file system"):
        RunDir.create(run_copy, kind="run", config={}, overwrite=True)
    assert snapshot(run_copy) == before
    assert [p.name for p in tmp_path.iterdir() if "replaced" in p.name] == []


@pytest.mark.parametrize(
    "name, content, verbs",
    [
        ("run.json", "{bad json", ["resume", "report", "evaluate", "out"]),
        ("run.json", "[1, 2]", ["resume", "report", "evaluate"]),
        ("config.json", "{", ["resume", "report", "evaluate", "export"]),
        ("config.json", '"a string"', ["resume", "report", "evaluate", "export"]),
        ("data.json", "[]", ["evaluate", "export"]),
    ],
)
def test_corrupt_or_non_mapping_run_files_are_named(run_copy, name, content, verbs):
    (run_copy / "results.json").unlink()  # unfinished, so --resume gets as far as reading it
    (run_copy / name).write_text(content)
    before = snapshot(run_copy)
    args = {
        "resume": ["run", "--resume", run_copy],
        "report": ["report", run_copy],
        "evaluate": ["evaluate", run_copy],
        "export": ["export", run_copy, "--format", "pt2"],
        "out": ["run", "--out", run_copy, *tiny_sets()],
    }
    for verb in verbs:
        code, err = cli(*args[verb])
        refused(code, err)
        assert "corrupt" in err, (verb, err)
        assert snapshot(run_copy) == before, verb


def test_symlinked_out_with_overwrite_is_refused(tmp_path, run_copy):
    link = tmp_path / "link"
    link.symlink_to(run_copy)
    before = snapshot(run_copy)
    code, err = cli("run", "--out", link, "--overwrite", *tiny_sets(), "-q")
    refused(code, err, "symbolic link", f"--out {run_copy}")
    assert link.is_symlink() and snapshot(run_copy) == before
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "nowhere")
    refused(*cli("run", "--out", broken, *tiny_sets(), "-q"), "broken symbolic link")


@pytest.mark.parametrize("verb", ["report", "evaluate", "export"])
def test_output_into_a_missing_folder_is_refused_before_any_work(run_copy, tmp_path, verb):
    """Checked first: with an unknown --data as well, the message is about --output (the data
    would have been read first otherwise), and the run directory is untouched."""
    output = tmp_path / "no" / "such" / "file.out"
    extra = {
        "report": [],
        "evaluate": ["--data", "/nonexistent.npz"],
        "export": ["--format", "pt2"],
    }[verb]
    before = snapshot(run_copy)
    code, err = cli(verb, run_copy, "--output", output, *extra)
    refused(code, err, "--output", "does not exist")
    assert snapshot(run_copy) == before and not (run_copy / "figures").exists()
    refused(*cli(verb, run_copy, "--output", tmp_path, *extra), "is a directory")


def test_enospc_while_writing_a_checkpoint_keeps_the_previous_one(monkeypatch, tmp_path):
    """A disk that fills up during the second training checkpoint (simulated ENOSPC after half
    the bytes): one message saying how to continue, the partial file gone, the previous
    checkpoint whole and loadable, no lock left; resuming after that finishes the run."""
    import scinas.checkpoint as checkpoint
    from scinas.pipeline import run

    real = checkpoint.atomic_write

    def full_disk(path, write):
        if path.name != "train-2.pt":
            return real(path, write)

        def half(f):
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")

        real(path, half)

    monkeypatch.setattr(checkpoint, "atomic_write", full_disk)
    out = tmp_path / "run"
    cfg = build_config(overrides=[*TINY, "train.epochs=3"])
    with pytest.raises(UserError) as e:
        run(cfg, out, reporter=Reporter(quiet=True))
    message = str(e.value)
    assert "No space left on device" in message and "train-1.pt" in message, message
    assert f"scinas run --resume {out}" in message
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["train-1.pt"], names
    assert torch.load(out / "checkpoints" / "train-1.pt", weights_only=True)["phase"] == "train"
    assert not (out / ".lock").exists() and not (out / "results.json").exists()
    monkeypatch.setattr(checkpoint, "atomic_write", real)
    run(cfg, out, reporter=Reporter(quiet=True), resume=True)
    assert (out / "results.json").is_file() and not (out / "checkpoints").exists()


def test_a_full_disk_elsewhere_in_the_run_is_one_message(monkeypatch, tmp_path):
    """Any write the disk refuses inside a run (here the metrics log) ends it with the same
    message, not an OSError traceback."""
    out = tmp_path / "run"
    run = RunDir.create(out, kind="train", config={})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunDir, "_append", full)
    message = "No space left on device.*scinas train --resume"
    with pytest.raises(UserError, match=message), run.working():
        run.log_event({"event": "x"})
    assert not (out / ".lock").exists()


# ----------------------------------------------------------------------------- 3. finite settings


def _float_fields():
    """Every float setting: the shared sections' fields and each strategy's own."""
    from typing import get_args

    from scinas.config import CompareConfig, DataConfig, SearchConfig, TrainConfig
    from scinas.strategies import STRATEGIES

    def floats(model):
        for key, f in model.model_fields.items():
            if f.annotation is float or float in get_args(f.annotation):
                yield key

    out = [
        (f"{name}.{key}", None)
        for name, model in [
            ("data", DataConfig),
            ("search", SearchConfig),
            ("train", TrainConfig),
            ("compare", CompareConfig),
        ]
        for key in floats(model)
    ]
    for strategy in STRATEGIES:
        for key in floats(STRATEGIES.get(strategy).Settings):
            if (f"search.{key}", strategy) not in out and not any(
                k == f"search.{key}" for k, _ in out
            ):
                out.append((f"search.{key}", strategy))
    return out


@pytest.mark.parametrize("key, strategy", _float_fields())
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_every_float_setting_must_be_finite(key, strategy, value):
    sets = [f"{key}={value}"] + ([f"search.strategy={strategy}"] if strategy else [])
    with pytest.raises(UserError, match="finite number") as e:
        build_config(overrides=sets)
    assert key.split(".")[1] in str(e.value)


def test_non_finite_setting_refused_before_the_run_directory_exists(tmp_path):
    out = tmp_path / "out"
    code, err = cli("run", "--out", out, *tiny_sets("train.lr=inf"), "-q")
    refused(code, err, "train.lr", "finite number")
    assert not out.exists()


def test_the_config_is_serialised_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"at train\.lr"):
        RunDir.create(out, kind="run", config={"train": {"lr": float("inf")}})
    assert not out.exists()


# ----------------------------------------------------------------------------- 4. storage URLs


def test_storage_urls_are_checked_before_anything_is_written(tmp_path):
    import sqlite3

    from scinas.strategies.blackbox import check_storage_url

    (tmp_path / "notes.txt").write_text("not a database at all")
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "empty.db").touch()
    sqlite3.connect(tmp_path / "real.db").execute("create table t (x)").connection.close()
    for name, phrase in [("notes.txt", "not a SQLite database"), ("folder.db", "is a directory")]:
        with pytest.raises(UserError, match=phrase):
            check_storage_url(f"sqlite:///{tmp_path / name}")
    for name in ("empty.db", "real.db", "new.db"):
        check_storage_url(f"sqlite:///{tmp_path / name}")
    out = tmp_path / "out"
    storage = f"search.storage=sqlite:///{tmp_path / 'notes.txt'}"
    sets = [a for item in [*TINY_FOR(["search.strategy=random"]), storage] for a in ("--set", item)]
    code, err = cli("run", "--out", out, "--strategy", "random", *sets)
    refused(code, err, "not a SQLite database")
    assert not out.exists() and (tmp_path / "notes.txt").read_text() == "not a database at all"


# ----------------------------------------------------------------------------- 5. --overwrite


def test_overwrite_never_deletes_files_scinas_did_not_write(tmp_path, run_copy):
    """Real process: a run directory with the user's files in it is refused, listing them."""
    (run_copy / "thesis.tex").write_text("keep me")
    (run_copy / "data").mkdir()
    (run_copy / "data" / "raw.csv").write_text("1,2")
    before = snapshot(run_copy)
    proc = scinas("run", "--out", run_copy, "--overwrite", *tiny_sets(), "-q")
    refused(proc.returncode, proc.stderr, "did not write", "thesis.tex", "data/")
    assert snapshot(run_copy) == before


def test_what_counts_as_a_scinas_run_directory(tmp_path, finished):
    """Everything a run writes (checkpoints, the report, exports, a study, compare's nested runs)
    is scinas's; anything else is foreign, listed a few at a time."""
    root = tmp_path / "cmp"
    for sub in ("darts/seed0", "resnet10/seed0"):
        shutil.copytree(finished, root / sub)
    shutil.copy(finished / "run.json", root / "run.json")
    (root / "compare.json").write_text("{}")
    (root / "darts" / "seed0" / "checkpoints").mkdir()
    (root / "darts" / "seed0" / ".model.pt.abc.tmp").write_text("")
    assert foreign_entries(root) == []
    check_out_dir(root, overwrite=True)
    (root / "darts" / "seed0" / "mine.txt").write_text("x")
    (root / "link").symlink_to(tmp_path)
    assert foreign_entries(root) == ["darts/seed0/mine.txt", "link"]
    for i in range(8):
        (root / f"f{i}").write_text("")
    with pytest.raises(UserError, match=r"and \d+ more"):
        check_out_dir(root, overwrite=True)


# ----------------------------------------------------------------------------- 6. refusals


def test_corrupt_npz_never_advises_allow_pickle(tmp_path):
    from scinas.data.npz import read_npz

    good = npz(tmp_path / "good.npz", x_train=X, y_train=Y).read_bytes()
    (tmp_path / "junk.npz").write_bytes(b"hello world" * 10)
    obj = np.array([{"a": 1}] * 20, dtype=object)
    np.savez(tmp_path / "obj.npz", x_train=obj, y_train=Y)
    for name in ("junk.npz", "obj.npz"):
        code, err = cli("run", "--data", tmp_path / name, "--out", tmp_path / "out", "-q")
        refused(code, err, name)
        assert "allow_pickle" not in err and "pickle.load" not in err
    rng = np.random.default_rng(0)
    for _ in range(200):  # damaged archives: flipped bytes, truncations
        b = bytearray(good)
        for j in rng.integers(0, len(b), rng.integers(1, 6)):
            b[j] = rng.integers(0, 256)
        if rng.random() < 0.3:
            b = b[: rng.integers(0, len(b))]
        (tmp_path / "bad.npz").write_bytes(bytes(b))
        try:
            read_npz(tmp_path / "bad.npz")
        except UserError as e:
            assert "allow_pickle" not in str(e)


def test_npz_whose_header_declares_absurd_sizes_is_refused_with_them(tmp_path):
    import io
    import zipfile

    from scinas.data.npz import read_npz

    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        head = io.BytesIO()
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
        np.lib.format.write_array_header_1_0(head, header)
        z.writestr("x_train.npy", head.getvalue() + b"0" * 100)
        z.writestr("y_train.npy", b"")
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=r"\(1000000, 1000000\).*8,000,000,000,000 bytes"):
        read_npz(tmp_path / "huge.npz")
    assert time.perf_counter() - t0 < 5


def test_model_file_that_would_run_code_is_refused_as_unsafe(run_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": Evil()}, run_copy / "model.pt")
    for args in (["evaluate", run_copy], ["export", run_copy, "--format", "safetensors"]):
        code, err = cli(*args)
        refused(code, err, "refused as unsafe", "would run code")
        assert "weights_only" not in err and not marker.exists()
    with pytest.raises(UserError, match="unsafe"):
        load_state(run_copy / "model.pt")
    (run_copy / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="corrupt or not a PyTorch file") as e:
        load_state(run_copy / "model.pt")
    assert "weights_only" not in str(e.value)


def test_refusals_that_name_the_fix(tmp_path, run_copy):
    folder = tmp_path / "folder"
    folder.mkdir()
    # a genotype path that is a directory
    refused(*cli("train", "--genotype", folder, "-q"), f"no genotype.json in {folder}")
    # train --resume on a `run` directory names the verb to use
    (run_copy / "results.json").unlink()
    refused(*cli("train", "--resume", run_copy), f"scinas run --resume {run_copy}")
    # a config path that is a directory
    refused(*cli("run", "--config", folder, "-q"), "is a directory")


def test_idx_header_whose_sizes_overflow_is_refused_with_the_sizes(tmp_path):
    from scinas.data.idx import read_idx

    dims = (2**32 - 1,) * 4
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 4]) + struct.pack(">4I", *dims) + b"x" * 100)
    with pytest.raises(UserError, match=r"\(4294967295, 4294967295, 4294967295, 4294967295\)"):
        read_idx(path)


@pytest.mark.parametrize(
    "x",
    [np.zeros((20, 0), np.float32), np.zeros((20, 0, 8), np.uint8), np.zeros((20, 8, 8, 0))],
)
def test_samples_without_values_are_refused(tmp_path, x):
    data = npz(tmp_path / "d.npz", x_train=x, y_train=Y)
    refused(*cli("run", "--data", data, "--out", tmp_path / "out", "-q"), "0 ")
    assert not (tmp_path / "out").exists()


def test_regression_targets_without_columns_are_refused(tmp_path):
    data = npz(tmp_path / "d.npz", x_train=X, y_train=np.zeros((20, 0), np.float32))
    refused(*cli("run", "--data", data, "--task", "regression", "-q"), "K ≥ 1")


# ----------------------------------------------------------------------------- 7. tidy ends


def test_a_finished_run_leaves_no_lock_no_empty_checkpoints_and_one_file_mode(finished):
    assert not (finished / ".lock").exists()
    assert not (finished / "checkpoints").exists()
    probe = finished.parent / "probe"
    probe.write_text("")  # what a plain open() makes under this umask
    expected = stat.S_IMODE(probe.stat().st_mode)
    modes = {
        p.relative_to(finished): stat.S_IMODE(p.stat().st_mode)
        for p in finished.rglob("*")
        if p.is_file()
    }
    assert modes and all(m == expected for m in modes.values()), modes


def test_lock_file_is_removed_and_a_waiting_opener_relocks_the_new_one(tmp_path):
    first = RunLock(tmp_path).acquire()
    stale = os.open(tmp_path / ".lock", os.O_RDWR)  # opened just before the holder finishes
    first.release(remove=True)
    assert not (tmp_path / ".lock").exists()
    os.close(stale)
    second = RunLock(tmp_path).acquire()
    with pytest.raises(UserError, match="in use by another scinas process"):
        RunLock(tmp_path).acquire()
    second.release(remove=True)
    assert not (tmp_path / ".lock").exists()


def test_no_fallback_warning_for_the_oldest_checkpoint(tmp_path):
    class Log:
        lines: list[str] = []

        def log(self, text):
            self.lines.append(text)

    run = RunDir.create(tmp_path / "run", kind="run", config={})
    ckpt = Checkpointer(run, "search", Log())
    ckpt.save({"epoch": 1})
    ckpt.save({"epoch": 2})
    for path in ckpt._files():
        path.write_bytes(path.read_bytes()[:50])
    assert ckpt.load() is None
    newest, oldest = Log.lines
    assert "search-2.pt" in newest and "falling back to the one before" in newest
    assert "search-1.pt" in oldest and "falling back" not in oldest and "starts over" in oldest
    run.close()


def test_json_readers_name_the_file(tmp_path):
    (tmp_path / "a.json").write_text("{")
    (tmp_path / "b.json").write_text("[1]")
    with pytest.raises(UserError, match="a.json is corrupt"):
        read_json(tmp_path / "a.json")
    with pytest.raises(UserError, match="b.json is corrupt: it holds a JSON list"):
        read_mapping(tmp_path / "b.json")
    assert Config.model_validate({}).seed == 0


def test_a_last_batch_of_one_at_1x1_maps_is_refused_before_the_run(tmp_path):
    """BatchNorm cannot train on one value per channel: feature vectors (1×1 maps) whose
    training subset leaves a last batch of one sample used to raise mid-run, after the run
    directory existed; a one-shot search needs two samples to split."""
    from scinas.context import setup
    from scinas.preflight import check_search, check_train

    rng = np.random.default_rng(0)
    data = npz(
        tmp_path / "f.npz", x_train=rng.random((60, 5), np.float32), y_train=np.arange(60) % 2
    )
    sets = [*TINY, "train.max_samples=33", "train.batch_size=32"]
    s = setup(build_config(overrides=sets, data__dataset=str(data)), Reporter(quiet=True))
    check_search(s)
    with pytest.raises(UserError, match=r"last batch of one sample.*train.batch_size=33"):
        check_train(s)
    images = npz(tmp_path / "i.npz", x_train=rng.random((60, 8, 8)), y_train=np.arange(60) % 2)
    check_train(
        setup(build_config(overrides=sets, data__dataset=str(images)), Reporter(quiet=True))
    )
    two = npz(
        tmp_path / "two.npz",
        x_train=X[:1],
        y_train=Y[:1],
        x_val=X[:4],
        y_val=Y[:4],
        x_test=X[:4],
        y_test=Y[:4],
    )
    s = setup(build_config(overrides=TINY, data__dataset=str(two)), Reporter(quiet=True))
    with pytest.raises(UserError, match="splits its training samples in two"):
        check_search(s)


def test_a_checkpoint_the_network_no_longer_fits_is_one_message(tmp_path, monkeypatch):
    """A run resumed when its settings build another network than the one checkpointed (here
    the DARTS space's default ops changed between the run and its resume, as a new version's
    defaults could) is refused with one message naming the checkpoint and the mismatch, not
    torch's traceback; its checkpoint is kept, and the run resumes where the network fits."""
    from conftest import FEW_OPS, scinas_cli
    from scinas.ops import DARTS_OPS
    from scinas.signals import STOP
    from scinas.spaces.darts import DartsSpace

    save = Checkpointer.save

    def save_then_stop(self, state):
        save(self, state)
        STOP.requested = True  # stopped right after the first epoch's checkpoint

    monkeypatch.setattr(Checkpointer, "save", save_then_stop)
    out = tmp_path / "run"
    res = scinas_cli("search", "--out", out, *tiny_sets("search.epochs=2"))
    assert res.returncode == 130 and "--resume" in res.stderr, res.stderr
    monkeypatch.setattr(Checkpointer, "save", save)
    checkpoints = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    assert checkpoints

    monkeypatch.setattr(DartsSpace, "default_ops", lambda self: DARTS_OPS)
    code, err = cli("search", "--resume", str(out))
    refused(code, err, "checkpoints does not fit the network", "14×4 in the checkpoint, 14×8 built")
    assert "not in it, e.g." in err and "not in the network, e.g." in err and "--overwrite" in err
    assert not (out / "genotype.json").exists()
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == checkpoints

    monkeypatch.setattr(DartsSpace, "default_ops", lambda self: FEW_OPS)
    code, err = cli("search", "--resume", str(out))
    assert code == 0 and (out / "genotype.json").is_file(), err
