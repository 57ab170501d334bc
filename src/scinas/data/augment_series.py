"""Seeded augmentation of whole (B, C, L) series batches on their device: a random shift (a crop
of the zero-padded series), an amplitude scaling and additive jitter, each drawn per series.

Off by default for series (``train.augment=default`` and ``none`` give no augmentation): unlike
a photograph, whose class survives a small shift or a mirror, a series often means what it
means *because of* where its features sit and how large they are: a spectrum's peak positions
are wavelengths, an ECG beat's amplitude can be the diagnosis, a light curve's level is a
brightness. ``train.augment=series`` turns the three on, for data where they keep the label
(e.g. motion or sensor recordings whose onset and gain vary between recordings).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

__all__ = [
    "SERIES_AUGMENTS",
    "SERIES_EFFECTS",
    "SeriesAugment",
    "augment_series",
    "series_augment",
    "series_effect",
]

#: ``train.augment`` choices that make sense for series; the others are image augmentations.
SERIES_AUGMENTS = ("default", "none", "series", "auto")  # auto: nothing to probe, none
#: what those choices do to a series: nothing, or the ``series`` preset
SERIES_EFFECTS = ("none", "series")


def series_effect(name: str) -> str:
    """What ``train.augment=name`` does to series (one of `SERIES_EFFECTS`): only ``series``
    augments them (see the module's docstring for why)."""
    return "series" if name == "series" else "none"


@dataclass(frozen=True)
class SeriesAugment:
    """What `augment_series` does; the defaults are the ``series`` preset.

    Attributes:
        shift: Largest shift as a share of the length: the series is zero-padded by
            ``round(shift·L)`` steps at both ends and cropped back to L at a random offset.
        scale: Amplitude scaled by a factor drawn uniformly from [1 - scale, 1 + scale].
        jitter: Standard deviation of Gaussian noise added to every step, in the units of the
            normalised series (the trainer augments after normalising, so 0.03 is 3% of a std).
    """

    shift: float = 0.1
    scale: float = 0.1
    jitter: float = 0.03

    def __post_init__(self) -> None:
        if not 0 <= self.shift < 1:
            raise ValueError(f"shift must be in [0, 1), got {self.shift}")
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must be in [0, 1), got {self.scale}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")


def _uniform(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def random_shift(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each series by ``padding`` steps at both ends and crop back to its length at a
    random offset: a shift of up to ``padding`` steps either way."""
    if padding <= 0:
        return x
    B, _, L = x.shape
    offset = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=generator.device)
    windows = F.pad(x, (padding, padding)).unfold(2, L, 1)  # (B, C, 2p+1, L), a view
    return windows[torch.arange(B, device=x.device), :, offset.to(x.device)]


def augment_series(x: torch.Tensor, spec: SeriesAugment, generator: torch.Generator):
    """Apply ``spec`` to a (B, C, L) batch: shift, then scaling, then jitter (that draw order).

    Same shape, dtype and device as ``x``.
    """
    if x.dim() != 3:
        raise ValueError(f"augment_series expects a (B, C, L) batch, got shape {tuple(x.shape)}")
    B, _, L = x.shape
    x = random_shift(x, round(spec.shift * L), generator)
    if spec.scale:
        factor = 1 + spec.scale * (2 * _uniform(B, generator, x.device) - 1)
        x = x * factor.view(B, 1, 1).to(x.dtype)
    if spec.jitter:
        noise = torch.randn(x.shape, generator=generator, device=generator.device)
        x = x + spec.jitter * noise.to(device=x.device, dtype=x.dtype)
    return x


def series_augment(name: str, generator: torch.Generator):
    """The trainer's augmentation hook for series under ``train.augment=name``: the ``series``
    preset, or None for ``default`` and ``none`` (see the module's docstring for why)."""
    if name not in SERIES_AUGMENTS:
        raise ValueError(f"augmentation {name!r} is for images; for series: {SERIES_AUGMENTS}")
    if series_effect(name) == "none":
        return None
    return partial(augment_series, spec=SeriesAugment(), generator=generator)
