"""The Visual Decathlon layout: label mapping, split sizes, the stripped test split, bad input, the cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from datahelpers import colour_class

from mpnas.data import load_domains
from mpnas.errors import MpnasError


def load(root: Path, tmp_path: Path, **kw):
    return load_domains(f"decathlon:{root}", resolution=16, cache_dir=str(tmp_path / "cache"), progress=False, **kw)


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_labels_follow_image_ids_and_sorted_category_ids(decathlon_root, tmp_path):
    ds = load(decathlon_root, tmp_path)
    assert ds.names() == ["alpha", "gtsrb"]
    alpha = ds["alpha"]
    assert alpha.class_names == ["alpha-class0", "alpha-class1", "alpha-class2"]
    assert {s: len(v) for s, v in alpha.splits.items()} == {"train": 12, "val": 6, "test": 3}
    for split in ("train", "val"):
        data = alpha.splits[split]
        assert [colour_class(img) for img in data.images] == data.labels.tolist()
    assert ds["gtsrb"].num_classes == 2 and len(ds["gtsrb"].splits["train"]) == 8


def test_stripped_test_split_is_unlabelled_with_ids(decathlon_root, tmp_path):
    alpha = load(decathlon_root, tmp_path)["alpha"]
    test = alpha.splits["test"]
    assert test.labels is None
    assert test.ids.tolist() == [9001, 9008, 9015]
    assert alpha.eval_split() == "val"
    assert test.images.shape == (3, 3, 16, 16) and test.images.dtype == torch.uint8


def test_flip_rules(decathlon_root, tmp_path):
    ds = load(decathlon_root, tmp_path)
    assert ds["alpha"].augment.flip and not ds["gtsrb"].augment.flip


def test_second_load_hits_the_cache(decathlon_root, tmp_path):
    first = load(decathlon_root, tmp_path)
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    start = time.perf_counter()
    again = load(decathlon_root, tmp_path)
    assert time.perf_counter() - start < 1.0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries
    assert torch.equal(first["alpha"].splits["train"].images, again["alpha"].splits["train"].images)
    # Touching an image changes the key: a new entry is built.
    img = next((decathlon_root / "data" / "alpha" / "train").iterdir())
    img.write_bytes(img.read_bytes())
    load(decathlon_root, tmp_path)
    assert len(list((tmp_path / "cache").iterdir())) == len(entries) + 1


def test_domain_selection(decathlon_root, tmp_path):
    assert load(decathlon_root, tmp_path, domains=["gtsrb"]).names() == ["gtsrb"]
    with pytest.raises(MpnasError, match=r"unknown domain 'beta'.*known: alpha, gtsrb"):
        load(decathlon_root, tmp_path, domains=["beta"])


def test_missing_root(tmp_path):
    with pytest.raises(MpnasError, match="nowhere"):
        load(tmp_path / "nowhere", tmp_path)


def test_missing_val_annotations(decathlon_root, tmp_path):
    (decathlon_root / "annotations" / "gtsrb_val.json").unlink()
    with pytest.raises(MpnasError, match=r"gtsrb.*gtsrb_val\.json"):
        load(decathlon_root, tmp_path)
    # The other domain alone still loads.
    assert load(decathlon_root, tmp_path, domains=["alpha"]).names() == ["alpha"]


def test_broken_json(decathlon_root, tmp_path):
    path = decathlon_root / "annotations" / "alpha_train.json"
    path.write_text(path.read_text()[:-10])
    with pytest.raises(MpnasError, match=r"alpha_train\.json: broken JSON"):
        load(decathlon_root, tmp_path)


def test_missing_image_names_id_and_file(decathlon_root, tmp_path):
    (decathlon_root / "data" / "alpha" / "val" / "005008.jpg").unlink()
    with pytest.raises(MpnasError, match=r"image id 5008, file data/alpha/val/005008\.jpg"):
        load(decathlon_root, tmp_path)


def test_corrupt_image_error_and_skip(decathlon_root, tmp_path, capsys):
    (decathlon_root / "data" / "alpha" / "train" / "000101.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (decathlon_root / "data" / "alpha" / "val" / "005001.png").write_bytes(b"")
    with pytest.raises(MpnasError, match=r"000101\.png: corrupt image"):
        load(decathlon_root, tmp_path)
    alpha = load(decathlon_root, tmp_path, skip_bad_images=True)["alpha"]
    assert len(alpha.splits["train"]) == 11 and len(alpha.splits["val"]) == 5
    assert [colour_class(img) for img in alpha.splits["train"].images] == alpha.splits["train"].labels.tolist()
    assert 101 not in alpha.splits["train"].labels.tolist()
    err = capsys.readouterr().err
    assert "domain 'alpha': skipped 2 corrupt image(s) (train 1, val 1)" in err
    # A cached load reports the same count.
    load(decathlon_root, tmp_path, skip_bad_images=True)
    assert "skipped 2 corrupt image(s)" in capsys.readouterr().err


def test_unknown_category(decathlon_root, tmp_path):
    edit(decathlon_root / "annotations" / "alpha_val.json",
         lambda d: d["annotations"][0].update(category_id=12345))
    with pytest.raises(MpnasError, match=r"alpha_val\.json.*category id 12345.*not among the categories"):
        load(decathlon_root, tmp_path)


def test_annotation_for_unknown_image(decathlon_root, tmp_path):
    edit(decathlon_root / "annotations" / "alpha_train.json", lambda d: d["annotations"][0].update(image_id=4))
    with pytest.raises(MpnasError, match=r"alpha_train\.json.*image id 4"):
        load(decathlon_root, tmp_path)


def test_missing_field(decathlon_root, tmp_path):
    edit(decathlon_root / "annotations" / "gtsrb_train.json", lambda d: d.pop("categories"))
    with pytest.raises(MpnasError, match=r"gtsrb_train\.json: field 'categories'"):
        load(decathlon_root, tmp_path)


def test_empty_split(decathlon_root, tmp_path):
    edit(decathlon_root / "annotations" / "alpha_val.json", lambda d: d.update(images=[], annotations=[]))
    with pytest.raises(MpnasError, match=r"alpha_val\.json: no images"):
        load(decathlon_root, tmp_path)


def test_unknown_spec_prefix(tmp_path):
    with pytest.raises(MpnasError, match=r"unknown source.*builtin \| decathlon:ROOT \| folder:ROOT"):
        load_domains(f"coco:{tmp_path}", cache_dir=str(tmp_path))
