"""Batched, seeded tensor augmentation applied to whole (B, C, H, W) batches on their device.

No per-image Python loop: random crops are one indexing copy, cutout one mask, flips one
``where``, and rotation + translation + zoom (+ flips, when a warp runs anyway) one affine warp per
image, all sampled in a single ``grid_sample`` over the batch. Every random draw comes from the
``generator`` passed in (on the generator's own device, then moved to the batch's), so a reseeded
generator reproduces a batch's augmentation exactly, and the order of draws is fixed by the spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PADDING_MODES = ("zeros", "reflection", "border")


def _rand(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` uniform [0, 1) draws on the generator's device (a CPU generator may serve CUDA)."""
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def _randint(high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to (H, W) at a random offset per image."""
    if padding <= 0:
        return x
    B, C, H, W = x.shape
    dy = _randint(2 * padding + 1, B, generator, x.device)
    dx = _randint(2 * padding + 1, B, generator, x.device)
    # Every (H, W) window of the padded batch is a view (B, C, 2p+1, 2p+1, H, W); one indexing
    # copy picks each image's window (2× faster than two gathers, same result).
    windows = F.pad(x, (padding, padding, padding, padding)).unfold(2, H, 1).unfold(3, W, 1)
    return windows[torch.arange(B, device=x.device), :, dy, dx]


def _flip_where(x: torch.Tensor, flip: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.where(flip[:, None, None, None], x.flip(dim), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror left-right each image with probability 0.5 (exact: no resampling)."""
    return _flip_where(x, _rand(x.size(0), generator, x.device) < 0.5, 3)


def random_vflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror top-bottom each image with probability 0.5 (exact: no resampling)."""
    return _flip_where(x, _rand(x.size(0), generator, x.device) < 0.5, 2)


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one length×length square per image, centred anywhere (clipped at the border)."""
    if length <= 0:
        return x
    B, _, H, W = x.shape
    cy = _randint(H, B, generator, x.device)
    cx = _randint(W, B, generator, x.device)
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


# --------------------------------------------------------------------------- affine warps


def _per_image(
    v: torch.Tensor | float | None, n: int, fill: float, ref: torch.Tensor
) -> torch.Tensor:
    """A (n,) tensor of ``ref``'s dtype/device from a scalar, a (n,) tensor or None (``fill``)."""
    v = fill if v is None else v
    return torch.as_tensor(v, dtype=ref.dtype, device=ref.device).expand(n)


def affine_matrices(
    degrees: torch.Tensor | float,
    height: int,
    width: int,
    *,
    translate: torch.Tensor | None = None,
    scale: torch.Tensor | float | None = None,
    hflip: torch.Tensor | None = None,
    vflip: torch.Tensor | None = None,
    batch: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(B, 2, 3) ``F.affine_grid`` matrices (align_corners=False) for per-image transforms.

    The image is flipped (``hflip``/``vflip``: (B,) bool), rotated by ``degrees`` (positive is
    the direction of ``torch.rot90(x, 1, (-2, -1))``), zoomed by ``scale`` (>1 enlarges) about
    its centre and shifted by ``translate`` ((B, 2): (dx, dy) as fractions of W and H). The
    rotation is done in pixel units, not in the [-1, 1] normalised coordinates (which stretch a
    non-square image to a square), so non-square images rotate without shearing.
    """
    ref = torch.as_tensor(degrees, dtype=dtype, device=device)
    if batch is None:
        sized = [t for t in (ref, translate, scale, hflip, vflip) if torch.is_tensor(t)]
        batch = max((t.shape[0] for t in sized if t.dim() > 0), default=1)
    # Trigonometry in float64 where the device has it: cos(90°) is then 6e-17, not float32's
    # -4e-8, so quarter turns land on pixel centres to rounding and match rot90.
    wide = torch.float64 if ref.device.type != "mps" else ref.dtype
    rad = torch.deg2rad(_per_image(ref, batch, 0.0, ref).to(wide))
    cos, sin = torch.cos(rad).to(ref.dtype), torch.sin(rad).to(ref.dtype)
    inv_s = 1.0 / _per_image(scale, batch, 1.0, ref)
    # The warp samples the input at A @ out + b (normalised coordinates). In pixel coordinates
    # about the centre, in = F R(θ) (out - d) / s with R(θ) = [[c, -s], [s, c]]; normalised
    # coordinates are pixels scaled by (2/W, 2/H), which turns R's off-diagonal into H/W, W/H.
    a00 = cos * inv_s
    a01 = -sin * (height / width) * inv_s
    a10 = sin * (width / height) * inv_s
    a11 = cos * inv_s
    if hflip is not None:
        sx = 1.0 - 2.0 * hflip.to(ref.dtype).to(ref.device)
        a00, a01 = a00 * sx, a01 * sx
    if vflip is not None:
        sy = 1.0 - 2.0 * vflip.to(ref.dtype).to(ref.device)
        a10, a11 = a10 * sy, a11 * sy
    if translate is None:
        b0 = b1 = torch.zeros_like(a00)
    else:
        d = 2.0 * translate.to(ref.dtype).to(ref.device).expand(batch, 2)  # normalised units
        b0 = -(a00 * d[:, 0] + a01 * d[:, 1])
        b1 = -(a10 * d[:, 0] + a11 * d[:, 1])
    return torch.stack((a00, a01, b0, a10, a11, b1), dim=1).view(batch, 2, 3)


def _theta_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 at least: half-precision coordinates would misplace samples by a tenth of a pixel."""
    return torch.promote_types(x.dtype, torch.float32)


def warp(x: torch.Tensor, theta: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``x`` through per-image (B, 2, 3) affine matrices: one grid, one bilinear pass."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    B, _, H, W = x.shape
    # grid[b, i, j] = A_b @ (x_j, y_i) + t_b is separable: a (B, W, 2) column term plus a
    # (B, H, 2) row term, so one broadcast add builds it. F.affine_grid (a batched
    # (H·W, 3) @ (3, 2) product) builds the same grid ~15× slower on CPU, which made it cost as
    # much as the sampling itself (benchmarks/augment.py --variants).
    theta = theta.to(device=x.device, dtype=_theta_dtype(x))
    xs = torch.arange(W, device=x.device, dtype=theta.dtype).mul_(2.0 / W).add_(1.0 / W - 1.0)
    ys = torch.arange(H, device=x.device, dtype=theta.dtype).mul_(2.0 / H).add_(1.0 / H - 1.0)
    col = theta[:, None, :, 0] * xs[None, :, None]  # (B, W, 2)
    row = theta[:, None, :, 1] * ys[None, :, None] + theta[:, None, :, 2]  # (B, H, 2)
    grid = col[:, None, :, :] + row[:, :, None, :]  # (B, H, W, 2)
    # Half-precision batches are sampled in float32 (a bf16 grid is off by ~0.1 px at 32 px).
    src = x if x.dtype == theta.dtype else x.to(theta.dtype)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.to(x.dtype)


def affine(
    x: torch.Tensor,
    degrees: torch.Tensor | float,
    *,
    translate: torch.Tensor | None = None,
    scale: torch.Tensor | float | None = None,
    hflip: torch.Tensor | None = None,
    vflip: torch.Tensor | None = None,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Apply given per-image transforms (see ``affine_matrices``); identity ones are exact.

    Images whose transform is the identity (0°, no shift, scale 1, no flip) come back bit-exact
    rather than through bilinear resampling, which is only exact up to rounding.
    """
    B, _, H, W = x.shape
    theta = affine_matrices(
        degrees,
        H,
        W,
        translate=translate,
        scale=scale,
        hflip=hflip,
        vflip=vflip,
        batch=B,
        dtype=_theta_dtype(x),
        device=x.device,
    )
    out = warp(x, theta, padding_mode)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=theta.dtype, device=x.device)
    identity = (theta == eye).flatten(1).all(dim=1)
    return torch.where(identity[:, None, None, None], x, out)


def rotate(
    x: torch.Tensor, degrees: torch.Tensor | float, *, padding_mode: str = "zeros"
) -> torch.Tensor:
    """Rotate each image about its centre by ``degrees`` (scalar or (B,)); 90° is ``rot90``."""
    return affine(x, degrees, padding_mode=padding_mode)


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    max_degrees: float = 0.0,
    translate: float = 0.0,
    zoom: float = 1.0,
    hflip: bool = False,
    vflip: bool = False,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Random flips, rotation, translation and zoom per image, in one warp when any is non-trivial.

    Angle ~ U[-max_degrees, max_degrees], shift ~ U[-translate, translate] of W and of H, scale
    log-uniform in [1/zoom, zoom] (so zooming in and out are equally likely). Flips are folded
    into the warp when one runs anyway; otherwise they are exact ``where`` flips. Draw order:
    hflip, vflip, angle, shift (dx then dy per image), scale; a disabled part draws nothing.
    """
    B, dev = x.size(0), x.device
    fh = _rand(B, generator, dev) < 0.5 if hflip else None
    fv = _rand(B, generator, dev) < 0.5 if vflip else None
    if max_degrees == 0 and translate == 0 and zoom == 1:
        if fh is not None:
            x = _flip_where(x, fh, 3)
        return x if fv is None else _flip_where(x, fv, 2)
    dtype = _theta_dtype(x)
    deg = (_rand(B, generator, dev).to(dtype) * 2 - 1) * max_degrees if max_degrees else 0.0
    shift = None
    if translate:
        shift = (_rand(2 * B, generator, dev).to(dtype).view(B, 2) * 2 - 1) * translate
    scale = None
    if zoom != 1:
        scale = torch.exp((_rand(B, generator, dev).to(dtype) * 2 - 1) * math.log(zoom))
    H, W = x.shape[-2:]
    theta = affine_matrices(
        deg,
        H,
        W,
        translate=shift,
        scale=scale,
        hflip=fh,
        vflip=fv,
        batch=B,
        dtype=dtype,
        device=dev,
    )
    return warp(x, theta, padding_mode)


# --------------------------------------------------------------------------- specs and presets


@dataclass(frozen=True)
class AugmentSpec:
    """What to randomise per image; the defaults change nothing.

    ``rotate_degrees``: max |angle| (180 = any angle); ``translate``: max shift as a fraction of
    W and H; ``zoom``: scale log-uniform in [1/zoom, zoom]; ``crop_padding``: zero-pad and crop
    back at a random offset (pixels); ``cutout``: side of the zeroed square (pixels);
    ``padding_mode``: what the warp samples outside the image ("zeros", "reflection", "border").
    """

    rotate_degrees: float = 0.0
    translate: float = 0.0
    zoom: float = 1.0
    hflip: bool = False
    vflip: bool = False
    crop_padding: int = 0
    cutout: int = 0
    padding_mode: str = "zeros"

    def __post_init__(self) -> None:
        if not 0 <= self.rotate_degrees <= 180:
            raise ValueError(f"rotate_degrees must be in [0, 180], got {self.rotate_degrees}")
        if not 0 <= self.translate < 1:
            raise ValueError(f"translate must be in [0, 1), got {self.translate}")
        if self.zoom < 1:
            raise ValueError(f"zoom must be >= 1 (scale in [1/zoom, zoom]), got {self.zoom}")
        if self.crop_padding < 0 or self.cutout < 0:
            raise ValueError("crop_padding and cutout must be >= 0")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}")

    @property
    def warps(self) -> bool:
        """Whether a resampling warp runs (flips alone never resample)."""
        return self.rotate_degrees != 0 or self.translate != 0 or self.zoom != 1


AUGMENT_PRESETS: dict[str, AugmentSpec] = {
    # Nothing: ``augment`` returns its input as is.
    "none": AugmentSpec(),
    # Natural photographs (CIFAR-style): up is up, left/right is arbitrary. 4 px of padding is the
    # usual H/8 for 32×32 images; for other sizes use AugmentSpec(crop_padding=H // 8, hflip=True).
    "natural": AugmentSpec(crop_padding=4, hflip=True),
    # Orientation-free data (sky survey cut-outs, microscopy): any angle, both mirrors, a small
    # shift and zoom; corners rotated in from outside the image are zeros. (With any angle, vflip
    # adds nothing hflip does not already give, vflip = hflip∘rot180, but it costs nothing either:
    # flips are folded into the one warp.)
    "rotation": AugmentSpec(rotate_degrees=180, translate=0.05, zoom=1.1, hflip=True, vflip=True),
}


def augment(x: torch.Tensor, spec: AugmentSpec | str, generator: torch.Generator) -> torch.Tensor:
    """Apply ``spec`` (or a preset's name) to a (B, C, H, W) batch: crop, warp+flips, cutout.

    Same shape, dtype and device as ``x``; an all-default spec returns ``x`` itself. Draw order:
    crop offsets, flips, warp parameters, cutout centres, so a spec with only crop, hflip and
    cutout reproduces ``augment_batch`` draw for draw. For the trainer's ``augment`` hook:
    ``functools.partial(augment, spec=AUGMENT_PRESETS["rotation"], generator=g)``.
    """
    if x.dim() != 4:
        raise ValueError(f"augment expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if isinstance(spec, str):
        try:
            spec = AUGMENT_PRESETS[spec]
        except KeyError:
            raise ValueError(f"unknown preset {spec!r}; known: {sorted(AUGMENT_PRESETS)}") from None
    x = random_crop(x, spec.crop_padding, generator)
    x = random_affine(
        x,
        generator,
        max_degrees=spec.rotate_degrees,
        translate=spec.translate,
        zoom=spec.zoom,
        hflip=spec.hflip,
        vflip=spec.vflip,
        padding_mode=spec.padding_mode,
    )
    return cutout(x, spec.cutout, generator)


def make_augment(
    name: str,
    height: int,
    width: int,
    generator: torch.Generator,
    *,
    cutout_length: int = 0,
    crop_padding: int | None = None,
    hflip: bool = False,
):
    """The trainer's augmentation hook for a config choice: ``default`` (crop/flip/cutout as
    given), a preset name, or ``none`` (None). Presets get a crop of H/8 (natural) and
    ``cutout_length``.

    Feature vectors (1×1 maps) get None whatever the choice: a crop, warp or cutout of a single
    pixel can only replace the whole vector by zeros (a padded 1×1 crop did so 8 times in 9), and
    a flip leaves it as it is. Images under 8 pixels a side get no crop unless ``crop_padding``
    asks for one (H/8 rounds to 0)."""
    from dataclasses import replace
    from functools import partial

    if name == "none" or height == width == 1:
        return None
    crop = crop_padding if crop_padding is not None else min(height, width) // 8
    if name in ("default", "auto"):  # auto starts as default (`scinas.symmetry.AutoAugment`)
        return partial(
            augment_batch,
            generator=generator,
            crop_padding=crop,
            hflip=hflip,
            cutout_length=cutout_length,
        )
    spec = AUGMENT_PRESETS[name]
    if spec.crop_padding:
        spec = replace(spec, crop_padding=crop)
    return partial(augment, spec=replace(spec, cutout=cutout_length), generator=generator)
