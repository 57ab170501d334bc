"""Series (N×C×L) end to end: read without guessing, one network definition for 1-D and 2-D
inputs (the same parametrization runs both), series augmentation, and one clear message per bad
input (exit code 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import scinas
from conftest import scinas_cli, shared
from scinas.config import SearchConfig
from scinas.data import load_dataset
from scinas.data.augment_series import SeriesAugment, augment_series, series_augment
from scinas.errors import UserError
from scinas.spaces import SPACES, load_genotype
from scinas.spaces.baselines import BASELINES, build_baseline
from scinas.spaces.macro import BLOCKS, MacroArch, MacroStage

# One parametrization for both dimensions: (C, L) series and (C, H, W) images, odd sizes, one
# long enough for the large-input stem.
SHAPES = [
    pytest.param((2, 37), id="series-2x37"),
    pytest.param((1, 150), id="series-1x150"),
    pytest.param((3, 9, 7), id="image-3x9x7"),
    pytest.param((1, 12, 12), id="image-1x12x12"),
]
TRAIN = scinas.build_config("tiny").train


def _batch(shape, n=2):
    return torch.randn(n, *shape)


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", BASELINES.names())
def test_every_baseline_builds_trains_and_is_of_the_input_dimension(name, shape):
    torch.manual_seed(0)
    net = build_baseline(name, shape[0], 5, shape[1:])
    convs = [m for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert convs and all(c.weight.dim() == len(shape) + 1 for c in convs)  # 1-D or 2-D kernels
    x = _batch(shape)
    out, aux = net(x)
    assert out.shape == (2, 5) and aux is None and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block", BLOCKS)
def test_every_macro_block_builds_for_both_dimensions(block, shape):
    stage = MacroStage(depth=2, width=8, block=block, expansion=2, kernel=5, dilation=2, se=True)
    arch = MacroArch(4, (MacroStage(depth=1, width=4, downsample=False), stage))
    net = SPACES.get("macro").build_network(arch, TRAIN, shape, 3)
    out, _ = net(_batch(shape))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["resnet_tiny", "resnet10"])
def test_the_macro_points_are_the_baselines_in_both_dimensions(name, shape):
    """With the baseline's weights, the macro point computes the baseline's function, for series
    as for images: one definition, two dimensions."""
    torch.manual_seed(0)
    base = build_baseline(name, shape[0], 3, shape[1:]).eval()
    net = SPACES.get("macro").build_network(load_genotype(f"macro:{name}"), TRAIN, shape, 3).eval()
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net.load_state_dict(dict(zip(net.state_dict(), base.state_dict().values(), strict=True)))
    x = _batch(shape)
    torch.testing.assert_close(net(x)[0], base(x)[0])


@pytest.mark.parametrize("shape", SHAPES)
def test_morphs_preserve_the_function_in_both_dimensions(shape):
    space = SPACES.get("macro")
    s = SearchConfig.model_validate(
        {"strategy": "random", "space": "macro", "widths": [8, 16], "kernels": [3, 5],
         "depths": [1, 2]}
    )  # fmt: skip
    arch = MacroArch(4, (MacroStage(depth=1, width=8), MacroStage(depth=1, width=8)))
    torch.manual_seed(0)
    net = space.build_network(arch, TRAIN, shape, 3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net.eval()
    x = _batch(shape)
    morphs = space.morphs(arch, s, shape[1:])
    assert {m.name.split()[0] for m in morphs} >= {"deepen", "kernel", "widen"}
    for m in morphs:
        torch.testing.assert_close(m.apply(net).eval()(x)[0], net(x)[0], atol=1e-4, rtol=1e-4)


def test_resnet1d_is_wang_et_al():
    net = build_baseline("resnet1d", 1, 2, (150,))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d) and m.kernel_size[0] > 1]
    assert [c.kernel_size[0] for c in convs] == [8, 5, 3] * 3
    assert [c.out_channels for c in convs[::3]] == [64, 128, 128]
    assert sum(p.numel() for p in net.parameters()) == 503_106
    assert "resnet1d" not in dict(SPACES.get("baseline").decisions(None).decisions)["network"]


def test_a_space_for_images_only_refuses_series_naming_the_spaces_that_build_them(plugin):
    plugin("chain_space")  # a plugin space of the default dims: images only
    with pytest.raises(UserError, match="builds networks for images only") as refused:
        SPACES.get("chain").check_dims((1, 150))
    for name in SPACES.names():
        assert (f"--space {name}" in str(refused.value)) == (1 in SPACES.get(name).dims), name
    SPACES.get("chain").check_dims((3, 8, 8))


SUPERNET_SPACES = [n for n in SPACES.names() if SPACES.get(n).has_supernet]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", SUPERNET_SPACES)
def test_every_supernet_and_its_derived_network_build_for_both_dimensions(name, shape):
    """The cell spaces' supernets and networks: one definition, kernels of the input's
    dimension, a gradient for every weight and architecture parameter."""
    space = SPACES.get(name)
    assert set(space.dims) == {1, 2}
    s = SearchConfig.model_validate({"strategy": "darts", "space": name, "C": 4, "layers": 3})
    torch.manual_seed(0)
    supernet = space.build_supernet(s, shape, 3)
    x = _batch(shape, 4)
    out = supernet(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in supernet.arch_parameters())
    net = space.build_network(supernet.genotype(), TRAIN.model_copy(update={"C": 6}), shape, 3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert convs and all(c.weight.dim() == len(shape) + 1 for c in convs)
    out, _ = net(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_every_darts_op_maps_a_series_to_its_strided_length():
    from scinas.ops import OPS, create_op

    x = torch.randn(2, 6, 37)
    for name in OPS.names():
        for stride in (1, 2):
            y = create_op(name, 6, stride, d=1)(x)
            assert y.shape == (2, 6, -(-37 // stride)), (name, stride)
            assert all(m.weight.dim() == 3 for m in create_op(name, 6, stride, d=1).modules()
                       if isinstance(m, torch.nn.modules.conv._ConvNd))  # fmt: skip


def test_an_op_for_images_only_is_refused_on_series_with_one_message(plugin, tmp_path):
    from scinas.ops import register_op

    @register_op("plain_conv_3x3_2d", takes_relu=True)
    def _plain(C, stride, affine, relu_in):
        return torch.nn.Conv2d(C, C, 3, stride, 1, bias=False)

    data = _slice(tmp_path, n_train=40, n_test=40)
    out = tmp_path / "run"
    res = scinas_cli(
        "run", "--data", data, "--out", out, "-q",
        *_sets([*TINY_SERIES, "search.strategy=darts", "search.space=darts",
                "search.ops=[skip_connect,plain_conv_3x3_2d]"]),
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "plain_conv_3x3_2d builds for images only" in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("error:") == 1
    assert not out.exists()


@pytest.mark.parametrize("name", SUPERNET_SPACES)
def test_a_cell_search_runs_on_a_real_series_set(tmp_path, name):
    data = _slice(tmp_path, n_train=40, n_test=40)
    out = tmp_path / "run"
    res = scinas_cli(
        "run", "--data", data, "--out", out, "-q",
        *_sets([*TINY_SERIES, "search.strategy=darts", f"search.space={name}", "search.C=4",
                "search.layers=3", "search.epochs=1", "search.batch_size=16", "train.C=4",
                "train.layers=3", "train.epochs=2"]),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["test"]["accuracy"] <= 1
    assert load_genotype(str(out / "genotype.json")).space == name


# ----------------------------------------------------------------------------- reading


def _npz(tmp_path, x, y=None, name="s.npz", **more):
    y = np.arange(len(x)) % 2 if y is None else y
    path = tmp_path / name
    np.savez(path, x_train=x, y_train=y, **more)
    return path


@pytest.mark.parametrize(
    ("shape", "layout", "channels", "how"),
    [
        ((40, 1, 50), "auto", 1, "NCL, the only reading"),
        ((40, 3, 50), "auto", 3, "NCL, the only reading"),
        ((40, 50, 2), "auto", 2, "NLC, the only reading"),
        ((40, 6, 30), "ncl", 6, "NCL, --layout ncl"),
        ((40, 30, 6), "nlc", 6, "NLC, --layout nlc"),
        ((40, 30), "nl", 1, "NL, --layout nl"),
    ],
)
def test_series_are_read_from_the_layout_or_an_unambiguous_shape(
    tmp_path, shape, layout, channels, how
):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ds = load_dataset(_npz(tmp_path, x), layout=layout)
    assert ds.is_series and ds.input_shape == (channels, 30 if 30 in shape else 50)
    assert ds.train.x.dim() == 3 and len(ds.mean) == channels
    note = next(n for n in ds.notes if n.startswith("x read as series"))
    assert how in note and f"{channels} channel(s)" in note
    assert "series" in ds.summary()
    if layout == "nlc":  # the values land where they belong
        both = torch.cat([ds.train.x, ds.val.x, ds.test.x])
        assert sorted(both[:, 0, 0].tolist()) == sorted(x[:, 0, 0].tolist())


def test_images_read_as_before(tmp_path):
    ds = load_dataset(_npz(tmp_path, np.zeros((40, 9, 9), np.uint8) + np.arange(9, dtype=np.uint8)))
    assert ds.input_shape == (1, 9, 9) and not ds.is_series
    ds = load_dataset(
        _npz(tmp_path, np.random.default_rng(0).random((40, 6, 30)), name="i.npz"), layout="nhw"
    )
    assert ds.input_shape == (1, 6, 30)
    # without --layout, unequal sides of 4 or more stay images, as before series; the log says
    # how to read them as series
    ds = load_dataset(_npz(tmp_path, np.random.default_rng(0).random((40, 6, 30)), name="u.npz"))
    assert ds.input_shape == (1, 6, 30)
    hint = "pass --layout ncl if these are series (6 channels of 30 steps)"
    assert any(hint in n for n in ds.notes)
    ds = load_dataset(_npz(tmp_path, np.ones((40, 12)), name="f.npz"))
    assert ds.input_shape == (12, 1, 1) and any("--layout nl" in n for n in ds.notes)


@pytest.mark.parametrize(
    ("shape", "layout", "phrase"),
    [
        ((40, 6, 30), "auto", "cannot tell from shape (40, 6, 30) whether x holds images"),
        ((40, 30), "ncl", "--layout ncl reads 3-D arrays"),
        ((40, 6, 30), "nl", "pass --layout ncl or nlc"),
        ((40, 1, 8, 8), "ncl", "is 4-D (40, 1, 8, 8): series are"),
        ((40, 1, 3), "auto", "3 step(s) long"),
    ],
)
def test_bad_series_shapes_are_one_clear_message(tmp_path, monkeypatch, shape, layout, phrase):
    monkeypatch.setattr("scinas.data.layouts.UNEQUAL_3D", None)  # unequal 3-D shapes: ambiguous
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with pytest.raises(UserError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(_npz(tmp_path, x), layout=layout)


def test_nan_in_series_says_how_many_and_where(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 2, 30)).astype(np.float32)
    x[4, 0, 10:13] = np.nan
    x[17, 1, 3] = np.nan
    x[20, 0, 5] = np.inf
    with pytest.raises(UserError) as e:
        load_dataset(_npz(tmp_path, x))
    msg = str(e.value)
    assert "4 NaN and 1 infinite value(s)" in msg and "in 3 series" in msg
    assert "row 4 (channel 0 steps 10-12)" in msg and "row 17 (channel 1 step 3)" in msg


# ----------------------------------------------------------------------------- augmentation


def test_series_augmentation_is_off_by_default_and_seeded_when_on():
    g = torch.Generator().manual_seed(0)
    assert series_augment("default", g) is None and series_augment("none", g) is None
    with pytest.raises(ValueError, match="for images"):
        series_augment("rotation", g)
    x = torch.randn(16, 2, 50)
    a = series_augment("series", torch.Generator().manual_seed(1))(x)
    b = series_augment("series", torch.Generator().manual_seed(1))(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    # each part alone: a shift moves the series without changing its values
    shifted = augment_series(x, SeriesAugment(shift=0.1, scale=0, jitter=0), g)
    for row, orig in zip(shifted, x, strict=True):
        k = next(k for k in range(-5, 6) if torch.equal(torch.roll(orig, k, -1)[:, 5:-5],
                                                         row[:, 5:-5]))  # fmt: skip
        assert abs(k) <= 5
    scaled = augment_series(x, SeriesAugment(shift=0, scale=0.1, jitter=0), g)
    ratio = scaled / x
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio[:, 0, 0] - 1).abs() <= 0.1 + 1e-6).all()
    noisy = augment_series(x, SeriesAugment(shift=0, scale=0, jitter=0.03), g)
    assert 0.02 < float((noisy - x).std()) < 0.04


# ----------------------------------------------------------------------------- end to end

# 15 epochs of 45 series: about 2 s of training, seeded (0.82 test accuracy on this slice)
TINY_SERIES = ["train.epochs=15", "train.batch_size=16", "train.optimizer=adamw", "train.lr=0.01"]


def _slice(tmp_path, name="gun_point.npz", n_train=50, n_test=60):
    with np.load(shared("series", name), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["x_train"], arrays["y_train"] = arrays["x_train"][:n_train], arrays["y_train"][:n_train]
    arrays["x_test"], arrays["y_test"] = arrays["x_test"][:n_test], arrays["y_test"][:n_test]
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _sets(items):
    out = []
    for item in items:
        out += ["--set", item]
    return out


def test_train_report_export_on_a_real_series_set(tmp_path):
    """gun_point (2 classes): resnet_tiny trains past chance in seconds, and the run's report and
    an ONNX export are written and read series."""
    data = _slice(tmp_path)
    out = tmp_path / "run"
    res = scinas_cli(
        "train", "--data", data, "--genotype", "resnet_tiny", "--out", out, "-q",
        *_sets(TINY_SERIES),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["accuracy"] > 0.7  # chance 0.5, the majority class 0.57
    data_json = json.loads((out / "data.json").read_text())
    assert data_json["input_shape"] == [1, 150]
    assert any("x read as series: 1 channel(s) of 150 steps" in n for n in data_json["notes"])
    res = scinas_cli("report", out)
    assert res.returncode == 0, res.stderr
    assert (out / "report.html").stat().st_size > 0
    res = scinas_cli("export", out, "--format", "onnx")
    assert res.returncode == 0, res.stderr
    assert (out / "model.onnx").stat().st_size > 0


def test_compare_resnet1d_and_the_macro_space_on_a_series_set(tmp_path):
    data = _slice(tmp_path, n_train=40, n_test=40)
    out = tmp_path / "cmp"
    res = scinas_cli(
        "compare", "--data", data, "--out", out, "--seeds", "1",
        "--methods", "resnet_tiny,resnet1d",
        *_sets(["train.epochs=2", "train.batch_size=16", "compare.budget=null"]),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    saved = json.loads((out / "compare.json").read_text())
    assert set(saved["methods"]) == {"resnet_tiny", "resnet1d"}
    assert all(0 <= saved["methods"][m]["values"][0] <= 1 for m in saved["methods"])


def test_a_search_in_the_macro_space_runs_on_series(tmp_path):
    data = _slice(tmp_path, n_train=40, n_test=40)
    out = tmp_path / "run"
    res = scinas_cli(
        "run", "--data", data, "--out", out, "-q",
        *_sets(["search.space=macro", "search.strategy=random", "search.budget=2",
                "search.widths=[8,16]", "search.depths=[0,1]", "search.eval_epochs=1",
                "train.epochs=2", "train.batch_size=16"]),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (out / "results.json").is_file() and (out / "genotype.json").is_file()


def test_a_lineage_on_series_names_no_augmentation_it_did_not_choose(tmp_path, monkeypatch):
    """train.augment=auto on series is no augmentation and has no view to probe: the lineage's
    recipe and its log name no augmentation change (it once said {'augment': 'default'})."""
    import scinas.strategies.lineage as lineage

    monkeypatch.setattr(lineage, "FLOOR_MAX", 20)  # the start's looks at chance end sooner
    data = _slice(tmp_path, n_train=40, n_test=40)
    out = tmp_path / "run"
    res = scinas_cli(
        "run", "--data", data, "--out", out,
        *_sets(["search.strategy=lineage", "search.space=baseline", "search.start_from=[resnet1d]",
                "search.budget=1", "search.segment_steps=2", "search.patience=null",
                "search.wait_for_plateau=false", "search.recipe_dims=[lr]",
                "train.epochs=1", "train.batch_size=16",
                "data.val_fraction=0.5"]),  # 20 to judge: 4 could never beat a constant output
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [e for e in events if e["event"] == "lineage_floor"]  # the search ran
    (result,) = [e for e in events if e["event"] == "lineage_result"]
    assert "augment" not in result["recipe_changes"]
    said = [line for line in res.stderr.splitlines() if "recipe changes:" in line]
    assert said and "augment" not in said[0], said


@pytest.mark.parametrize(
    ("make", "args", "phrase"),
    [
        (lambda x: x[:, :, :3], (), "3 step(s) long"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), (), "1 NaN"),
        (lambda x: np.repeat(x, 6, axis=1), (), "--layout ncl"),
        (lambda x: x, ("--set", "train.augment=natural"), "train.augment=natural is an image"),
    ],
    ids=["too-short", "nan", "ambiguous", "image-augment"],
)
def test_bad_series_input_exits_2_with_one_message_and_writes_nothing(
    tmp_path, monkeypatch, make, args, phrase
):
    monkeypatch.setattr("scinas.data.layouts.UNEQUAL_3D", None)  # unequal 3-D shapes: ambiguous
    x = np.random.default_rng(0).normal(size=(40, 1, 30)).astype(np.float32)
    data = _npz(tmp_path, make(x))
    out = tmp_path / "run"
    res = scinas_cli("train", "--genotype", "resnet_tiny", "--data", data, "--out", out, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert phrase in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def _ucr(folder, name="GunPoint", labels=(1, 2), n_test=60, edit=None):
    """gun_point written as the UCR archive writes it: NAME_TRAIN.tsv / NAME_TEST.tsv, a label
    and the values per line, tab-separated, no header; ``edit(split, rows)`` may spoil it."""
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(shared("series", "gun_point.npz"), allow_pickle=False) as f:
        splits = {"TRAIN": (f["x_train"], f["y_train"]), "TEST": (f["x_test"], f["y_test"])}
    for split, (x, y) in splits.items():
        x, y = (x[:n_test], y[:n_test]) if split == "TEST" else (x, y)
        rows = [[str(labels[c]), *(f"{v:.6f}" for v in s[0])] for s, c in zip(x, y, strict=True)]
        if edit is not None:
            rows = edit(split, rows)
        (folder / f"{name}_{split}.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    return folder / f"{name}_TRAIN.tsv"


def test_a_ucr_pair_reads_as_the_archive_s_series(tmp_path):
    """Either file or the folder: both splits, labels -1/1 as classes 0/1 named by the labels,
    values equal to the archive's."""
    train = _ucr(tmp_path / "ucr", labels=(-1, 1))
    with np.load(shared("series", "gun_point.npz"), allow_pickle=False) as f:
        x_test, y_test = f["x_test"][:60], f["y_test"][:60]
    for path in (train, train.parent, train.parent / "GunPoint_TEST.tsv"):
        ds = load_dataset(path)
        assert ds.name == "GunPoint" and ds.input_shape == (1, 150) and len(ds.test) == 60
        assert ds.class_names == ("-1", "1") and ds.num_outputs == 2
        assert np.array_equal(ds.test.y.numpy(), y_test)
        assert np.allclose(ds.test.x.numpy(), x_test, atol=1e-5)
        assert any("as its format stores them" in n for n in ds.notes)


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda s, r: [*r[:-1], [*r[-1][:-5], *["nan"] * 5]], "pads variable-length series"),
        (lambda s, r: [row[:-1] for row in r] if s == "TEST" else r, "must have one length"),
        (lambda s, r: [["7", *row[1:]] for row in r] if s == "TEST" else r, "never appear"),
        (lambda s, r: [[row[0], "x", *row[2:]] for row in r], "not a UCR series file"),
        (lambda s, r: [["1.5", *row[1:]] for row in r], "whole-number class labels"),
    ],
    ids=["nan-padded", "lengths", "unseen-label", "text", "fractional-label"],
)
def test_a_bad_ucr_pair_exits_2_with_one_message_and_writes_nothing(tmp_path, edit, phrase):
    train = _ucr(tmp_path / "ucr", edit=edit)
    out = tmp_path / "run"
    res = scinas_cli("train", "--data", train, "--genotype", "resnet_tiny", "--out", out, "-q")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert phrase in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def test_a_ucr_pair_trains_end_to_end(tmp_path):
    train = _ucr(tmp_path / "ucr")
    out = tmp_path / "run"
    res = scinas_cli(
        "train", "--data", train.parent, "--genotype", "resnet_tiny", "--out", out, "-q",
        *_sets(TINY_SERIES),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "GunPoint" and results["test"]["accuracy"] > 0.7  # chance 0.5


def test_a_ucr_test_split_alone_says_which_file_is_missing(tmp_path):
    train = _ucr(tmp_path / "ucr")
    train.unlink()
    res = scinas_cli("train", "--data", tmp_path / "ucr" / "GunPoint_TEST.tsv", "--out",
                     tmp_path / "run", "--genotype", "resnet_tiny", "-q")  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "put GunPoint_TRAIN.tsv next to it" in res.stderr, res.stderr
