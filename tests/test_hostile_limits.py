"""Hostile input, round two (issue 36): sizes, names and numbers at the limits.

Each class is tested across every place it can enter: every compressed reader, every path the
user gives, every numeric column and array. Each case ends in one UserError (exit code 2 at the
CLI) naming the input and the reason, with nothing written.
"""

from __future__ import annotations

import gzip
import os
import signal
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY
from scinas.cli import app
from scinas.config import build_config, read_config_file
from scinas.data import load_dataset
from scinas.data.formats import READERS
from scinas.errors import UserError

F32 = float(np.finfo(np.float32).max)


def cli(*args) -> tuple[int, str]:
    """The CLI in this process: (exit code, stderr)."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(res.exception, SystemExit | None), repr(res.exception)
    return res.exit_code, res.stderr


def refused(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    assert err.count("error:") == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


@contextmanager
def within(seconds: int):
    """Fail instead of hanging (e.g. on a FIFO that is opened for reading)."""

    def expire(*_):
        raise AssertionError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx_folder(root: Path, x: np.ndarray, y: np.ndarray, gz: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for name, arr in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y)):
        data = idx_bytes(arr)
        (root / f"{name}{suffix}").write_bytes(gzip.compress(data) if gz else data)
    return root


# ------------------------------------------------------------------ 1. decompression sizes


def _gz_idx(folder: Path) -> Path:
    return write_idx_folder(
        folder / "idx", np.zeros((400, 64, 64), np.uint8), np.zeros(400, np.uint8)
    )


def _npz_member(folder: Path) -> Path:
    path = folder / "d.npz"
    np.savez_compressed(path, x_train=np.zeros((400, 64, 64), np.uint8), y_train=np.arange(400))
    return path


def _image_files(folder: Path) -> Path:
    for c in ("a", "b"):
        (folder / "cls" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((1200, 1400), np.uint8)).save(folder / "cls" / c / "0.png")
    return folder / "cls"


COMPRESSED = {"gzip idx": _gz_idx, "npz member": _npz_member, "image file": _image_files}


@pytest.mark.parametrize("make", COMPRESSED.values(), ids=COMPRESSED.keys())
def test_every_compressed_input_is_checked_against_memory_before_it_is_inflated(
    tmp_path, monkeypatch, make
):
    """Each file inflates to about 1.6 MB from a few kB; with 1 MiB of memory left, each is
    refused by its declared size, not by a MemoryError after the allocation."""
    path = make(tmp_path)
    monkeypatch.setattr("scinas.data.limits.available_memory", lambda: 1 << 20)
    monkeypatch.setattr("scinas.data.images.available_memory", lambda: 1 << 20)
    with pytest.raises(UserError, match=r"more than the 1\.0 MiB of memory available") as e:
        load_dataset(path)
    assert str(path) in str(e.value) or str(path) in str(e.value).replace("'", "")


def test_the_declared_readers_cover_every_compressed_format():
    """A new compressed format gets a case above: the readers that inflate data are these."""
    assert {"idx", "npz", "image-csv", "class-folders"} <= set(READERS)


def test_a_gzip_idx_header_beyond_what_its_stream_can_hold_is_refused_unread(tmp_path):
    root = tmp_path / "idx"
    write_idx_folder(root, np.zeros((4, 5, 5), np.uint8), np.zeros(4, np.uint8))
    head = bytes([0, 0, 8, 3]) + struct.pack(">3I", 60000, 60000, 60000)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(head))
    with within(10), pytest.raises(UserError, match="cannot inflate to more than"):
        load_dataset(root)


def test_a_gzip_idx_stream_longer_than_its_header_stops_one_byte_past_it(tmp_path, monkeypatch):
    """A real bomb (64 MiB of zeros behind a header of 1 kB) is read only as far as the header
    says, then refused as too long: the inflated buffer never exceeds the declared size."""
    root = tmp_path / "idx"
    write_idx_folder(root, np.zeros((4, 5, 5), np.uint8), np.zeros(4, np.uint8))
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(idx_bytes(np.zeros((4, 16, 16), np.uint8)))]
    parts += [c.compress(bytes(1 << 24)) for _ in range(4)]
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"".join(parts) + c.flush())
    seen = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *a, **k):
            self.d = real(*a, **k)

        def decompress(self, data, max_length=0):
            out = self.d.decompress(data, max_length)
            seen.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self.d, name)

    monkeypatch.setattr("scinas.data.idx.zlib.decompressobj", Counting)
    with pytest.raises(UserError, match="more than its header's shape"):
        load_dataset(root)
    assert sum(seen) <= 4 + 12 + 4 * 16 * 16 + 1


def test_an_image_beyond_pillows_bomb_limit_is_named(tmp_path, monkeypatch):
    path = _image_files(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses beyond twice this
    with pytest.raises(UserError, match="decompression bomb"):
        load_dataset(path)


@pytest.mark.parametrize(
    "size, phrase",
    [(f"{10**23}x2", "at most 65,535 pixels"), ("60000x60000", "more than the 1.0 MiB")],
)
def test_an_image_size_beyond_memory_is_refused_before_decoding(
    tmp_path, monkeypatch, size, phrase
):
    path = _image_files(tmp_path)
    monkeypatch.setattr("scinas.data.images.available_memory", lambda: 1 << 20)
    with pytest.raises(UserError, match="image_size") as e:
        load_dataset(path, image_size=size)
    assert phrase in str(e.value), str(e.value)


# --------------------------------------------------------------- 2. OS limits on names


def _too_long(tmp: Path) -> Path:
    return tmp / ("n" * 300 + ".csv")


def _loop(tmp: Path) -> Path:
    (tmp / "loop_a.csv").symlink_to(tmp / "loop_b.csv")
    (tmp / "loop_b.csv").symlink_to(tmp / "loop_a.csv")
    return tmp / "loop_a.csv"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.csv")
    return tmp / "pipe.csv"


def _device(tmp: Path) -> Path:
    return Path("/dev/null")


def _folder(tmp: Path) -> Path:
    (tmp / "dir.csv").mkdir()
    return tmp / "dir.csv"


def _unreadable(tmp: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp / "locked.csv"
    path.write_text("f1,label\n1,0\n")
    path.chmod(0)
    return path


#: Each kind of bad path with the reason its message gives.
BAD_PATHS = {
    "name too long": (_too_long, "longer than the file system allows"),
    "loop of links": (_loop, "loop of symbolic links"),
    "fifo": (_fifo, "FIFO"),
    "device": (_device, "character device"),
    "folder": (_folder, "a folder"),
    "permission": (_unreadable, "permission denied"),
}


def _as_data(path: Path, tmp: Path):
    return lambda: load_dataset(path)


def _as_listed_image(path: Path, tmp: Path):
    for i in range(4):
        Image.fromarray(np.full((6, 6), i, np.uint8)).save(tmp / f"{i}.png")
    table = tmp / "list.csv"
    table.write_text(
        "file,label\n" + "".join(f"{i}.png,{i % 2}\n" for i in range(4)) + f"{path},1\n"
    )
    return lambda: load_dataset(table)


def _as_config(path: Path, tmp: Path):
    return lambda: read_config_file(path)


def _as_idx_file(path: Path, tmp: Path):
    root = tmp / "idx"
    write_idx_folder(root, np.zeros((4, 5, 5), np.uint8), np.zeros(4, np.uint8), gz=False)
    target = root / "train-images-idx3-ubyte"
    target.unlink()
    if len(path.name) > 255:
        pytest.skip("an idx file is found by listing its folder: its name is never too long")
    target.symlink_to(path)
    return lambda: load_dataset(root)


ENTRY_POINTS = {
    "--data": _as_data,
    "CSV entry": _as_listed_image,
    "config file": _as_config,
    "idx file": _as_idx_file,
}


@pytest.mark.parametrize("kind", BAD_PATHS, ids=BAD_PATHS.keys())
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=ENTRY_POINTS.keys())
def test_every_os_error_of_a_user_path_is_one_message_with_the_path_and_reason(
    tmp_path, entry, kind
):
    make, reason = BAD_PATHS[kind]
    path = make(tmp_path)
    action = ENTRY_POINTS[entry](path, tmp_path)
    if entry == "idx file" and kind == "folder":
        reason = "not an idx dataset folder"  # a folder of that name is not an idx file
    with within(20), pytest.raises(UserError) as e:
        action()
    message = str(e.value)
    assert reason.lower() in message.lower(), message
    if entry != "idx file":
        assert path.name[-20:] in message, message


def test_a_fifo_as_data_is_refused_by_the_cli_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    out = tmp_path / "out"
    with within(60):
        code, err = cli("run", "--data", tmp_path / "pipe.npz", "--out", out, "-q")
    refused(code, err, "pipe.npz", "FIFO")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["name too long", "loop of links"])
@pytest.mark.parametrize(
    "verb",
    [["run", "--data", "digits", "-q", "--out"], ["report"], ["evaluate"], ["export"]],
    ids=["run --out", "report", "evaluate", "export"],
)
def test_run_directory_paths_the_os_refuses_are_one_message(tmp_path, verb, kind):
    make, reason = BAD_PATHS[kind]
    path = make(tmp_path)
    refused(*cli(*verb, path), reason)
    assert not any(p.name == "run.json" for p in tmp_path.rglob("*"))


# ------------------------------------------------------------ 3. numbers beyond machine types


def _table(tmp: Path, cell: str, column: str) -> Path:
    rows = [[f"{i * 0.5}", f"{i}", f"{i % 2}"] for i in range(20)]
    rows[7][{"f1": 0, "f2": 1, "label": 2}[column]] = cell
    path = tmp / "t.csv"
    path.write_text("f1,f2,label\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("column", ["f1", "f2", "label"])  # float, integer and label columns
@pytest.mark.parametrize(
    "cell, phrase",
    [
        (str(2**70), "beyond the 64-bit range"),
        ("-" + "9" * 5000, "beyond the 64-bit range"),
        ("1e39", "beyond the float32 range"),
        ("-3.5e38", "beyond the float32 range"),
    ],
    ids=["2**70", "5000 digits", "1e39", "-3.5e38"],
)
def test_csv_numbers_beyond_machine_types_are_refused_with_line_and_column(
    tmp_path, column, cell, phrase
):
    with pytest.raises(UserError) as e:
        load_dataset(_table(tmp_path, cell, column))
    message = str(e.value)
    assert "line 9" in message and f"'{column}'" in message and phrase in message, message


@pytest.mark.parametrize(
    "arrays, phrase",
    [
        ({"x_train": np.r_[np.zeros(19), 1e300][:, None] * np.ones((1, 8))}, "up to 1e+300"),
        (
            {"x_train": np.where(np.arange(20)[:, None, None] < 17, -0.99 * F32, 0.99 * F32)
             * np.ones((1, 6, 6), np.float32)},
            "would overflow",
        ),
        ({"y_train": np.r_[np.linspace(0, 1, 19), 1e200]}, "up to 1e+200"),
        ({"y_train": np.r_[np.full(17, -0.9 * F32), np.full(3, 0.9 * F32)]}, "would overflow"),
    ],
    ids=["x beyond float32", "x near float32 max", "y beyond float32", "y near float32 max"],
)  # fmt: skip
def test_values_whose_normalisation_would_overflow_are_refused_with_row_and_size(
    tmp_path, arrays, phrase
):
    full = {"x_train": np.random.default_rng(0).random((20, 6, 6)), "y_train": np.arange(20) % 2}
    full.update(arrays)
    np.savez(tmp_path / "d.npz", **full)
    with pytest.raises(UserError, match="row 1[0-9]") as e:
        load_dataset(tmp_path / "d.npz")
    assert phrase in str(e.value), str(e.value)


def test_pixels_near_float32_max_end_in_one_message_and_no_files(tmp_path):
    """The issue's case: before, the first step's loss was NaN, exit code 1, five files."""
    x = np.random.default_rng(0).uniform(-F32, F32, (40, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(40) % 2)
    out = tmp_path / "out"
    refused(*cli("run", "--data", tmp_path / "d.npz", "--out", out, "-q"), "would overflow")
    assert not out.exists()


@pytest.mark.parametrize("key", ["search.C", "train.epochs", "search.batch_size", "seed"])
def test_config_integers_beyond_64_bits_name_their_key(key):
    with pytest.raises(UserError, match=rf"'{key}'.*(64-bit|less than)"):
        build_config(overrides=[*TINY, f"{key}={10**25}"])


# ---------------------------------------------------------- 4. messages that point the right way


@pytest.mark.parametrize("section", ["search", "train"])
def test_a_batch_larger_than_the_data_names_both_sizes(tmp_path, section):
    # 96×96 images: a batch of 65,536 (the bound) would not fit, so the sizes are named
    np.savez(
        tmp_path / "d.npz", x_train=np.zeros((60, 96, 96), np.uint8), y_train=np.arange(60) % 2
    )
    out = tmp_path / "out"
    code, err = cli(
        "run", "--data", tmp_path / "d.npz", "--out", out, "-q",
        *[a for s in TINY for a in ("--set", s)], "--set", f"{section}.batch_size=65536",
    )  # fmt: skip
    refused(code, err, f"{section}.batch_size is 65,536", "training samples")
    assert "does not fit" not in err and not out.exists()
