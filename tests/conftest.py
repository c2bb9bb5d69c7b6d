"""Fixtures shared by the pipeline and baseline tests: a tiny folder-format data set and a tiny run config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpnas.config import resolve_config


def _draw(kind: str, label: int, rng: np.random.Generator) -> np.ndarray:
    img = rng.integers(0, 60, size=(12, 12, 3), dtype=np.uint8)
    if kind == "colours":  # class = which channel is bright
        img[..., label] += 150
    else:  # class = bar orientation (horizontal, vertical, diagonal)
        mask = np.zeros((12, 12), bool)
        if label == 0:
            mask[5:7, :] = True
        elif label == 1:
            mask[:, 5:7] = True
        else:
            mask[np.arange(12), np.arange(12)] = True
        img[mask] = 230
    return img


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/<domain>/<split>/<class>/<image>: 'colours' (3 classes, no val: carved from train) and 'bars' (3)."""
    return write_tiny_data(tmp_path_factory.mktemp("tiny-data"))


def write_tiny_data(root: Path) -> Path:
    """The tiny data set under `root` (also written by `tests/golden/tiny_run.py`)."""
    rng = np.random.default_rng(0)
    for domain, splits in (("colours", {"train": 14, "test": 4}), ("bars", {"train": 10, "val": 4, "test": 4})):
        for split, n in splits.items():
            for label in range(3):
                for i in range(n):
                    path = root / domain / split / f"class{label}" / f"{i}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(_draw(domain, label, rng)).save(path)
    return root


@pytest.fixture(scope="session")
def tiny_cfg(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The quick budget cut to a few steps of a shallow space at 16 px."""
    return resolve_config(
        "quick",
        overrides=[
            "search.steps=6", "search.batch_size=8", "search.val_batch_size=8", "search.log_every=2",
            "train.steps=8", "train.batch_size=8", "train.eval_every=4", "train.log_every=2",
            "space.layers_per_block=2", "baselines.mrp_trials=2", "threads=1",
        ],
        **{"data.spec": f"folder:{tiny_root}", "data.resolution": 16,
           "data.cache_dir": str(tmp_path_factory.mktemp("tiny-cache"))},
    )


@pytest.fixture(scope="session")
def tiny_decathlon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Visual Decathlon devkit tree with two real decathlon domain names and stripped (unlabelled) tests."""
    import json

    root = tmp_path_factory.mktemp("decathlon-1.0")
    rng = np.random.default_rng(1)
    image_id = 1
    for d, (domain, kind) in enumerate((("svhn", "colours"), ("gtsrb", "bars"))):
        offset = 10_000_000 * (d + 1)
        for split, n in (("train", 10), ("val", 4), ("test", 3)):
            images, annotations = [], []
            for label in range(3):
                for _ in range(n):
                    file_name = f"data/{domain}/{split}/{image_id:06d}.png"
                    (root / file_name).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(_draw(kind, label, rng)).save(root / file_name)
                    images.append({"id": image_id, "file_name": file_name, "width": 12, "height": 12})
                    annotations.append({"id": image_id, "image_id": image_id, "category_id": offset + label + 1})
                    image_id += 1
            data = {"images": images, "categories": [{"id": offset + c + 1, "name": f"c{c}"} for c in range(3)]}
            if split != "test":
                data["annotations"] = annotations[::-1]
            name = f"{domain}_{split}.json" if split != "test" else f"{domain}_test_stripped.json"
            (root / "annotations").mkdir(exist_ok=True)
            (root / "annotations" / name).write_text(json.dumps(data))
    return root


@pytest.fixture(scope="session")
def trained_run(tiny_cfg, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mpnas run` on the tiny fixture through the CLI, once per session (pipeline, deploy and predict tests)."""
    from mpnas.cli import main
    from mpnas.config import dump_yaml

    cfg_file = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg_file.write_text(dump_yaml(tiny_cfg))
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["run", "--budget", "quick", "--config", str(cfg_file), "--out", str(out), "--quiet"]) == 0
    return out
