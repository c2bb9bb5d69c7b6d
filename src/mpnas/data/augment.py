"""Batch augmentation and normalisation as whole-batch tensor ops (no per-image Python loop).

Random parameters are drawn on the CPU from the generator given, so a batch is the same on any device; the
pixel work runs wherever the images are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mpnas.data.domain import AugmentSpec, Domain

SCALE = (0.6, 1.0)  # area fraction of a random resized crop
RATIO = (3 / 4, 4 / 3)  # its aspect ratio range


def normalize(images: torch.Tensor, domain: Domain) -> torch.Tensor:
    """uint8 (or float on the 0..255 scale) N x 3 x R x R to float32 standardised with the domain's statistics."""
    mean = torch.tensor(domain.mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(domain.std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1) * 255.0
    return (images.to(torch.float32) - mean) / std


def pad_size(resolution: int) -> int:
    """4 pixels at 32 px, in proportion at other resolutions."""
    return max(1, round(resolution * 4 / 32))


def augment(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator, part: slice | None = None,
            total: int | None = None) -> torch.Tensor:
    """Random crop (and flip where `spec.flip`) of a uint8 N x 3 x R x R batch.

    "pad" crops stay uint8 (an exact gather); "resize" crops come back as float32 on the 0..255 scale.
    With `part`, `images` are that slice of a batch of `total` images (one process's shard): the random
    parameters are drawn for the whole batch and sliced, so each image is augmented as it would be in one process.
    """
    n = images.shape[0] if total is None else total
    part = part or slice(0, n)
    flips = torch.rand(n, generator=generator) < 0.5
    if not spec.flip:
        flips.zero_()
    if spec.crop == "pad":
        return _pad_crop(images, flips, generator, part)
    return _resized_crop(images, flips, generator, part)


def _pad_crop(images: torch.Tensor, flips: torch.Tensor, generator: torch.Generator, part: slice) -> torch.Tensor:
    _, _, r, _ = images.shape
    p = pad_size(r)
    offsets = torch.randint(0, 2 * p + 1, (flips.shape[0], 2), generator=generator)[part].to(images.device)
    flips = flips[part].to(images.device)
    n = images.shape[0]
    padded = F.pad(images, (p, p, p, p))
    span = torch.arange(r, device=images.device)
    rows = offsets[:, :1] + span  # N x R
    cols = offsets[:, 1:] + span
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    # One gather over the flattened padded pixels (much faster than 4-way advanced indexing).
    flat = (rows[:, :, None] * (r + 2 * p) + cols[:, None, :]).view(n, 1, r * r).expand(n, 3, r * r)
    return padded.view(n, 3, -1).gather(2, flat).view(n, 3, r, r)


def _resized_crop(images: torch.Tensor, flips: torch.Tensor, generator: torch.Generator, part: slice) -> torch.Tensor:
    n, r = flips.shape[0], images.shape[2]
    area = torch.empty(n).uniform_(*SCALE, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=generator)
    ratio = log_ratio.exp()
    # Width and height of the crop as fractions of the side (the grid spans [-1, 1], so they are also the
    # affine scale factors); clamped so the crop stays inside the image.
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flips, -w, w)
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    theta = theta[part]
    grid = F.affine_grid(theta.to(images.device), [theta.shape[0], 3, r, r], align_corners=False)
    return F.grid_sample(images.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False)
