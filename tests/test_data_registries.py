"""Every data format, named dataset and task, tested the same way by iterating the registries.

A new reader, dataset or task is tested here without editing a list: readers bring their own
example input (``Reader.example``), datasets say where their files are (``NamedDataset.locate``)
and tasks bring example targets (``Task.example_targets``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scinas.data import load_dataset
from scinas.data.formats import READERS, find_reader
from scinas.data.named import (
    DATASETS,
    FILES,
    MIRRORS,
    NamedDataset,
    canonical_name,
    find_dataset,
    register_dataset,
)
from scinas.errors import UserError
from scinas.tasks import TASKS, detect_task, make_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def scratch_registries(monkeypatch):
    """Let a test register readers and datasets; they are gone again after it."""
    for registry in (READERS, DATASETS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    monkeypatch.setattr("scinas.data.named.MIRRORS", dict(MIRRORS))
    monkeypatch.setattr("scinas.data.named.FILES", dict(FILES))


def _sane(ds, name: str | None = None) -> None:
    """The invariants every loaded dataset must meet."""
    c, *sides = ds.input_shape  # (C, H, W) images or (C, L) series
    assert c >= 1 and len(sides) in (1, 2) and min(sides) >= 1
    for split in (ds.train, ds.val, ds.test):
        assert len(split) > 0 and tuple(split.x.shape[1:]) == tuple(ds.input_shape)
        assert len(split.y) == len(split)
    assert len(ds.mean) == len(ds.std) == c
    assert ds.task in TASKS and ds.num_outputs >= 1
    assert str(ds.num_outputs) in ds.summary()
    if name is not None:
        assert ds.name == name


# ---------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize("name", READERS.names())
def test_reader_recognises_and_reads_its_example(tmp_path, name):
    reader = READERS.get(name)
    path = reader.example(tmp_path / "example")
    assert path.exists()
    assert reader.recognises(path)
    # No reader asked before it claims its input.
    assert find_reader(path) == name
    ds = load_dataset(path)
    _sane(ds)
    assert not any("ignored" in n for n in ds.notes)


@pytest.mark.parametrize("name", READERS.names())
def test_reader_uses_or_notes_image_size(tmp_path, name):
    reader = READERS.get(name)
    path = reader.example(tmp_path / "example")
    plain = load_dataset(path)
    sized = load_dataset(path, image_size="6x6")
    if "image_size" in reader.uses:
        assert sized.input_shape == (plain.input_shape[0], 6, 6)
    else:
        assert sized.input_shape == plain.input_shape
        assert "image_size/fit ignored: they apply to image files only" in sized.notes


@pytest.mark.parametrize("name", READERS.names())
def test_reader_describes_itself(name):
    reader = READERS.get(name)
    assert reader.description and set(reader.uses) <= {"target_columns", "image_size"}


def test_unrecognised_file_lists_every_format(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(UserError, match="unsupported data file") as err:
        load_dataset(path)
    for name in READERS:
        assert READERS.get(name).description in str(err.value)


def test_a_new_reader_is_one_file(tmp_path, plugin):
    """tests/plugins/toy_reader.py only: found by its suffix, read into a dataset."""
    lines = [" ".join(str(v) for v in [i % 2, *range(i, i + 16)]) for i in range(20)]
    path = tmp_path / "digits.toy"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="unsupported data file"):
        load_dataset(path)
    plugin("toy_reader")
    assert find_reader(path) == "toy"
    ds = load_dataset(path, image_size="8x8")
    _sane(ds, "digits")
    assert ds.input_shape == (1, 4, 4) and ds.num_outputs == 2
    assert "image_size/fit ignored: they apply to image files only" in ds.notes
    assert READERS.get("toy").example(tmp_path / "ex").read_text() == path.read_text()
    other = tmp_path / "x.unknown"
    other.write_text("?")
    with pytest.raises(UserError, match=r"\.toy text files"):
        load_dataset(other)


def test_the_registered_reader_is_gone_after_the_test():
    assert "toy" not in READERS


# --------------------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", DATASETS.names())
def test_named_dataset_loads_when_its_files_are_present(name):
    dataset = DATASETS.get(name)
    if dataset.locate(SHARED) is None:
        pytest.skip(f"the files of '{name}' are not under {SHARED}")
    ds = load_dataset(name, data_dir=SHARED, download=False)
    _sane(ds, name)
    assert ds.class_names == dataset.class_names
    assert ds.num_outputs == len(dataset.class_names)


@pytest.mark.parametrize("name", DATASETS.names())
def test_named_dataset_names_and_aliases(name):
    dataset = DATASETS.get(name)
    for alias in (name, name.upper(), f" {name} ", *dataset.aliases):
        assert find_dataset(alias) is dataset
        assert canonical_name(alias) == name


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if DATASETS.get(n).files])
def test_missing_named_dataset_says_what_to_download(tmp_path, name):
    dataset = DATASETS.get(name)
    with pytest.raises(UserError, match="download=False") as err:
        load_dataset(name, data_dir=tmp_path, download=False)
    for file in dataset.files:
        assert file in str(err.value)
    assert dataset.mirrors[0] in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written without a download


def test_a_registered_dataset_is_one_entry(tmp_path, scratch_registries):
    from scinas.data.npz import read_npz

    folder = tmp_path / "toyset"
    folder.mkdir()
    x = np.arange(30 * 5 * 5).reshape(30, 5, 5).astype(np.uint8)
    np.savez(folder / "toy.npz", x_train=x, y_train=np.arange(30) % 3)
    register_dataset(
        NamedDataset(
            name="toyset",
            class_names=("a", "b", "c"),
            read=lambda f: read_npz(f / "toy.npz"),
            has_files=lambda f: (f / "toy.npz").is_file(),
            aliases=("toy-set",),
            folders=("toyset",),
        )
    )
    ds = load_dataset("Toy-Set", data_dir=tmp_path, download=False)
    _sane(ds, "toyset")
    assert ds.class_names == ("a", "b", "c")
    with pytest.raises(UserError, match="Did you mean 'toyset'"):
        load_dataset("toyst")


# ------------------------------------------------------------------------------------------ tasks


@pytest.mark.parametrize("name", TASKS.names())
def test_task_detects_and_parses_its_example_targets(name):
    task = TASKS.get(name)
    y = task.example_targets()
    assert task.detects(y)
    assert detect_task(y) == name  # no task asked before it claims them
    parsed = task.parse_targets(y, "y_train")
    assert len(parsed) == len(y) and parsed.dtype in (np.int64, np.float32)
    assert task.detection_note(y).startswith(f"task: {name}")


@pytest.mark.parametrize("name", TASKS.names())
def test_task_end_to_end_from_a_dataset(tmp_path, name):
    kind = TASKS.get(name)
    y = kind.example_targets(40)
    x = (np.arange(len(y) * 6 * 6).reshape(len(y), 6, 6) % 255).astype(np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y)
    ds = load_dataset(path)
    _sane(ds)
    assert ds.task == name and any(n.startswith(f"task: {name}") for n in ds.notes)
    assert load_dataset(path, task=name).task == name
    assert kind.describe_outputs(ds.num_outputs) in ds.summary()
    assert (ds.target_mean is not None) == kind.standardises_targets

    task = make_task(name, ds.num_outputs, ds.target_mean, ds.target_std)
    assert isinstance(task, kind) and task.num_outputs == ds.num_outputs
    out = torch.randn(len(ds.test), ds.num_outputs, requires_grad=True)
    loss = task.loss(out, task.encode_targets(ds.test.y))
    loss.backward()
    assert torch.isfinite(loss) and out.grad is not None
    metrics = task.metrics(out.detach(), ds.test.y)
    assert task.primary_metric in metrics and "loss" in metrics


@pytest.mark.parametrize("name", TASKS.names())
def test_other_tasks_refuse_or_convert_a_tasks_targets(name):
    """Forcing another task on a task's example targets either works or says which task fits."""
    y = TASKS.get(name).example_targets()
    for other in TASKS:
        if other == name:
            continue
        try:
            TASKS.get(other).parse_targets(y, "y_train")
        except UserError as e:
            assert "--task" in str(e)


@pytest.mark.slow
def test_a_new_task_is_one_file(tmp_path, plugin):
    """tests/plugins/count_task.py only: chosen by name, its targets parsed, searched, trained
    and reported with its own loss and metric."""
    import scinas
    from conftest import REPORT, TINY, for_strategy
    from scinas.progress import Reporter

    with np.load(Path(scinas.__file__).parent / "data" / "digits_8x8.npz") as z:
        x, y = z["x_train"][:160], z["y_train"][:160]
    path = tmp_path / "counts.npz"
    np.savez(path, x_train=x, y_train=y)
    plugin("count_task")
    assert "count" in TASKS and load_dataset(path, task="count").task == "count"
    sets = [*TINY, REPORT, f"data.dataset={path}", "data.task=count", "search.strategy=random"]
    sets += ["search.space=macro", "search.budget=1", "search.widths=[8]", "search.depths=[1]"]
    cfg = scinas.build_config("tiny", overrides=for_strategy(sets))
    res = scinas.run(cfg, tmp_path / "r", reporter=Reporter(quiet=True))
    assert res["task"] == "count" and res["metric"] == "mae"
    assert np.isfinite(res["test"]["mae"]) and res["test"]["mae"] >= 0
    assert "mae" in (tmp_path / "r" / "report.html").read_text()
    np.savez(path, x_train=x, y_train=-y)
    with pytest.raises(UserError, match="counts are one whole number"):
        load_dataset(path, task="count")
