"""Turning image files and raw arrays into the one layout mpnas keeps: uint8, 3 x R x R."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})


class BadImage(Exception):
    """A file that exists but does not decode; callers turn it into an MpnasError or a skip."""


class UnsupportedImage(BadImage):
    """A picture that decodes but has no faithful 8-bit RGB form (e.g. float pixels outside 0..1)."""


_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA = frozenset({"LA", "PA", "RGBA", "RGBa"})
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited over


def _grey8(values: np.ndarray, full_scale: float) -> Image.Image:
    """Grey values on a 0..full_scale range to 8-bit, rounded: 0 stays 0 and full_scale becomes 255."""
    scaled = np.rint(values.astype(np.float64) * (255.0 / full_scale))
    return Image.fromarray(scaled.clip(0, 255).astype(np.uint8), "L")


def to_rgb8(im: Image.Image) -> Image.Image:
    """Any picture Pillow opens as 8-bit RGB over its whole range, or `UnsupportedImage`.

    Pillow's own `convert("RGB")` clips 16-bit and 32-bit grey to 255 (a 0..65535 gradient comes out 99% white)
    and drops transparency, leaving whatever colour the encoder stored under it. Here 16-bit grey ("I;16*", and
    "I", how 16-bit files open in some Pillow versions) is scaled from 0..65535, float grey ("F") from 0..1, and
    anything with transparency (alpha modes, palette or grey with a transparent colour) is composited over white,
    as a viewer shows it. Values that have no such range (negative, NaN, above it) are refused rather than guessed.
    """
    mode = im.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UnsupportedImage(f"32-bit integer pixels outside 0..65535 (mode {mode})")
        im = _grey8(values, 65535.0)
    elif mode == "F":
        values = np.asarray(im)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise UnsupportedImage("floating-point pixels outside 0..1 (mode F)")
        im = _grey8(values, 1.0)
    if im.mode in _ALPHA or "transparency" in im.info:
        try:
            rgba = im.convert("RGBA")
        except ValueError as exc:
            raise UnsupportedImage(f"mode {mode}: {exc}") from None
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise UnsupportedImage(f"mode {mode}: {exc}") from None


def square_pil(im: Image.Image, resolution: int) -> np.ndarray:
    """A decoded picture to a 3 x R x R uint8 array: upright (EXIF), 8-bit RGB (`to_rgb8`), shorter side resized
    to R (bilinear, antialiased), then centre-cropped. The one preprocessing rule of training, evaluation and
    `predict`."""
    im = to_rgb8(ImageOps.exif_transpose(im))
    w, h = im.size
    if w < 1 or h < 1:
        raise BadImage("empty image")
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    im = im.crop((left, top, left + resolution, top + resolution))
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))


def decode_square(path: Path, resolution: int) -> np.ndarray:
    """Decode `path` to a 3 x R x R uint8 array with `square_pil`'s rule.

    Training augmentation later works on this square only, not on the original picture: a documented shortcut
    that lets a whole domain live in one memory-mapped array.
    """
    try:
        with Image.open(path) as im:
            # JPEG can decode at a reduced scale directly, which is most of the cost for large photos.
            im.draft("RGB", (resolution, resolution))
            return square_pil(im, resolution)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImage(str(exc) or type(exc).__name__) from None


def resize_batch(images: np.ndarray, resolution: int) -> np.ndarray:
    """Resize a stack of grey (N x H x W) or colour (N x H x W x 3) arrays in 0..255 to uint8 N x 3 x R x R.

    Grey images are replicated to three channels. Downscaling is antialiased, upscaling bicubic.
    """
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) != (resolution, resolution):
        up = resolution > max(x.shape[-2:])
        x = F.interpolate(
            x.contiguous(), size=(resolution, resolution), mode="bicubic" if up else "bilinear",
            antialias=not up, align_corners=False,
        )
    return x.clamp_(0, 255).round_().to(torch.uint8).contiguous().numpy()
