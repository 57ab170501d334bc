from __future__ import annotations

import torch

from scinas.data.augment import augment_batch, cutout, random_crop, random_hflip


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
