"""The data model every stage shares: a domain is classes, labelled splits and the augmentations valid for it.

Images stay uint8 (N x 3 x R x R, possibly memory-mapped) until a batch is drawn; only the batch becomes float.
Every `Domain` checks itself on construction, so a malformed source fails here with the domain named rather
than deep inside training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mpnas.errors import MpnasError

SPLITS = ("train", "val", "test")
CROPS = ("pad", "resize")


@dataclass
class Split:
    """One split of a domain. `labels` is None for an unlabelled split (a benchmark's stripped test set)."""

    images: torch.Tensor  # uint8, N x 3 x R x R
    labels: torch.Tensor | None  # int64, N
    ids: torch.Tensor | None = None  # int64, N: the source's own image ids (decathlon), for submissions

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def labelled(self) -> bool:
        return self.labels is not None


@dataclass(frozen=True)
class AugmentSpec:
    """Which training augmentations keep a domain's labels true.

    `flip`: horizontal flip is label-preserving (False for digits, glyphs, arrows, signs, text).
    `crop`: "pad" pads by 4/32 of the side and crops back at random (small, CIFAR-style shifts);
    "resize" takes a random crop of 60-100% of the area and resizes it back (objects and textures).
    """

    flip: bool
    crop: str = "pad"

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise MpnasError(f"augment spec: flip must be true or false, got {self.flip!r}")
        if self.crop not in CROPS:
            raise MpnasError(f"augment spec: crop must be one of {', '.join(CROPS)}, got {self.crop!r}")


@dataclass
class Domain:
    name: str
    class_names: list[str]
    splits: dict[str, Split]
    resolution: int
    mean: tuple[float, float, float]  # per channel, 0..1 scale, on the train split
    std: tuple[float, float, float]
    augment: AugmentSpec
    description: str = ""

    def __post_init__(self) -> None:
        self._check()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def eval_split(self) -> str:
        """The split to report: the labelled test split when there is one, else val."""
        test = self.splits.get("test")
        return "test" if test is not None and test.labelled else "val"

    def _check(self) -> None:
        where = f"domain {self.name!r}"
        if not self.class_names:
            raise MpnasError(f"{where}: no classes")
        if len(set(self.class_names)) != len(self.class_names):
            raise MpnasError(f"{where}: duplicate class names")
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown:
            raise MpnasError(f"{where}: unknown split(s) {', '.join(unknown)} (allowed: {', '.join(SPLITS)})")
        for required in ("train", "val"):
            if required not in self.splits:
                raise MpnasError(f"{where}: no {required} split")
            if not self.splits[required].labelled:
                raise MpnasError(f"{where}: the {required} split has no labels")
        r = self.resolution
        for name, split in self.splits.items():
            imgs, labels = split.images, split.labels
            if imgs.dtype != torch.uint8 or imgs.dim() != 4 or tuple(imgs.shape[1:]) != (3, r, r):
                raise MpnasError(
                    f"{where}, split {name}: images must be uint8 N x 3 x {r} x {r}, got {imgs.dtype} {tuple(imgs.shape)}"
                )
            if len(split) == 0:
                raise MpnasError(f"{where}, split {name}: empty")
            if labels is not None:
                if labels.dtype != torch.int64 or tuple(labels.shape) != (len(split),):
                    raise MpnasError(f"{where}, split {name}: labels must be int64 of length {len(split)}")
                lo, hi = int(labels.min()), int(labels.max())
                if lo < 0 or hi >= self.num_classes:
                    bad = lo if lo < 0 else hi
                    raise MpnasError(
                        f"{where}, split {name}: label {bad} out of range 0..{self.num_classes - 1}"
                    )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise MpnasError(f"{where}: mean and std need 3 channels with std > 0")


@dataclass
class DomainSet:
    """The domains of one source, in a fixed order (the order models index them by)."""

    source: str
    domains: list[Domain]

    def __post_init__(self) -> None:
        names = [d.name for d in self.domains]
        if not names:
            raise MpnasError(f"data {self.source}: no domains")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise MpnasError(f"data {self.source}: duplicate domain name(s) {', '.join(dup)}")

    def names(self) -> list[str]:
        return [d.name for d in self.domains]

    def __getitem__(self, name: str) -> Domain:
        for d in self.domains:
            if d.name == name:
                return d
        raise MpnasError(f"unknown domain {name!r} in data {self.source} (known: {', '.join(self.names())})")

    def __len__(self) -> int:
        return len(self.domains)

    def __iter__(self) -> Iterator[Domain]:
        return iter(self.domains)
