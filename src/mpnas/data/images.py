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


def square_pil(im: Image.Image, resolution: int) -> np.ndarray:
    """A decoded picture to a 3 x R x R uint8 array: upright (EXIF), RGB, shorter side resized to R (bilinear,
    antialiased), then centre-cropped. The one preprocessing rule of training, evaluation and `predict`."""
    im = ImageOps.exif_transpose(im).convert("RGB")
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
