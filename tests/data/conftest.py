"""Shared fixtures: tiny decathlon and folder trees on disk, small in-memory domains, and the built-in benchmark
built once per session into a temporary cache."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from datahelpers import COLOURS, SIZES, make_domain, write_image

from mpnas.data import AugmentSpec, Domain, DomainSet, Split, load_domains


def _decathlon_split(root: Path, domain: str, split: str, counts: list[int], offset: int, rng: random.Random,
                     labelled: bool, first_id: int) -> None:
    images, annotations = [], []
    image_id = first_id
    for label, n in enumerate(counts):
        for k in range(n):
            ext = "jpg" if k % 2 else "png"
            file_name = f"data/{domain}/{split}/{image_id:06d}.{ext}"
            write_image(root / file_name, COLOURS[label], SIZES[(k + label) % len(SIZES)])
            images.append({"id": image_id, "file_name": file_name, "width": 0, "height": 0})
            annotations.append({"id": 900 + image_id, "image_id": image_id, "category_id": offset + label + 1})
            image_id += 7  # ids that are neither positions nor contiguous
    rng.shuffle(annotations)  # annotations in a different order than images
    # Categories listed out of id order: the mapping must sort by id.
    categories = [{"id": offset + c + 1, "name": f"{domain}-class{c}"} for c in range(len(counts))][::-1]
    data: dict = {"images": images, "categories": categories}
    if labelled:
        data["annotations"] = annotations
    suffix = split if labelled else "test_stripped"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"{domain}_{suffix}.json").write_text(json.dumps(data))


@pytest.fixture
def decathlon_root(tmp_path: Path) -> Path:
    """Two domains: 'alpha' (3 classes, flip allowed) and 'gtsrb' (2 classes, no flip), category ids offset by
    1e7 per domain; each has train, val and a stripped test split."""
    root = tmp_path / "decathlon-1.0"
    rng = random.Random(0)
    for d, (domain, classes) in enumerate([("alpha", 3), ("gtsrb", 2)]):
        offset = 10_000_000 * (d + 1)
        _decathlon_split(root, domain, "train", [4] * classes, offset, rng, True, 101)
        _decathlon_split(root, domain, "val", [2] * classes, offset, rng, True, 5001)
        _decathlon_split(root, domain, "test", [1] * classes, offset, rng, False, 9001)
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """'pets': 2 classes with train only (val carved) and an unlabelled test folder;
    'shapes': 3 classes with train and val folders, a README to ignore, and domain.json turning flips off."""
    root = tmp_path / "folders"
    for c, cls in enumerate(["cat", "dog"]):
        for k in range(10 + 4 * c):
            # A distinct shade per file, so which files went to the carved val split shows in the pixels.
            shade = tuple(min(255, v + 3 * k) for v in COLOURS[c])
            write_image(root / "pets" / "train" / cls / f"{k}.png", shade, SIZES[k % 4])
    for k in range(3):
        write_image(root / "pets" / "test" / f"t{k}.jpg", COLOURS[k % 2], SIZES[k])
    for c, cls in enumerate(["circle", "square", "triangle"]):
        for k in range(4):
            write_image(root / "shapes" / "train" / cls / f"{k}.png", COLOURS[c], SIZES[k])
        for k in range(2):
            write_image(root / "shapes" / "val" / cls / f"{k}.jpeg", COLOURS[c], SIZES[k + 1])
    (root / "shapes" / "train" / "circle" / "README.txt").write_text("not an image")
    (root / "shapes" / "domain.json").write_text(json.dumps({"flip": False, "crop": "pad"}))
    return root


@pytest.fixture
def small_set() -> DomainSet:
    return DomainSet("test", [make_domain("big", 200, 5), make_domain("small", 23, 3), make_domain("mid", 64, 4)])


@pytest.fixture(scope="session")
def builtin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("builtin-cache")


@pytest.fixture(scope="session")
def builtin_set(builtin_cache: Path) -> DomainSet:
    return load_domains("builtin", resolution=16, cache_dir=str(builtin_cache), progress=False)


@pytest.fixture
def asymmetric_domain() -> Domain:
    """Images bright on the left half and dark on the right: a horizontal flip is visible in every sample."""
    n, r = 40, 16
    images = torch.zeros(n, 3, r, r, dtype=torch.uint8)
    images[..., : r // 2] = 250
    labels = torch.arange(n) % 2
    return Domain("arrows", ["left", "right"], {"train": Split(images, labels), "val": Split(images[:4], labels[:4])},
                  r, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), AugmentSpec(flip=False, crop="resize"))
