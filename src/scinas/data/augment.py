"""Batched, seeded tensor augmentation applied to whole (B, C, H, W) batches on their device.

No per-image Python loop: random crops are one gather, cutout one mask, flips one ``where``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to (H, W) at a random offset per image."""
    if padding <= 0:
        return x
    B, C, H, W = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(H, device=x.device)[None, :]  # (B, H)
    cols = dx[:, None] + torch.arange(W, device=x.device)[None, :]  # (B, W)
    idx_r = rows[:, None, :, None].expand(B, C, H, W + 2 * padding)
    out = padded.gather(2, idx_r)  # (B, C, H, W + 2p)
    idx_c = cols[:, None, None, :].expand(B, C, H, W)
    return out.gather(3, idx_c)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.size(0), generator=generator).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one length×length square per image, centred anywhere (clipped at the border)."""
    if length <= 0:
        return x
    B, _, H, W = x.shape
    cy = torch.randint(0, H, (B,), generator=generator).to(x.device)
    cx = torch.randint(0, W, (B,), generator=generator).to(x.device)
    ys = torch.arange(H, device=x.device)[None, :]
    xs = torch.arange(W, device=x.device)[None, :]
    half = length // 2
    in_y = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] - half + length))  # (B, H)
    in_x = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] - half + length))  # (B, W)
    mask = in_y[:, :, None] & in_x[:, None, :]  # (B, H, W)
    return x.masked_fill(mask[:, None], 0.0)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    crop_padding: int = 0,
    hflip: bool = False,
    cutout_length: int = 0,
) -> torch.Tensor:
    """Crop, flip and cutout a normalised batch (cutout after normalisation zeroes to the mean)."""
    x = random_crop(x, crop_padding, generator)
    if hflip:
        x = random_hflip(x, generator)
    return cutout(x, cutout_length, generator)
