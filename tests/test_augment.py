from __future__ import annotations

import dataclasses

import pytest
import torch

from scinas.data.augment import (
    AUGMENT_PRESETS,
    AugmentSpec,
    affine,
    affine_matrices,
    augment,
    augment_batch,
    cutout,
    make_augment,
    random_affine,
    random_crop,
    random_hflip,
    random_vflip,
    rotate,
    warp,
)


def test_crop_without_padding_and_cutout_zero_are_identities():
    x = torch.randn(8, 3, 10, 12)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop(x, 0, g), x)
    assert torch.equal(cutout(x, 0, g), x)


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).view(2, 1, 5, 6) + 1
    y = random_crop(x, 2, torch.Generator().manual_seed(3))
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        hits = [
            (i, j)
            for i in range(5)
            for j in range(5)
            if torch.equal(padded[b, :, i : i + 5, j : j + 6], y[b])
        ]
        assert hits, "every crop is a window of the padded image"


def test_flip_twice_is_identity_for_the_same_draw():
    x = torch.randn(16, 2, 4, 4)
    once = random_hflip(x, torch.Generator().manual_seed(5))
    twice = random_hflip(once, torch.Generator().manual_seed(5))
    assert torch.equal(twice, x)
    assert not torch.equal(once, x)


def test_cutout_zeroes_one_square_per_image_and_is_seeded():
    x = torch.ones(32, 1, 16, 16)
    y = cutout(x, 4, torch.Generator().manual_seed(0))
    zeros = (y == 0).sum(dim=(1, 2, 3))
    assert (zeros > 0).all() and (zeros <= 16).all()
    y2 = cutout(x, 4, torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)


def test_augment_batch_keeps_shape():
    x = torch.randn(4, 3, 9, 7)
    y = augment_batch(
        x, torch.Generator().manual_seed(0), crop_padding=1, hflip=True, cutout_length=3
    )
    assert y.shape == x.shape


# --- affine warps, presets and ``augment`` -------------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_augment_batch_unchanged_and_reproduced_by_augment():
    x = torch.randn(16, 3, 12, 10)
    old = augment_batch(x, _gen(4), crop_padding=2, hflip=True, cutout_length=5)
    again = augment_batch(x, generator=_gen(4), crop_padding=2, hflip=True, cutout_length=5)
    new = augment(x, AugmentSpec(crop_padding=2, hflip=True, cutout=5), _gen(4))
    assert torch.equal(old, again) and torch.equal(old, new)


def test_none_preset_returns_the_input_itself_and_draws_nothing():
    x = torch.randn(4, 3, 8, 8)
    g = _gen(1)
    state = g.get_state()
    assert augment(x, AUGMENT_PRESETS["none"], g) is x
    assert augment(x, "none", g) is x
    assert torch.equal(g.get_state(), state)


def test_zero_rotation_translation_and_zoom_is_exact():
    x = torch.randn(6, 2, 9, 13)
    assert torch.equal(random_affine(x, _gen(), max_degrees=0.0, translate=0.0, zoom=1.0), x)
    assert torch.equal(rotate(x, 0.0), x)
    zero = torch.zeros(6, 2)
    assert torch.equal(affine(x, 0.0, translate=zero, scale=1.0), x)
    assert torch.equal(affine(x, torch.zeros(6), translate=zero, scale=torch.ones(6)), x)


def test_only_identity_images_bypass_resampling():
    x = torch.randn(3, 1, 8, 8)
    y = rotate(x, torch.tensor([0.0, 90.0, 0.0]))
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])
    assert not torch.equal(y[1], x[1])


@pytest.mark.parametrize("size", [8, 9, 32])
def test_quarter_turns_match_rot90_on_square_images(size):
    x = torch.randn(4, 3, size, size)
    for k, deg in [(1, 90.0), (-1, -90.0), (2, 180.0), (1, -270.0)]:
        y = rotate(x, deg)
        ref = torch.rot90(x, k, dims=(-2, -1))
        torch.testing.assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
        torch.testing.assert_close(y, ref, atol=1e-4, rtol=0)  # border too, to rounding


def test_non_square_rotation_keeps_distances():
    """A point 10 px right of centre ends 10 px above it: no aspect-ratio shear."""
    x = torch.zeros(1, 1, 21, 41)
    x[0, 0, 10, 30] = 1.0  # centre is (10, 20)
    y = rotate(x, 90.0)
    assert torch.equal((y[0, 0] > 0.5).nonzero(), torch.tensor([[0, 20]]))
    torch.testing.assert_close(y.sum(), x.sum())
    # and 180° of a tall image is exactly flipping both axes
    t = torch.randn(2, 3, 12, 6)
    torch.testing.assert_close(rotate(t, 180.0), t.flip(2, 3), atol=1e-5, rtol=0)


def test_integer_translation_is_a_zero_filled_shift():
    x = torch.randn(2, 3, 8, 10)
    # dx = +2 px (2/10 of W), dy = -1 px (-1/8 of H): content moves right 2 and up 1
    y = affine(x, 0.0, translate=torch.tensor([[0.2, -0.125]]).expand(2, 2))
    ref = torch.zeros_like(x)
    ref[..., :-1, 2:] = x[..., 1:, :-2]
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def test_zoom_two_enlarges_about_the_centre():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 3:5, 3:5] = 1.0  # central 2×2 block
    y = affine(x, 0.0, scale=2.0)
    assert (y[..., 2:6, 2:6] > 0.2).all()  # now covers the central 4×4
    assert y[..., :1, :].abs().max() == 0 and y[..., :, :1].abs().max() == 0


def test_flips_in_the_matrix_equal_exact_flips():
    x = torch.randn(4, 2, 7, 11)
    hf = torch.tensor([True, False, True, False])
    vf = torch.tensor([False, False, True, True])
    y = affine(x, 0.0, hflip=hf, vflip=vf)
    ref = torch.where(hf[:, None, None, None], x.flip(3), x)
    ref = torch.where(vf[:, None, None, None], ref.flip(2), ref)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def test_vflip_twice_is_identity_for_the_same_draw():
    x = torch.randn(16, 2, 5, 4)
    once = random_vflip(x, _gen(5))
    assert not torch.equal(once, x)
    assert torch.equal(random_vflip(once, _gen(5)), x)
    # flips alone (no warp) stay exact through random_affine as well
    once = random_affine(x, _gen(2), hflip=True, vflip=True)
    assert torch.equal(random_affine(once, _gen(2), hflip=True, vflip=True), x)


def test_warp_grid_matches_torch_affine_grid():
    theta = affine_matrices(
        torch.tensor([10.0, -75.0, 160.0]),
        7,
        11,
        translate=torch.tensor([[0.1, -0.05], [0.0, 0.2], [-0.3, 0.0]]),
        scale=torch.tensor([0.8, 1.0, 1.3]),
        hflip=torch.tensor([True, False, False]),
    )
    x = torch.randn(3, 2, 7, 11)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    ref = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(warp(x, theta), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", [p for p in AUGMENT_PRESETS if p != "none"])
def test_presets_are_seeded_and_keep_shape_dtype_device(preset):
    x = torch.randn(32, 3, 16, 16)
    y1 = augment(x, preset, _gen(11))
    y2 = augment(x, AUGMENT_PRESETS[preset], _gen(11))
    y3 = augment(x, preset, _gen(12))
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, y3)
    assert y1.shape == x.shape and y1.dtype == x.dtype and y1.device == x.device
    assert torch.isfinite(y1).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_float_dtypes_are_kept(dtype):
    x = torch.randn(4, 3, 8, 8, dtype=dtype)
    y = augment(x, "rotation", _gen())
    assert y.dtype == dtype and y.shape == x.shape


def test_images_in_a_batch_get_different_transforms():
    one = torch.randn(1, 3, 16, 16)
    x = one.expand(16, -1, -1, -1).contiguous()
    y = augment(x, "rotation", _gen(3)).flatten(1)
    distinct = {tuple(row.tolist()) for row in y}
    assert len(distinct) == 16


def test_rotation_spreads_over_all_angles():
    """With rotate_degrees=180 a single bright pixel ends up in every quadrant."""
    x = torch.zeros(400, 1, 17, 17)
    x[:, 0, 8, 14] = 1.0  # 6 px right of centre
    y = augment(x, AugmentSpec(rotate_degrees=180), _gen(0))[:, 0]
    rows, cols = (y * torch.arange(17.0)[:, None]).sum((1, 2)), (y * torch.arange(17.0)).sum((1, 2))
    mass = y.sum((1, 2))
    cy, cx = rows / mass - 8, cols / mass - 8
    torch.testing.assert_close(cy.hypot(cx), torch.full_like(cy, 6.0), atol=0.35, rtol=0)
    quadrants = {(bool(a > 0), bool(b > 0)) for a, b in zip(cy, cx, strict=True)}
    assert len(quadrants) == 4


def test_zoom_is_log_uniform_between_its_bounds():
    """A centred disc's area scales with zoom²: all within [1/1.5², 1.5²], both sides of 1."""
    yy, xx = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    disc = (((yy - 16) ** 2 + (xx - 16) ** 2) <= 36).float()
    x = disc.expand(200, 1, 33, 33).contiguous()
    y = augment(x, AugmentSpec(zoom=1.5), _gen(0))
    ratio = y.sum((1, 2, 3)) / disc.sum()
    assert (ratio > 1 / 1.5**2 * 0.9).all() and (ratio < 1.5**2 * 1.1).all()
    assert (ratio < 0.8).any() and (ratio > 1.25).any()
    assert 0.35 < (ratio < 1).float().mean() < 0.65


def test_reflection_padding_fills_rotated_corners():
    x = torch.rand(8, 1, 16, 16) + 1.0  # strictly positive
    zeros = augment(x, AugmentSpec(rotate_degrees=45), _gen(0))
    refl = augment(x, AugmentSpec(rotate_degrees=45, padding_mode="reflection"), _gen(0))
    assert (zeros == 0).any()
    assert (refl > 0.5).all()


def test_spec_is_frozen_and_validated():
    spec = AUGMENT_PRESETS["rotation"]
    assert spec.rotate_degrees == 180 and spec.hflip and spec.vflip
    assert spec.translate == 0.05 and spec.zoom == 1.1 and spec.warps
    assert AUGMENT_PRESETS["natural"] == AugmentSpec(crop_padding=4, hflip=True)
    assert not AUGMENT_PRESETS["natural"].warps
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.zoom = 2.0  # type: ignore[misc]
    for bad in (
        {"rotate_degrees": 270},
        {"zoom": 0.5},
        {"translate": -0.1},
        {"crop_padding": -1},
        {"padding_mode": "wrap"},
    ):
        with pytest.raises(ValueError):
            AugmentSpec(**bad)
    with pytest.raises(ValueError, match="unknown preset"):
        augment(torch.zeros(1, 1, 4, 4), "sky", _gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_with_cpu_generator_matches_cpu():
    x = torch.randn(8, 3, 16, 16)
    cpu = augment(x, "rotation", _gen(9))
    gpu = augment(x.cuda(), "rotation", _gen(9))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["default", *AUGMENT_PRESETS])
def test_feature_vectors_are_never_augmented(name):
    """A 1×1 map is a feature vector: a padded crop replaced it by zeros 8 times in 9."""
    g = torch.Generator().manual_seed(0)
    assert make_augment(name, 1, 1, g, cutout_length=16, crop_padding=None, hflip=True) is None


def test_images_under_eight_pixels_get_no_default_crop():
    x = torch.randn(16, 3, 4, 4)
    hook = make_augment("default", 4, 4, torch.Generator().manual_seed(0))
    assert torch.equal(hook(x), x)
    # asked for, a crop still happens
    hook = make_augment("default", 4, 4, torch.Generator().manual_seed(0), crop_padding=1)
    assert not torch.equal(hook(x), x)


def _search_cfg(**sets):
    from scinas.config import Config

    cfg = Config()
    for section, values in sets.items():
        setattr(cfg, section, getattr(cfg, section).model_copy(update=values))
    return cfg


def test_the_search_augments_as_the_training_does_without_cutout():
    from scinas.strategies.oneshot import search_augment

    ones = torch.ones(64, 3, 32, 32)
    cfg = _search_cfg(train={"cutout": 16, "hflip": True})
    out = search_augment(cfg, (32, 32), torch.Generator().manual_seed(0))(ones)
    # a crop of H/8 = 4 only zeroes a border at most 4 wide; a 16-pixel cutout would reach in
    assert torch.equal(out[:, :, 4:28, 4:28], ones[:, :, 4:28, 4:28])
    assert (out == 0).any()  # it did crop
    # flips follow train.hflip: an image with a bright left column ends up with it on the right
    marked = torch.zeros(256, 1, 32, 32)
    marked[:, :, :, 0] = 1.0
    out = search_augment(cfg, (32, 32), torch.Generator().manual_seed(0))(marked)
    assert out[:, :, :, 24:].sum() > 0
    cfg = _search_cfg(train={"hflip": False})
    out = search_augment(cfg, (32, 32), torch.Generator().manual_seed(0))(marked)
    assert out[:, :, :, 24:].sum() == 0
    # a preset in train.augment is followed, and search.augment can still say otherwise
    cfg = _search_cfg(train={"augment": "rotation"})
    assert search_augment(cfg, (32, 32), torch.Generator()).keywords["spec"].rotate_degrees == 180
    cfg = _search_cfg(train={"augment": "rotation"}, search={"augment": "none"})
    assert search_augment(cfg, (32, 32), torch.Generator()) is None
