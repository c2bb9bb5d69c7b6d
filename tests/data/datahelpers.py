"""Helpers the data tests share (a plain module: importing from conftest is ambiguous across test folders)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from mpnas.data import AugmentSpec, Domain, Split

# Each class is a solid colour, so a decoded image tells which label it must carry.
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 220, 30)]
SIZES = [(40, 24), (24, 40), (33, 33), (50, 20)]  # different aspect ratios


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def colour_class(image: torch.Tensor) -> int:
    """The class whose colour is nearest to the image's mean colour."""
    mean = image.float().mean(dim=(1, 2))
    return int(torch.stack([(mean - torch.tensor(c, dtype=torch.float32)).norm() for c in COLOURS]).argmin())


def make_domain(name: str, n: int, classes: int, resolution: int = 8, *, flip: bool = True, crop: str = "pad",
                seed: int = 0) -> Domain:
    """An in-memory domain whose image i has every pixel equal to i % 256 (so a batch reveals its indices)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    labels[:classes] = torch.arange(classes)
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, resolution, resolution).contiguous()
    val = Split(images[: max(1, n // 5)].clone(), labels[: max(1, n // 5)].clone())
    return Domain(name, [f"c{i}" for i in range(classes)], {"train": Split(images, labels), "val": val},
                  resolution, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), AugmentSpec(flip=flip, crop=crop))
