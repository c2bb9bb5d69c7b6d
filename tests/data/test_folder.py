"""The folder layout: class folders, a val split carved by seed, unlabelled test, domain.json, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datahelpers import colour_class, write_image

from mpnas.data import load_domains
from mpnas.errors import MpnasError


def load(root: Path, tmp_path: Path, **kw):
    return load_domains(f"folder:{root}", resolution=12, cache_dir=str(tmp_path / "cache"), progress=False, **kw)


def test_classes_and_labels(folder_root, tmp_path):
    ds = load(folder_root, tmp_path)
    assert ds.names() == ["pets", "shapes"]
    shapes = ds["shapes"]
    assert shapes.class_names == ["circle", "square", "triangle"]
    assert {s: len(v) for s, v in shapes.splits.items()} == {"train": 12, "val": 6}  # README ignored
    for split in shapes.splits.values():
        assert [colour_class(img) for img in split.images] == split.labels.tolist()
    assert not shapes.augment.flip and shapes.augment.crop == "pad"
    assert ds["pets"].augment.flip


def test_val_carved_from_train_by_seed(folder_root, tmp_path):
    pets = load(folder_root, tmp_path)["pets"]
    assert pets.class_names == ["cat", "dog"]
    # 15% of 10 cats and 14 dogs, rounded: 2 + 2.
    assert len(pets.splits["train"]) == 20 and len(pets.splits["val"]) == 4
    assert pets.splits["val"].labels.bincount().tolist() == [2, 2]
    assert "carved" in pets.description
    again = load(folder_root, tmp_path)["pets"]
    assert torch.equal(pets.splits["val"].images, again.splits["val"].images)
    others = [load(folder_root, tmp_path / f"s{s}", seed=s)["pets"] for s in (1, 2, 3)]
    assert any(not torch.equal(pets.splits["val"].images, o.splits["val"].images) for o in others)


def test_flat_test_folder_is_unlabelled(folder_root, tmp_path):
    pets = load(folder_root, tmp_path)["pets"]
    assert pets.splits["test"].labels is None and len(pets.splits["test"]) == 3
    assert pets.eval_split() == "val"


def test_labelled_test(folder_root, tmp_path):
    write_image(folder_root / "shapes" / "test" / "square" / "a.png", (30, 200, 40), (20, 20))
    shapes = load(folder_root, tmp_path)["shapes"]
    assert shapes.splits["test"].labels.tolist() == [1]
    assert shapes.eval_split() == "test"


def test_empty_class_folder(folder_root, tmp_path):
    (folder_root / "shapes" / "train" / "hexagon").mkdir()
    with pytest.raises(MpnasError, match=r"class folder .*hexagon has no images"):
        load(folder_root, tmp_path)


def test_val_class_not_in_train(folder_root, tmp_path):
    write_image(folder_root / "shapes" / "val" / "star" / "a.png", (1, 2, 3), (9, 9))
    with pytest.raises(MpnasError, match=r"star is not a class of train/"):
        load(folder_root, tmp_path)


def test_loose_images_next_to_class_folders(folder_root, tmp_path):
    write_image(folder_root / "shapes" / "val" / "stray.png", (1, 2, 3), (9, 9))
    with pytest.raises(MpnasError, match=r"val mixes class folders with loose images \(e.g. stray.png\)"):
        load(folder_root, tmp_path)


def test_domain_without_train(folder_root, tmp_path):
    (folder_root / "empty").mkdir()
    with pytest.raises(MpnasError, match=r"folder domain 'empty': no train/ folder"):
        load(folder_root, tmp_path)


@pytest.mark.parametrize("options, message", [
    ({"flip": "no"}, r"'flip' must be a bool"),
    ({"crop": "zoom"}, r"'crop' must be one of pad, resize"),
    ({"mirror": True}, r"unknown field 'mirror'"),
    ([1], r"expected a JSON object"),
])
def test_bad_domain_json(folder_root, tmp_path, options, message):
    (folder_root / "shapes" / "domain.json").write_text(json.dumps(options))
    with pytest.raises(MpnasError, match=r"domain\.json: " + message):
        load(folder_root, tmp_path)


def test_corrupt_image_skipped(folder_root, tmp_path, capsys):
    (folder_root / "shapes" / "train" / "square" / "0.png").write_text("not a png")
    with pytest.raises(MpnasError, match=r"square/0\.png: corrupt image"):
        load(folder_root, tmp_path)
    shapes = load(folder_root, tmp_path, skip_bad_images=True)["shapes"]
    assert shapes.splits["train"].labels.bincount().tolist() == [4, 3, 4]
    assert "domain 'shapes': skipped 1 corrupt image(s) (train 1)" in capsys.readouterr().err


def test_a_corrupt_file_carved_into_val_is_reported_in_its_train_folder(folder_root, tmp_path):
    """pets has no val/ folder: a corrupt file of train/ that the seed carved into val is named with the split
    whose folder holds it, not as "split val" (there is no such folder to look in)."""
    from mpnas.data.folder import FolderSource

    _, items = FolderSource(folder_root).items("pets", 0)
    carved = items["val"][0].path
    assert carved.parent.parent.name == "train"
    carved.write_text("not a png")
    with pytest.raises(MpnasError, match=r"domain 'pets', split train \(carved into val\): file .*: corrupt image"):
        load(folder_root, tmp_path)


def test_a_class_too_small_for_every_split_is_named_in_a_warning(tmp_path, capsys):
    """A class of one image is carved into train only: it trains a classifier output that no validation or test
    image ever measures; the load says so, naming the class and its counts."""
    root = tmp_path / "data"
    for cls, n in (("many", 8), ("lonely", 1)):
        for k in range(n):
            write_image(root / "d" / "train" / cls / f"{k}.png", (40 * k % 255, 80, 20), (12, 12))
    ds = load(root, tmp_path)
    assert ds["d"].splits["val"].labels.bincount(minlength=2).tolist()[ds["d"].class_names.index("lonely")] == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: domain 'd'" in err and "'lonely' (train 1, val 0)" in err
    assert "'many'" not in err
