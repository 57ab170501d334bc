"""Tests for image-file datasets (CSV tables, class folders) and the multi-label task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scinas.config import DataConfig
from scinas.data import load_dataset, multilabel_strata, stratified_split
from scinas.data.images import load_images, parse_image_size
from scinas.errors import UserError

# ------------------------------------------------------------------------------------- helpers


def pixels(shape: tuple[int, ...], seed: int = 0, dtype=np.uint8, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def save(path: Path, arr: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def image_table(
    folder: Path, n: int, shape=(8, 6, 3), targets=None, header="file,label", split=None
) -> tuple[Path, list[np.ndarray]]:
    """n PNGs in folder/img/ and a CSV listing them (targets default to i % 3)."""
    arrays, rows = [], []
    for i in range(n):
        arr = pixels(shape, seed=i)
        save(folder / "img" / f"{i:03d}.png", arr)
        arrays.append(arr)
        target = targets[i] if targets is not None else str(i % 3)
        rows.append(f"img/{i:03d}.png,{target}" + (f",{split[i]}" if split else ""))
    return write_csv(folder / "labels.csv", header, rows), arrays


def chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr if arr.ndim == 3 else arr[:, :, None]).permute(2, 0, 1)


def all_x(ds) -> torch.Tensor:
    return torch.cat([ds.train.x, ds.val.x, ds.test.x])


def same_rows(a: torch.Tensor, b: list[np.ndarray]) -> bool:
    """Whether a's images are b's in some order (carved splits shuffle)."""
    mine = sorted(r.numpy().tobytes() for r in a)
    theirs = sorted(chw(x).contiguous().numpy().tobytes() for x in b)
    return mine == theirs


# ----------------------------------------------------------------------------------------- CSV


def test_csv_classification_png_exact(tmp_path):
    csv, arrays = image_table(tmp_path, 30)
    ds = load_dataset(csv)
    assert ds.name == "labels" and ds.task == "classification" and ds.num_outputs == 3
    assert ds.input_shape == (3, 8, 6) and ds.train.x.dtype == torch.uint8
    assert ds.class_names is None and ds.train.y.dtype == torch.int64
    assert (len(ds.train), len(ds.val), len(ds.test)) == (21, 3, 6)
    assert same_rows(all_x(ds), arrays)  # PNG is lossless
    assert any("read 30 images" in n for n in ds.notes)


def test_csv_split_column_keeps_order_and_values(tmp_path):
    split = ["train"] * 6 + ["val"] * 3 + ["TEST"] * 3
    csv, arrays = image_table(tmp_path, 12, header="file,label,split", split=split)
    ds = load_dataset(csv)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (6, 3, 3)
    assert not any("no val split given" in n for n in ds.notes)
    for i in range(6):
        assert torch.equal(ds.train.x[i], chw(arrays[i]))
    assert torch.equal(ds.val.x[0], chw(arrays[6])) and torch.equal(ds.test.x[2], chw(arrays[11]))
    assert ds.train.y.tolist() == [0, 1, 2, 0, 1, 2] and ds.test.y.tolist() == [0, 1, 2]

    # Only train and test given: val is carved out of train.
    split = ["train"] * 9 + ["test"] * 3
    csv, _ = image_table(tmp_path / "b", 12, header="file,label,split", split=split)
    ds = load_dataset(csv)
    assert len(ds.test) == 3 and len(ds.train) + len(ds.val) == 9 and len(ds.val) >= 1


def test_csv_string_labels_give_sorted_class_names(tmp_path):
    names = ["zebra", "ant", "moth"]
    csv, _ = image_table(tmp_path, 12, targets=[names[i % 3] for i in range(12)])
    ds = load_dataset(csv)
    assert ds.task == "classification" and ds.class_names == ("ant", "moth", "zebra")
    assert ds.num_outputs == 3
    y = torch.cat([ds.train.y, ds.val.y, ds.test.y])
    assert torch.bincount(y).tolist() == [4, 4, 4]


def test_csv_file_column_detection_and_target_columns(tmp_path):
    for i in range(8):
        save(tmp_path / f"{i}.png", pixels((5, 5), seed=i))
    rows = [f"{i},{i % 2},{i}.png,{i * 0.5}" for i in range(8)]
    csv = write_csv(tmp_path / "t.csv", "sample,kind,Image_Path,score", rows)
    # "Image_Path" does not match; the first column is then the file column, which fails.
    with pytest.raises(UserError, match="8 of 8 image files.*'sample'"):
        load_dataset(csv)
    csv = write_csv(tmp_path / "t.csv", "sample,kind,IMAGE,score", rows)
    ds = load_dataset(csv, target_columns=["kind"])
    assert ds.task == "classification" and ds.num_outputs == 2 and ds.input_shape == (1, 5, 5)
    ds = load_dataset(csv, target_columns=["score", "sample"])
    assert ds.task == "regression" and ds.num_outputs == 2
    assert ds.train.y.dtype == torch.float32
    with pytest.raises(UserError, match=r"target column 'scor' .*Did you mean 'score'\?"):
        load_dataset(csv, target_columns=["scor"])
    with pytest.raises(UserError, match="is the column of image files"):
        load_dataset(csv, target_columns=["IMAGE"])


def test_csv_float_columns_are_regression(tmp_path):
    targets = [f"{i * 0.25},{-i}.5" for i in range(10)]
    csv, _ = image_table(tmp_path, 10, targets=targets, header="file,a,b")
    ds = load_dataset(csv)
    assert ds.task == "regression" and ds.num_outputs == 2 and ds.class_names is None
    assert ds.train.y.shape[1] == 2 and ds.train.y.dtype == torch.float32
    y = torch.cat([ds.train.y, ds.val.y, ds.test.y])
    assert sorted(y[:, 0].tolist()) == [i * 0.25 for i in range(10)]


def test_csv_multilabel_columns(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, 3))
    labels[:, 2] = 0  # never set: a note, not an error
    targets = [",".join(str(v) for v in row) for row in labels]
    csv, _ = image_table(tmp_path, 40, shape=(6, 6), targets=targets, header="file,cell,nucleus,x")
    ds = load_dataset(csv)
    assert ds.task == "multilabel" and ds.num_outputs == 3
    assert ds.class_names == ("cell", "nucleus", "x") and ds.input_shape == (1, 6, 6)
    assert ds.train.y.dtype == torch.float32 and ds.train.y.shape[1] == 3
    assert set(torch.cat([ds.train.y, ds.val.y, ds.test.y]).unique().tolist()) <= {0.0, 1.0}
    assert ds.target_mean is None and "3 labels" in ds.summary()
    assert any("never set in the train split ('x')" in n for n in ds.notes)
    # true/false columns count as 0/1.
    targets = [",".join(("true" if v else "FALSE") for v in row) for row in labels[:, :2]]
    csv, _ = image_table(tmp_path / "b", 40, shape=(6, 6), targets=targets, header="file,a,b")
    assert load_dataset(csv).task == "multilabel"


def test_csv_grayscale_rgba_and_16bit_tiff(tmp_path):
    gray = [pixels((7, 9), seed=i) for i in range(6)]
    for i, a in enumerate(gray):
        save(tmp_path / f"g{i}.png", a)
    rows = [f"g{i}.png,{i % 2},train" for i in range(4)] + ["g4.png,0,val", "g5.png,1,test"]
    ds = load_dataset(write_csv(tmp_path / "g.csv", "file,y,split", rows))
    assert ds.input_shape == (1, 7, 9) and ds.train.x.dtype == torch.uint8
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(np.stack(gray[:4])))

    rgba = [pixels((6, 6, 4), seed=i) for i in range(6)]
    for i, a in enumerate(rgba):
        save(tmp_path / f"c{i}.png", a)
    rows = [f"c{i}.png,{i % 2},train" for i in range(4)] + ["c4.png,0,val", "c5.png,1,test"]
    ds = load_dataset(write_csv(tmp_path / "c.csv", "file,y,split", rows))
    assert ds.input_shape == (4, 6, 6)
    assert torch.equal(ds.test.x[0], chw(rgba[5]))

    deep = [pixels((6, 8), seed=i, dtype=np.uint16, high=65536) for i in range(6)]
    for i, a in enumerate(deep):
        save(tmp_path / f"d{i}.tif", a)
    rows = [f"d{i}.tif,{i % 2},train" for i in range(4)] + ["d4.tif,0,val", "d5.tif,1,test"]
    ds = load_dataset(write_csv(tmp_path / "d.csv", "file,y,split", rows))
    assert ds.train.x.dtype == torch.float32 and ds.input_shape == (1, 6, 8)
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(np.stack(deep[:4]).astype(np.float32)))
    assert float(ds.train.x.max()) > 255
    assert any("16-bit" in n for n in ds.notes)


def test_jpeg_and_other_formats_decode(tmp_path):
    smooth = np.tile(np.linspace(0, 250, 16, dtype=np.uint8), (16, 1))
    rgb = np.stack([smooth, smooth.T, 255 - smooth], axis=2)
    paths = [
        save(tmp_path / "a.jpg", rgb, quality=95),
        save(tmp_path / "b.bmp", rgb),
        save(tmp_path / "c.tiff", rgb),
        save(tmp_path / "d.png", rgb),
    ]
    x, notes = load_images(paths)
    assert x.shape == (4, 3, 16, 16) and x.dtype == np.uint8 and not notes
    exact = chw(rgb).numpy()
    # JPEG is lossy: the pixels are Pillow's own decoding, close to what was written.
    assert np.array_equal(x[0], chw(np.array(Image.open(paths[0]))).numpy())
    assert np.abs(x[0].astype(int) - exact).mean() < 8
    for i in (1, 2, 3):
        assert np.array_equal(x[i], exact)


def test_mixed_channels_and_bit_depths_are_unified(tmp_path):
    gray = pixels((5, 5), seed=1)
    rgb = pixels((5, 5, 3), seed=2)
    x, notes = load_images([save(tmp_path / "g.png", gray), save(tmp_path / "c.png", rgb)])
    assert x.shape == (2, 3, 5, 5) and x.dtype == np.uint8
    assert all(np.array_equal(x[0, c], gray) for c in range(3))
    assert np.array_equal(x[1], chw(rgb).numpy())
    assert any("mixed channel counts (1 gray, 1 RGB)" in n for n in notes)

    deep = pixels((5, 5), seed=3, dtype=np.uint16, high=65536)
    x, notes = load_images([save(tmp_path / "g.png", gray), save(tmp_path / "d.tif", deep)])
    assert x.dtype == np.float32
    assert np.array_equal(x[0, 0], gray.astype(np.float32) * 257)
    assert np.array_equal(x[1, 0], deep.astype(np.float32))
    assert any("scaled by 257" in n for n in notes)


def test_mixed_sizes_error_then_resize_and_center_crop(tmp_path):
    big = pixels((10, 12), seed=1)
    small = pixels((6, 6), seed=2)
    rows = []
    for i in range(6):
        save(tmp_path / f"big{i}.png", big)
        rows.append(f"big{i}.png,{i % 2}")
    for i in range(2):
        save(tmp_path / f"small{i}.png", small)
        rows.append(f"small{i}.png,{i % 2}")
    csv = write_csv(tmp_path / "m.csv", "file,label", rows)
    with pytest.raises(UserError) as err:
        load_dataset(csv)
    msg = str(err.value)
    assert "2 different sizes" in msg and "10x12 (6 images" in msg and "6x6 (2 images" in msg
    assert "--set data.image_size=HxW" in msg and "data.fit=resize" in msg
    assert "data.fit=center_crop" in msg

    ds = load_dataset(csv, image_size="8x8")
    assert ds.input_shape == (1, 8, 8)
    assert any("resized (bilinear) to 8x8" in n for n in ds.notes)
    expected = np.asarray(Image.fromarray(big).resize((8, 8), Image.Resampling.BILINEAR))
    xs = {r.numpy().tobytes() for r in all_x(ds)[:, 0]}
    assert expected.tobytes() in xs

    ds = load_dataset(csv, image_size="8x8", fit="center_crop")
    xs = {r.numpy().tobytes() for r in all_x(ds)[:, 0]}
    assert big[1:9, 2:10].tobytes() in xs  # cut around the centre
    padded = np.zeros((8, 8), np.uint8)
    padded[1:7, 1:7] = small
    assert padded.tobytes() in xs  # zero-padded around the centre


def test_resize_keeps_16bit_precision(tmp_path):
    deep = np.full((6, 6), 40000, np.uint16)
    x, _ = load_images([save(tmp_path / "d.tif", deep)], image_size=(3, 4))
    assert x.shape == (1, 1, 3, 4) and x.dtype == np.float32
    assert np.allclose(x, 40000.0)


def test_image_size_and_fit_options(tmp_path):
    assert parse_image_size("64x48") == (64, 48) and parse_image_size(" 32 X 32 ") == (32, 32)
    assert parse_image_size(16) == (16, 16) and parse_image_size(None) is None
    assert parse_image_size((5, 7)) == (5, 7)
    for bad in ("64x", "0x5", "big", True, (1, 2, 3)):
        with pytest.raises(UserError, match="image_size must be 'HxW'"):
            parse_image_size(bad)
    with pytest.raises(UserError, match="unknown fit 'crop'"):
        load_dataset("digits", fit="crop")
    ds = load_dataset("digits", image_size="8x8", target_columns=["a"])
    assert any("image_size/fit ignored" in n for n in ds.notes)
    assert any("target_columns ignored" in n for n in ds.notes)
    cfg = DataConfig(
        task="multilabel", target_columns=["a", "b"], image_size="8x8", fit="center_crop"
    )
    assert cfg.fit == "center_crop" and cfg.image_size == "8x8" and cfg.target_columns == ["a", "b"]
    default = DataConfig()
    assert (default.target_columns, default.image_size, default.fit) == (None, None, "resize")


def test_thread_pool_loads_many_files(tmp_path):
    rows = []
    for i in range(500):
        save(tmp_path / "many" / f"{i}.png", np.full((4, 4), i % 250, np.uint8))
        rows.append(f"many/{i}.png,{i % 5}")
    ds = load_dataset(write_csv(tmp_path / "many.csv", "filename,label", rows))
    assert len(ds.train) + len(ds.val) + len(ds.test) == 500 and ds.num_outputs == 5
    x, y = all_x(ds), torch.cat([ds.train.y, ds.val.y, ds.test.y])
    assert torch.equal(x[:, 0, 0, 0].long() % 5, y)  # every image kept its own label


# ---------------------------------------------------------------------------------- CSV errors


def test_csv_errors(tmp_path):
    write_csv(tmp_path / "empty.csv", "file,label", [])
    with pytest.raises(UserError, match=r"has a header \(file, label\) but no rows"):
        load_dataset(tmp_path / "empty.csv")
    (tmp_path / "blank.csv").write_text("\n\n")
    with pytest.raises(UserError, match="blank.csv is empty"):
        load_dataset(tmp_path / "blank.csv")

    save(tmp_path / "ok.png", pixels((5, 5)))
    rows = ["ok.png,0"] + [f"gone{i}.png,1" for i in range(7)]
    with pytest.raises(UserError) as err:
        load_dataset(write_csv(tmp_path / "miss.csv", "file,label", rows))
    msg = str(err.value)
    assert "7 of 8 image files" in msg and "gone0.png, gone1.png" in msg and ", ..." in msg
    assert str(tmp_path) in msg

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = ["ok.png,0", "broken.png,1"]
    with pytest.raises(UserError, match=r"could not decode image .*broken\.png"):
        load_dataset(write_csv(tmp_path / "bad.csv", "file,label", rows))

    rows = ["ok.png,0,train", "ok.png,1,training"]
    with pytest.raises(UserError, match=r"must hold train, val or test; found 'training' \(line 3"):
        load_dataset(write_csv(tmp_path / "s.csv", "file,label,split", rows))
    rows = ["ok.png,0,val", "ok.png,1,test"]
    with pytest.raises(UserError, match="assigns no row to train"):
        load_dataset(write_csv(tmp_path / "s.csv", "file,label,split", rows))

    rows = ["ok.png,cat,1", "ok.png,dog,0"]
    with pytest.raises(UserError, match=r"target columns species .*data\.target_columns"):
        load_dataset(write_csv(tmp_path / "t.csv", "file,species,alive", rows))
    with pytest.raises(UserError, match=r"column 'label' .*empty on 1 line\(s\) \(3\)"):
        load_dataset(write_csv(tmp_path / "e.csv", "file,label", ["ok.png,0", "ok.png,"]))
    with pytest.raises(UserError, match="line 3 .* has 3 cells"):
        load_dataset(write_csv(tmp_path / "w.csv", "file,label", ["ok.png,0", "ok.png,1,2"]))
    with pytest.raises(UserError, match="no target column"):
        load_dataset(write_csv(tmp_path / "f.csv", "file", ["ok.png"]))
    with pytest.raises(UserError, match="unsupported data file .*holds numbers"):
        load_dataset(write_csv(tmp_path / "n.csv", "1,2", ["3,4"]))


def test_csv_semicolon_tsv_and_absolute_paths(tmp_path):
    paths = [save(tmp_path / "imgs" / f"{i}.png", pixels((5, 5), seed=i)) for i in range(6)]
    rows = [f"{p};{i % 2}" for i, p in enumerate(paths)]  # absolute paths
    ds = load_dataset(write_csv(tmp_path / "elsewhere" / "a.csv", "path;label", rows))
    assert ds.num_outputs == 2 and len(ds.train) + len(ds.val) + len(ds.test) == 6
    rows = [f"imgs/{i}.png\t{i % 2}" for i in range(6)]
    ds = load_dataset(write_csv(tmp_path / "b.tsv", "id\tlabel", rows))
    assert ds.input_shape == (1, 5, 5)


# -------------------------------------------------------------------------------- class folders


def test_class_folders(tmp_path):
    root = tmp_path / "pets"
    written = {}
    for c, name in enumerate(("dogs", "cats", "eels")):
        for i in range(5):
            written[(name, i)] = save(root / name / f"{i}.png", pixels((6, 7, 3), seed=10 * c + i))
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    ds = load_dataset(root)
    assert ds.name == "pets" and ds.task == "classification" and ds.num_outputs == 3
    assert ds.class_names == ("cats", "dogs", "eels") and ds.input_shape == (3, 6, 7)
    x, y = all_x(ds), torch.cat([ds.train.y, ds.val.y, ds.test.y])
    assert torch.bincount(y).tolist() == [5, 5, 5]
    # Each image carries the label of its folder.
    for (name, _), path in written.items():
        img = chw(np.array(Image.open(path)))
        hits = [j for j in range(len(x)) if torch.equal(x[j], img)]
        assert len(hits) == 1 and ds.class_names[int(y[hits[0]])] == name
    assert any("ignored 1 non-image file" in n for n in ds.notes)


def test_class_folders_with_split_folders(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2), ("TEST", 1)):
        for name in ("a", "b"):
            for i in range(n):
                save(root / split / name / f"{i}.png", pixels((5, 5), seed=i))
    ds = load_dataset(root)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 4, 2)
    assert ds.class_names == ("a", "b") and ds.test.y.tolist() == [0, 1]
    assert not any("no val split given" in n for n in ds.notes)


def test_class_folder_errors(tmp_path):
    root = tmp_path / "d"
    save(root / "a" / "1.png", pixels((5, 5)))
    (root / "empty_class").mkdir()
    with pytest.raises(UserError, match=r"class folder .*empty_class has no image files.*remove"):
        load_dataset(root)
    (root / "empty_class").rmdir()
    with pytest.raises(UserError, match=r"single class folder \('a'\)"):
        load_dataset(root)
    write_csv(root / "labels.csv", "file,label", ["a/1.png,0"])
    with pytest.raises(UserError, match="labels.csv is here: pass it as the data path"):
        load_dataset(root)

    none = tmp_path / "none"
    (none / "x").mkdir(parents=True)
    (none / "y").mkdir()
    (none / "y" / "readme.md").write_text("hi")
    with pytest.raises(UserError, match="no image files in them"):
        load_dataset(none)

    loose = tmp_path / "loose"
    save(loose / "1.png", pixels((5, 5)))
    with pytest.raises(UserError, match=r"not an idx dataset folder.*1 image file\(s\) directly"):
        load_dataset(loose)

    mixed = tmp_path / "mixed"
    save(mixed / "train" / "a" / "1.png", pixels((5, 5)))
    save(mixed / "cats" / "1.png", pixels((5, 5)))
    with pytest.raises(UserError, match=r"mixes split folders \(train\) with other folders"):
        load_dataset(mixed)

    nosplit = tmp_path / "nosplit"
    save(nosplit / "val" / "a" / "1.png", pixels((5, 5)))
    with pytest.raises(UserError, match="no train/ folder"):
        load_dataset(nosplit)


# ------------------------------------------------------------------------------------ multilabel


def multilabel_npz(tmp_path: Path, y: np.ndarray, name: str = "ml.npz") -> Path:
    x = pixels((len(y), 6, 6))
    path = tmp_path / name
    np.savez(path, x_train=x, y_train=y)
    return path


def test_multilabel_detection(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (60, 4))
    ds = load_dataset(multilabel_npz(tmp_path, y))
    assert ds.task == "multilabel" and ds.num_outputs == 4 and ds.class_names is None
    assert ds.train.y.dtype == torch.float32 and tuple(ds.train.y.shape) == (42, 4)
    assert any("task: multilabel" in n for n in ds.notes)
    assert load_dataset(multilabel_npz(tmp_path, y.astype(bool), "b.npz")).task == "multilabel"

    floats = load_dataset(multilabel_npz(tmp_path, y.astype(np.float32), "f.npz"))
    assert floats.task == "regression"
    assert any("pass --task multilabel" in n for n in floats.notes)
    ints = load_dataset(multilabel_npz(tmp_path, y[:, 0], "i.npz"))
    assert ints.task == "classification" and ints.num_outputs == 2

    forced = load_dataset(
        multilabel_npz(tmp_path, y.astype(np.float32), "f.npz"), task="multilabel"
    )
    assert forced.task == "multilabel" and forced.train.y.dtype == torch.float32
    rows = torch.cat([forced.train.y, forced.val.y, forced.test.y]).numpy()
    assert sorted(map(tuple, rows)) == sorted(map(tuple, y.astype(np.float32)))


def test_multilabel_forced_errors(tmp_path):
    y = np.random.default_rng(0).integers(0, 2, (20, 3)).astype(np.float64)
    y[3, 1] = 2
    y[5, 0] = 0.5
    with pytest.raises(UserError) as err:
        load_dataset(multilabel_npz(tmp_path, y), task="multilabel")
    msg = str(err.value)
    assert "must all be 0 or 1" in msg and "2 other value(s): 0.5, 2.0" in msg
    assert "--task regression" in msg
    with pytest.raises(UserError, match=r"\(N, K\) matrix.*shape \(1437,\) with values 0, 1, 2"):
        load_dataset("digits", task="multilabel")
    with pytest.raises(UserError, match="use --task multilabel"):
        load_dataset(multilabel_npz(tmp_path, np.ones((20, 3), np.int64), "o.npz"))
    ds = load_dataset(
        multilabel_npz(tmp_path, np.ones((20, 3), np.int64), "o.npz"), task="multi-label"
    )
    assert ds.task == "multilabel"
    assert any("3 label(s) are always set in the train split (0, 1, 2)" in n for n in ds.notes)


def test_multilabel_splits_are_stratified_and_seeded(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (80, 3))
    path = multilabel_npz(tmp_path, y)
    a, b, c = (load_dataset(path, seed=s) for s in (3, 3, 4))
    assert min(len(a.train), len(a.val), len(a.test)) >= 1
    assert (len(a.train), len(a.val), len(a.test)) == (56, 8, 16)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.test.x, c.test.x)
    assert any("stratified by labels" in n for n in a.notes)

    # Every combination occurs at least twice: the combinations are the strata.
    combos = np.array([[0, 1], [0, 1], [1, 1], [1, 1], [1, 0], [1, 0]])
    strata = multilabel_strata(combos)
    assert strata.tolist() == [0, 0, 2, 2, 1, 1]
    _, take = stratified_split(strata, 0.5, seed=0)
    assert len({tuple(r) for r in combos[take]}) == 3
    # A unique combination: each row goes by its rarest positive label (no label: K).
    rare = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1], [1, 1, 1]])
    assert multilabel_strata(rare).tolist() == [1, 0, 0, 3, 2, 1]
    # stratified_split itself takes multi-label y (a seeded random split).
    keep, take = stratified_split(y.astype(np.float32), 0.25, seed=0)
    assert len(take) == 20 and len(keep) == 60
    assert np.array_equal(take, stratified_split(y.astype(np.float32), 0.25, seed=0)[1])


def test_multilabel_explicit_splits_must_agree(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "s.npz"
    np.savez(
        path,
        x_train=pixels((20, 6, 6)),
        y_train=rng.integers(0, 2, (20, 3)),
        x_test=pixels((5, 6, 6)),
        y_test=rng.integers(0, 2, (5, 2)),
    )
    with pytest.raises(UserError, match="y_test has 2 labels per sample but y_train has 3"):
        load_dataset(path)
