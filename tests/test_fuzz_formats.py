"""Property-based tests over every input format besides .npz (issue 36; test_fuzz_npz.py has
.npz): feature tables, CSV lists of image files, class folders, idx folders and config files.

Every example ends in a loaded dataset (a valid config) or in exactly one UserError, with
nothing written next to the input; any other exception fails. The readers run in-process and
the examples are derandomized, so the whole file takes some 20 s on 2 cores; the process
boundary (exit code 2, no traceback) is checked with a few real runs at the end.

Each format's generator is shown to make inputs of both outcomes by `hypothesis.find`, so
no property is only about refusals (or only about valid input). It is searched for rather than
counted over the properties' examples: hypothesis mixes literal constants of every loaded local
module into its draws, so the drawn examples shift with unrelated code and with the tests run
before in the process.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import TINY
from scinas.config import build_config
from scinas.data import load_dataset
from scinas.errors import UserError

#: Examples per format: enough for every twist to appear alone and in pairs.
EXAMPLES = {"feature-table": 60, "image-csv": 40, "class-folders": 30, "idx": 60, "config": 60}

FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples every time: a failure is reproducible
    database=None,  # writes no .hypothesis folder
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def snapshot(folder: Path) -> dict:
    return {
        p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def ends_cleanly(folder: Path, action) -> str:
    """``action()`` returns or raises one UserError with a plain message; nothing under
    ``folder`` changes either way. Returns "loaded" or "refused"."""
    before = snapshot(folder)
    try:
        action()
    except UserError as e:
        message = str(e)
        assert message.strip() and "Traceback" not in message and "\n" not in message.strip()
        outcome = "refused"
    else:
        outcome = "loaded"
    assert snapshot(folder) == before, "the input folder changed"
    return outcome


# ------------------------------------------------------------------------------ tables

CELLS = {
    "int": st.integers(-5, 50).map(str),
    "float": st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: f"{v:.6g}"),
    "huge_int": st.integers(2**63, 2**300).map(lambda v: str(v * (1 if v % 2 else -1))),
    "huge_float": st.sampled_from(["1e39", "-3.5e38", "1e400", "-1e999", "3.4e38"]),
    "non_finite": st.sampled_from(["nan", "inf", "-Infinity", "NaN"]),
    "empty": st.just(""),
    "text": st.sampled_from(["abc", "cat", "1,5", "1.2.3", "0x1F", "é", "１２"]),
    "bool": st.sampled_from(["true", "False"]),
}
NAMES = ["f1", "f2", "f3", "x", "label", "target", "y", "class", "split", "", "f1 ", "Label"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]


@st.composite
def feature_tables(draw) -> tuple[bytes, str]:
    """The bytes of a table and its suffix: mostly numeric columns with a label column, with
    some hostile cells, names and encodings."""
    n_cols = draw(st.integers(1, 5))
    names = [draw(st.sampled_from(NAMES[:4])) + str(i) for i in range(n_cols - 1)]
    names.append(draw(st.sampled_from(["label", "target", "y", "class"])))
    if draw(st.integers(0, 3)) == 0:  # a hostile header: duplicated, empty or extra names
        i = draw(st.integers(0, n_cols - 1))
        names[i] = draw(st.sampled_from(NAMES))
    rows = draw(st.sampled_from([0, 1, 3, 12, 20, 30]))
    hostile = draw(st.lists(st.sampled_from(list(CELLS)[2:]), max_size=2))
    body = []
    for r in range(rows):
        row = []
        for c in range(n_cols):
            if hostile and draw(st.integers(0, 9)) == 0:
                row.append(draw(CELLS[draw(st.sampled_from(hostile))]))
            elif c == n_cols - 1:
                row.append(str(r % 3))
            else:
                row.append(draw(CELLS[draw(st.sampled_from(["int", "float"]))]))
        body.append(row)
    if "split" in names and rows:
        s = names.index("split")
        for row in body:
            row[s] = draw(st.sampled_from(["train", "train", "val", "test", "bogus"]))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    text = "\n".join(delimiter.join(r) for r in [names, *body]) + "\n"
    encoding = draw(st.sampled_from(ENCODINGS))
    # a .tsv is read as tab-separated whatever it holds: mostly with tabs, now and then not
    tsv = draw(st.integers(0, 5)) == 0 or (delimiter == "\t" and draw(st.booleans()))
    return text.encode(encoding, errors="replace"), ".tsv" if tsv else ".csv"


TABLE = {"table": feature_tables()}


def table_outcome(table) -> str:
    data, suffix = table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"table{suffix}"
        path.write_bytes(data)
        return ends_cleanly(Path(tmp), lambda: load_dataset(path))


@settings(FUZZ, max_examples=EXAMPLES["feature-table"])
@given(**TABLE)
def test_any_feature_table_loads_or_is_refused_once(table):
    table_outcome(table)


# ------------------------------------------------------------------------------ images

IMAGE_KINDS = [
    "gray", "rgb", "rgba", "palette", "palette_alpha", "bilevel", "la", "i16", "float",
    "cmyk", "truncated", "zero_byte", "not_an_image", "huge_header", "bomb_header",
    "missing", "folder", "other_size",
]  # fmt: skip
GOOD = IMAGE_KINDS[:10]


def _png_with_size(width: int, height: int) -> bytes:
    """A small PNG whose header declares another size (its CRC fixed, so Pillow reads it)."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def write_image(folder: Path, stem: str, kind: str, side: int, seed: int) -> str:
    """Write one image of ``kind`` (or leave a hole) and return the name a table lists."""
    rng = np.random.default_rng(seed)
    gray = rng.integers(0, 256, (side, side), dtype=np.uint8)
    rgb = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    name = f"{stem}.png"
    path = folder / name
    if kind == "gray":
        Image.fromarray(gray).save(path)
    elif kind == "rgb":
        Image.fromarray(rgb).save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, gray])).save(path)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(path)
    elif kind == "palette_alpha":
        im = Image.fromarray(rgb).convert("P")
        im.info["transparency"] = 0
        im.save(path, transparency=0)
    elif kind == "bilevel":
        Image.fromarray(gray).convert("1").save(path)
    elif kind == "la":
        Image.fromarray(np.dstack([gray, gray])).save(path)
    elif kind == "i16":
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    elif kind == "float":
        name = f"{stem}.tif"
        Image.fromarray(gray.astype(np.float32) / 7).save(folder / name)
    elif kind == "cmyk":
        name = f"{stem}.jpg"
        Image.fromarray(rgb).convert("CMYK").save(folder / name)
    elif kind == "truncated":
        Image.fromarray(rgb).save(path)
        path.write_bytes(path.read_bytes()[: max(8, path.stat().st_size // 2)])
    elif kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "not_an_image":
        path.write_text("f1,label\n1,2\n")
    elif kind == "huge_header":  # within Pillow's limit, but the data is 8x8
        path.write_bytes(_png_with_size(12000, 9000))
    elif kind == "bomb_header":  # beyond Pillow's limit of decompression bombs
        path.write_bytes(_png_with_size(60000, 60000))
    elif kind == "folder":
        path.mkdir()
    elif kind == "other_size":
        Image.fromarray(rng.integers(0, 256, (side + 3, side), dtype=np.uint8)).save(path)
    return name  # "missing": nothing written


@st.composite
def image_sets(draw, max_files: int = 16) -> list[str]:
    """Kinds of images: mostly good ones, each example with none to three hostile kinds."""
    hostile = draw(st.lists(st.sampled_from(IMAGE_KINDS[10:]), max_size=2))
    n = draw(st.integers(1, max_files))
    kinds = []
    for _ in range(n):
        if hostile and draw(st.integers(0, 7)) == 0:
            kinds.append(draw(st.sampled_from(hostile)))
        else:
            kinds.append(draw(st.sampled_from(GOOD)))
    return kinds


SIZES = st.sampled_from([None, None, "6x6", "5x9", "4"])


IMAGE_CSV = {
    "kinds": image_sets(),
    "labels": st.sampled_from(["int", "text", "float", "huge", "empty", "multi"]),
    "size": SIZES,
    "fit": st.sampled_from(["resize", "center_crop"]),
    "side": st.integers(4, 9),
}


def image_csv_outcome(kinds, labels, size, fit, side) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for i, kind in enumerate(kinds):
            name = write_image(folder, f"img{i}", kind, side, i)
            label = {
                "int": str(i % 3),
                "text": ["cat", "dog"][i % 2],
                "float": f"{i * 0.37:.3f}",
                "huge": str(2**80 + i) if i == len(kinds) - 1 else str(i % 2),
                "empty": "" if i == 0 else "1",
                "multi": f"{i % 2},{(i // 2) % 2}",
            }[labels]
            rows.append(f"{name},{label}")
        header = "file,a,b" if labels == "multi" else "file,label"
        table = folder / "list.csv"
        table.write_text("\n".join([header, *rows]) + "\n")
        return ends_cleanly(folder, lambda: load_dataset(table, image_size=size, fit=fit))


@settings(FUZZ, max_examples=EXAMPLES["image-csv"])
@given(**IMAGE_CSV)
def test_any_list_of_image_files_loads_or_is_refused_once(kinds, labels, size, fit, side):
    image_csv_outcome(kinds, labels, size, fit, side)


CLASS_FOLDERS = {
    "classes": st.lists(image_sets(max_files=5), min_size=1, max_size=4),
    "splits": st.sampled_from([(), ("train",), ("train", "test"), ("val",), ("train", "Valid")]),
    "extra": st.sampled_from(["", ".hidden", "__MACOSX", "notes.txt"]),
    "size": SIZES,
    "side": st.integers(4, 9),
}


def class_folders_outcome(classes, splits, extra, size, side) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        for split in splits or ("",):
            for c, kinds in enumerate(classes):
                folder = root / split / f"class{c}"
                folder.mkdir(parents=True)
                for i, kind in enumerate(kinds):
                    write_image(folder, f"{i}", kind, side, 10 * c + i)
        if extra.endswith(".txt"):
            (root / extra).write_text("not data")
        elif extra:
            (root / extra).mkdir()
        return ends_cleanly(root, lambda: load_dataset(root, image_size=size))


@settings(FUZZ, max_examples=EXAMPLES["class-folders"])
@given(**CLASS_FOLDERS)
def test_any_folder_of_class_folders_loads_or_is_refused_once(classes, splits, extra, size, side):
    class_folders_outcome(classes, splits, extra, size, side)


# ------------------------------------------------------------------------------ idx

IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_TWISTS = [
    "bad_magic", "unknown_code", "zero_dims", "header_cut", "data_cut", "extra_bytes",
    "overflowing_dims", "gzip_header_only", "gzip_corrupt", "gzip_cut", "gzip_two_members",
    "count_mismatch", "nan_pixels", "negative_labels", "float_labels",
]  # fmt: skip


def idx_file(arr: np.ndarray, code: int) -> bytearray:
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return bytearray(head + arr.astype(IDX_CODES[code]).tobytes())


@st.composite
def idx_folders(draw) -> dict[str, bytes]:
    twists = set(draw(st.lists(st.sampled_from(IDX_TWISTS), max_size=2)))
    n = draw(st.integers(4, 30))
    side = draw(st.integers(4, 8))
    code = draw(st.sampled_from(list(IDX_CODES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.integers(0, 100, (n, side, side)).astype(np.float64)
    if "nan_pixels" in twists and code in (0x0D, 0x0E):
        x[0, 0, 0] = np.nan
    y = np.arange(n) % 3
    if "negative_labels" in twists:
        y[0] = -1
    y_code = 0x0D if "float_labels" in twists else draw(st.sampled_from([0x08, 0x09, 0x0C]))
    if "count_mismatch" in twists:
        y = y[:-1]
    files = {"train-images-idx3-ubyte": idx_file(x, code), "train-labels-idx1-ubyte": idx_file(
        y.astype(np.float64) + (0.5 if y_code == 0x0D else 0), y_code)}  # fmt: skip
    target = draw(st.sampled_from(sorted(files)))
    data = files[target]
    if "bad_magic" in twists:
        data[0] = draw(st.integers(1, 255))
    if "unknown_code" in twists:
        data[2] = draw(st.sampled_from([0x00, 0x0A, 0x0F, 0xFF]))
    if "zero_dims" in twists:
        data[3] = 0
    if "overflowing_dims" in twists:
        data[4:8] = struct.pack(">I", draw(st.sampled_from([2**32 - 1, 2**31, 10**9])))
    if "header_cut" in twists:
        del data[draw(st.integers(0, 4 + 4 * data[3] - 1)) :]
    if "data_cut" in twists:
        del data[-draw(st.integers(1, 10)) :]
    if "extra_bytes" in twists:
        data += bytes(draw(st.integers(1, 10)))
    out = {k: bytes(v) for k, v in files.items()}
    if any(t.startswith("gzip") for t in twists):
        packed = gzip.compress(bytes(data))
        if "gzip_header_only" in twists:
            packed = gzip.compress(bytes(data[: 4 + 4 * max(1, data[3] if len(data) > 3 else 1)]))
        if "gzip_corrupt" in twists:
            packed = bytearray(packed)
            packed[len(packed) // 2] ^= 0xFF
            packed = bytes(packed)
        if "gzip_cut" in twists:
            packed = packed[: len(packed) - draw(st.integers(1, 12))]
        if "gzip_two_members" in twists:
            half = len(data) // 2
            packed = gzip.compress(bytes(data[:half])) + gzip.compress(bytes(data[half:]))
        del out[target]
        out[target + ".gz"] = packed
    return out


IDX = {"files": idx_folders()}


def idx_outcome(files) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "idx"
        root.mkdir()
        for name, data in files.items():
            (root / name).write_bytes(data)
        return ends_cleanly(root, lambda: load_dataset(root))


@settings(FUZZ, max_examples=EXAMPLES["idx"])
@given(**IDX)
def test_any_idx_folder_loads_or_is_refused_once(files):
    idx_outcome(files)


# ------------------------------------------------------------------------------ configs

VALID = {"search": {"epochs": 1, "C": 4}, "train": {"epochs": 1}, "seed": 3}
CONFIG_TWISTS = [
    "deep", "very_deep", "unknown_key", "wrong_type", "huge_int", "non_finite", "list_top",
    "empty", "bad_syntax", "non_string_key", "bom", "not_utf8",
]  # fmt: skip
YAML_TWISTS = ["aliases", "python_tag", "binary_tag", "custom_tag", "set_tag", "merge_key"]


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _yaml(tree) -> str:
    return json.dumps(tree)  # JSON is YAML


def _toml(tree: dict) -> str:
    lines, tables = [], []
    for key, value in tree.items():
        if isinstance(value, dict):
            tables.append(f"[{key}]\n" + _toml(value))
        else:
            lines.append(f"{json.dumps(key) if not key.isidentifier() else key} = "
                         f"{json.dumps(value)}")  # fmt: skip
    return "\n".join(lines + tables) + "\n"


@st.composite
def config_files(draw) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from([".yaml", ".toml", ".json"]))
    pool = CONFIG_TWISTS + (YAML_TWISTS if fmt == ".yaml" else [])
    twists = set(draw(st.lists(st.sampled_from(pool), max_size=2)))
    tree: dict = json.loads(json.dumps(VALID))
    if "deep" in twists:
        tree["search"]["ops"] = _nested(draw(st.integers(3, 60)))
    if "very_deep" in twists:
        tree["search"]["ops"] = _nested(draw(st.sampled_from([400, 2000, 20000])))
    if "unknown_key" in twists:
        tree["search"][draw(st.sampled_from(["epoch", "layerz", "c"]))] = 1
    if "wrong_type" in twists:
        tree["train"]["epochs"] = draw(st.sampled_from(["many", [1], {"a": 1}, -3, 1.5]))
    if "huge_int" in twists:
        tree[draw(st.sampled_from(["seed", "search"]))] = 2 ** draw(st.integers(64, 400))
    if "non_finite" in twists:
        tree["train"]["lr"] = draw(st.sampled_from(["inf", "nan", "-inf"]))
    text_extra = "\n1: 2\n" if "non_string_key" in twists and fmt == ".yaml" else ""
    if "list_top" in twists:
        tree = [tree]  # type: ignore[assignment]
    try:
        if fmt == ".json":
            text = json.dumps(tree)
        elif fmt == ".toml":
            text = _toml(tree) if isinstance(tree, dict) else "= [1]"
        else:
            text = _yaml(tree) + text_extra
    except RecursionError:  # nested beyond what the writer itself takes: write it by hand
        depth = 20000
        body = "[" * depth + "1" + "]" * depth
        text = (
            f"search = {{ops = {body}}}" if fmt == ".toml" else '{"search": {"ops": ' + body + "}}"
        )
    if fmt == ".yaml":
        if "aliases" in twists:  # a billion laughs, scaled down: 7^7 leaves if expanded
            levels = [f"l0: &l0 [{', '.join(['x'] * 7)}]"]
            levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 7)}]" for i in range(1, 8)]
            text = "\n".join(levels) + "\nsearch:\n  ops: *l7\n"
        if "python_tag" in twists:
            text = "seed: !!python/object/apply:os.system ['echo pwned']\n"
        if "binary_tag" in twists:
            text = "seed: !!binary aGVsbG8=\n"
        if "custom_tag" in twists:
            text = "search: !custom {epochs: 1}\n"
        if "set_tag" in twists:
            text = "search:\n  ops: !!set {a, b}\n"
        if "merge_key" in twists:
            text = "base: &b {epochs: 1}\nsearch:\n  <<: *b\n  C: 4\n"
    if "empty" in twists:
        text = ""
    if "bad_syntax" in twists:
        text = text[: max(1, len(text) // 2)] + draw(st.sampled_from(["{", "]", ":", "= =", '"']))
    data = text.encode()
    if "bom" in twists:
        data = b"\xef\xbb\xbf" + data
    if "not_utf8" in twists:
        data = data + b"\xff\xfe\xfa"
    return fmt, data


CONFIG = {"config": config_files()}


def config_outcome(config) -> str:
    fmt, data = config
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"config{fmt}"
        path.write_bytes(data)
        return ends_cleanly(Path(tmp), lambda: build_config(file=path))


@settings(FUZZ, max_examples=EXAMPLES["config"])
@given(**CONFIG)
def test_any_config_file_resolves_or_is_refused_once(config):
    config_outcome(config)


# ------------------------------------------------------------------------------ generators


#: Each format's arguments and the function that feeds them to the reader.
FORMATS = {
    "feature-table": (TABLE, table_outcome),
    "image-csv": (IMAGE_CSV, image_csv_outcome),
    "class-folders": (CLASS_FOLDERS, class_folders_outcome),
    "idx": (IDX, idx_outcome),
    "config": (CONFIG, config_outcome),
}


@pytest.mark.parametrize("outcome", ["loaded", "refused"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_makes_inputs_of_both_outcomes(fmt, outcome):
    """No generator is degenerate: each makes inputs that load and inputs that are refused."""
    assert set(FORMATS) == set(EXAMPLES)
    arguments, outcome_of = FORMATS[fmt]
    quick = settings(FUZZ, max_examples=400, phases=[Phase.generate])
    find(st.fixed_dictionaries(arguments), lambda kw: outcome_of(**kw) == outcome, settings=quick)


# ------------------------------------------------------------------------------ processes


def test_an_odd_but_valid_table_finishes_a_tiny_run(tmp_path, monkeypatch):
    """A BOM, semicolons, a split column and a column name with spaces: the whole pipeline."""
    from scinas.pipeline import run
    from scinas.progress import Reporter

    monkeypatch.setattr("scinas.report.write_report", lambda *a, **k: None)  # seconds, no input
    rows = "".join(
        f"{i / 7:.3f};{i % 5};{i % 2};{'train' if i % 5 else 'test'}\n" for i in range(60)
    )
    table = tmp_path / "table.csv"
    table.write_text("\ufefff 1;f2;label;split\n" + rows, encoding="utf-8")
    out = tmp_path / "out"
    cfg = build_config(overrides=TINY, data__dataset=str(table))
    results = run(cfg, out, reporter=Reporter(quiet=True))
    assert results["test"] and (out / "results.json").is_file()


def test_a_hostile_config_is_refused_at_the_process_boundary(tmp_path):
    """One real process: exit code 2, one line, no traceback, the tag's command never run."""
    config = tmp_path / "config.yaml"
    config.write_text("seed: !!python/object/apply:os.system ['echo pwned > pwned']\n")
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "scinas", "run", "--config", str(config), "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 2 and res.stderr.count("error:") == 1, res.stderr
    assert "Traceback" not in res.stderr and "python/object" in res.stderr
    assert not out.exists() and not (tmp_path / "pwned").exists()
