"""Image files decoded into one N×C×H×W array, shared by the formats that read image files.

Images are decoded with Pillow in a thread pool (Pillow releases the GIL while it decodes, so
thousands of small files load in seconds) and stacked into one array.  8-bit images stay uint8;
16-bit and float images become float32 in their raw units, so no precision is lost.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scinas.data.formats import shown
from scinas.data.limits import size_text
from scinas.errors import UserError
from scinas.memory import available_memory
from scinas.userpaths import os_reason

__all__ = ["FITS", "IMAGE_SUFFIXES", "load_images", "parse_image_size", "size_note"]

#: File names (lower case) that count as images when scanning folders and tables.
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm",
    ".pnm",
)  # fmt: skip
#: How images are brought to ``image_size``: scaled (bilinear) or cut/zero-padded around the centre.
FITS = ("resize", "center_crop")


def _workers() -> int:
    # Decoding is mostly GIL-free C, but file opening and numpy glue are not: a few threads per
    # core hide the I/O latency without oversubscribing.
    return min(32, 4 * (os.cpu_count() or 1))


#: Largest side of ``image_size``: JPEG's limit, far beyond what a network is trained on.
MAX_SIDE = 65535


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:30]}...{text[-10:]}"


def parse_image_size(value: str | int | Sequence[int] | None) -> tuple[int, int] | None:
    """Parse ``image_size``: ``"HxW"`` (e.g. ``"64x48"``), one number for a square, or ``(H, W)``.

    Raises:
        UserError: If the value is not of that form or a side is not positive.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        sides = None
    elif isinstance(value, (int, np.integer)):
        sides = (int(value), int(value))
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,18})\s*(?:[xX×*,]\s*(\d{1,18})\s*)?", value)
        sides = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else None
    else:
        try:
            sides = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            sides = None
    if sides is None or len(sides) != 2 or min(sides) < 1 or max(sides) > MAX_SIDE:
        raise UserError(
            f"image_size must be 'HxW' with positive sides of at most {MAX_SIDE:,} pixels, e.g. "
            f"'64x64' (--set data.image_size=64x64), got {_short(value)}."
        )
    return sides[0], sides[1]


# ---------------------------------------------------------------------------------------- decode


@dataclass
class _Decoded:
    """One decoded image (H×W×C) or the reason it could not be decoded."""

    array: np.ndarray | None
    depth: str = ""  # "u8", "u16" (16-bit integer) or "float"
    error: str | None = None


def _center_crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Cut the central h×w window; sides smaller than that are padded with zeros on both ends."""
    out = np.zeros((h, w, a.shape[2]), dtype=a.dtype)
    ch, cw = min(h, a.shape[0]), min(w, a.shape[1])
    sy, sx = (a.shape[0] - ch) // 2, (a.shape[1] - cw) // 2
    dy, dx = (h - ch) // 2, (w - cw) // 2
    out[dy : dy + ch, dx : dx + cw] = a[sy : sy + ch, sx : sx + cw]
    return out


class _Budget:
    """Bytes of decoded images, shared by the decoding threads: an image is decoded only while
    all of them together (and its own full-size decode) fit in the memory available."""

    def __init__(self, available: int | None):
        self.available = available
        self.used = 0
        self.lock = threading.Lock()

    def take(self, full: int, kept: int) -> str | None:
        """Reserve ``kept`` bytes for an image whose decode takes ``full``; the reason if not."""
        if self.available is None:
            return None
        with self.lock:
            if full > self.available or self.used + kept > self.available:
                return (
                    f"decoding it takes {size_text(full)}"
                    + (f" and the images so far {size_text(self.used)}" if self.used else "")
                    + f", more than the {size_text(self.available)} of memory available "
                    "(nothing more was decoded): use smaller images or set "
                    "data.image_size=HxW to shrink them"
                )
            self.used += kept
        return None


def _decode(
    path: Path, size: tuple[int, int] | None, fit: str, budget: _Budget | None = None
) -> _Decoded:
    try:
        with Image.open(path) as im:
            # the header is read, the pixels not yet: refuse an image too large to decode
            w, h = im.size
            bands = 4 if im.mode in ("P", "PA") else len(im.getbands())  # P: up to RGBA
            per = bands * (1 if im.mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA") else 4)
            full = w * h * per
            kept = (size[0] * size[1] if size else w * h) * per
            if budget is not None and (why := budget.take(full, kept)):
                return _Decoded(None, error=f"it declares {w}×{h} pixels: {why}")
            im.load()
            mode = im.mode
            if mode in ("L", "LA", "RGB", "RGBA"):
                depth = "u8"
            elif mode == "1":
                im, depth = im.convert("L"), "u8"
            elif mode in ("P", "PA"):
                alpha = mode == "PA" or "transparency" in im.info
                im, depth = im.convert("RGBA" if alpha else "RGB"), "u8"
            elif mode.startswith(("I", "F")):
                depth = "u16" if mode.startswith("I;16") else "float"
            elif mode in ("La", "RGBa"):
                im, depth = im.convert("LA" if mode == "La" else "RGBA"), "u8"
            else:  # CMYK, YCbCr, LAB, HSV, RGBX: all carry colour
                im, depth = im.convert("RGB"), "u8"
            if depth != "u8":
                # Pillow resamples single-channel float images ("F") in full precision.
                im = Image.fromarray(np.asarray(im).astype(np.float32))
            if size is not None and fit == "resize" and (im.height, im.width) != size:
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im)
    except Image.DecompressionBombError as e:
        return _Decoded(None, error=f"a decompression bomb or a damaged header: {e}")
    except OSError as e:
        if e.errno is not None:  # the OS refused the file (Pillow's own errors have none)
            return _Decoded(None, error=os_reason(e, path))
        return _Decoded(None, error=f"{type(e).__name__}: {e}")
    except Exception as e:  # Pillow raises many exception types for broken files
        return _Decoded(None, error=f"{type(e).__name__}: {e}")
    if a.ndim == 2:
        a = a[:, :, None]
    if size is not None and fit == "center_crop":
        a = _center_crop(a, *size)
    return _Decoded(a, depth)


def _to_channels(a: np.ndarray, c: int, alpha: float) -> np.ndarray:
    """Convert gray (1), gray+alpha (2), RGB (3) or RGBA (4) pixels to ``c`` channels."""
    have = a.shape[2]
    if have == c:
        return a
    gray = have <= 2
    opacity = a[:, :, -1:] if have in (2, 4) else np.full((*a.shape[:2], 1), alpha, a.dtype)
    if c == 2:
        return np.concatenate([a[:, :, :1], opacity], axis=2)
    colour = np.repeat(a[:, :, :1], 3, axis=2) if gray else a[:, :, :3]
    return colour if c == 3 else np.concatenate([colour, opacity], axis=2)


def load_images(
    paths: Sequence[Path],
    *,
    image_size: tuple[int, int] | None = None,
    fit: str = "resize",
    workers: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Decode image files into one (N, C, H, W) array, in a thread pool.

    Gray images give 1 channel, RGB 3, RGBA 4; when the files disagree all are converted to the
    largest count.  8-bit images stay uint8; 16-bit and float images give float32 (mixed with
    8-bit ones, those are scaled by 257 to the 16-bit range so white stays white).

    Args:
        paths: The image files, in the order of the result.
        image_size: ``(H, W)`` to bring every image to, or None to require one common size.
        fit: ``"resize"`` (bilinear) or ``"center_crop"`` (pads with zeros where smaller).
        workers: Threads (default: 4 per CPU core, at most 32).

    Returns:
        The images and notes on conversions made.

    Raises:
        UserError: If files cannot be decoded, or sizes differ and no ``image_size`` was given.
    """
    if fit not in FITS:
        raise UserError(f"fit must be one of {', '.join(FITS)}, got {fit!r}.")
    if not paths:
        raise UserError("no image files to read.")
    workers = workers or _workers()
    # Chunks of files per task: one future per small file would cost about as much as decoding.
    step = max(1, min(64, -(-len(paths) // (4 * workers))))
    chunks = [paths[i : i + step] for i in range(0, len(paths), step)]
    budget = _Budget(available_memory())
    if image_size is not None and budget.available is not None:
        # every image becomes image_size: at least one byte per pixel
        total = len(paths) * image_size[0] * image_size[1]
        if total > budget.available:
            raise UserError(
                f"image_size {image_size[0]}x{image_size[1]} for {len(paths):,} images would "
                f"take at least {size_text(total)}, more than the {size_text(budget.available)} "
                "of memory available (nothing was decoded). Choose a smaller data.image_size."
            )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda chunk: [_decode(p, image_size, fit, budget) for p in chunk], chunks)
        decoded = [d for part in done for d in part]

    bad = [(str(p), d.error) for p, d in zip(paths, decoded, strict=True) if d.error is not None]
    if bad:
        first, why = bad[0]
        more = f" ({len(bad)} files failed, also: {shown([b[0] for b in bad[1:]])})"
        raise UserError(
            f"could not decode image {first} ({why}){more if len(bad) > 1 else ''}. Pillow must "
            "be able to read every file (PNG, JPEG, TIFF, BMP, ...): replace or remove the "
            "broken file(s)."
        )
    arrays = [d.array for d in decoded]
    notes: list[str] = []

    sizes = Counter(a.shape[:2] for a in arrays)
    if len(sizes) > 1:
        example = {}
        for p, a in zip(paths, arrays, strict=True):
            example.setdefault(a.shape[:2], p.name)
        found = [
            f"{h}x{w} ({n} images, e.g. {example[(h, w)]})" for (h, w), n in sizes.most_common()
        ]
        (h0, w0), _ = sizes.most_common(1)[0]
        raise UserError(
            f"the images have {len(sizes)} different sizes (HxW): {shown(found, 8)}. Bring them "
            f"to one size with --set data.image_size=HxW (e.g. {h0}x{w0}) and --set "
            "data.fit=resize (bilinear scaling) or --set data.fit=center_crop (cut or zero-pad "
            "around the centre); in Python: load_dataset(..., image_size='HxW', fit=...)."
        )

    depths = {d.depth for d in decoded}
    dtype = np.uint8 if depths == {"u8"} else np.float32
    scale_u8 = depths >= {"u8", "u16"}
    if scale_u8:
        notes.append(
            "images mix 8-bit and 16-bit files: all read as float32, 8-bit values scaled by 257 "
            "to the 16-bit range"
        )
    elif dtype == np.float32 and "u8" in depths:
        notes.append("images mix 8-bit and float files: all read as float32 in their raw values")
    elif dtype == np.float32:
        notes.append("images are 16-bit or float: read as float32 in their raw values")
    alpha = 255.0 if dtype == np.uint8 or not depths & {"u16"} else 65535.0

    channels = Counter(a.shape[2] for a in arrays)
    c = max(channels)
    if len(channels) > 1:
        what = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}
        mix = ", ".join(f"{n} {what[k]}" for k, n in sorted(channels.items()))
        notes.append(f"images have mixed channel counts ({mix}): all converted to {c} channels")

    h, w = arrays[0].shape[:2]
    out = np.empty((len(arrays), c, h, w), dtype=dtype)
    for i, d in enumerate(decoded):
        a = d.array
        if a.dtype != dtype:
            a = a.astype(dtype)
            if scale_u8 and d.depth == "u8":
                a *= 257.0
        out[i] = _to_channels(a, c, alpha).transpose(2, 0, 1)
        d.array = arrays[i] = None  # free each image once copied: peak memory stays ~1x the set
    return out, notes


def size_note(image_size: tuple[int, int] | None, fit: str) -> list[str]:
    if image_size is None:
        return []
    how = "resized (bilinear)" if fit == "resize" else "center-cropped (zero-padded if smaller)"
    return [f"images {how} to {image_size[0]}x{image_size[1]}"]
