"""The built-in offline benchmark: its domains, sizes and properties, determinism and the cache."""

from __future__ import annotations

import hashlib
import math
import time

import pytest
import torch

from mpnas.data import builtin, load_domains
from mpnas.data.augment import normalize
from mpnas.errors import MpnasError

EXPECTED = {  # name: (classes, train, val, test) at seed 0
    "digits": (10, 1259, 269, 269),
    "mnist": (10, 3500, 750, 750),
    "glyphs": (47, 3290, 3995, 3995),
    "textures": (16, 1120, 3840, 3840),
    "faces": (2, 140, 30, 30),
    "signs": (17, 1051, 3959, 3959),
}
HELD_OUT_LARGE = ("glyphs", "textures", "signs")  # rendered or cut here, so their val and test can be large
NO_FLIP = {"digits", "mnist", "glyphs", "signs"}


def test_domains_classes_and_split_sizes(builtin_set):
    assert builtin_set.names() == list(EXPECTED)
    for d in builtin_set:
        sizes = (d.num_classes, len(d.splits["train"]), len(d.splits["val"]), len(d.splits["test"]))
        assert sizes == EXPECTED[d.name], d.name
        assert d.eval_split() == "test"
        assert d.augment.flip == (d.name not in NO_FLIP)
        for split in d.splits.values():
            assert split.images.shape[1:] == (3, 16, 16) and split.images.dtype == torch.uint8
        # Every class is present in every split (stratified).
        for split in d.splits.values():
            assert split.labels.unique().numel() == d.num_classes, d.name


def test_benchmark_shape(builtin_set):
    totals = {d.name: sum(len(s) for s in d.splits.values()) for d in builtin_set}
    assert len(builtin_set) >= 6
    assert max(totals.values()) >= 5 * min(totals.values())
    classes = [d.num_classes for d in builtin_set]
    assert min(classes) == 2 and max(classes) >= 40


def test_stats_are_those_of_the_train_split(builtin_set):
    for name in ("mnist", "textures"):
        d = builtin_set[name]
        x = normalize(d.splits["train"].images, d)
        assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-3
        assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_related_digit_domains_share_class_names(builtin_set):
    digits = builtin_set["digits"].class_names
    assert digits == builtin_set["mnist"].class_names
    assert set(digits) <= set(builtin_set["glyphs"].class_names)


def test_texture_held_out_crops_are_not_copies_of_train(builtin_set):
    d = builtin_set["textures"]
    train = d.splits["train"].images.flatten(1).float()
    for split in ("val", "test"):
        held = d.splits[split].images.flatten(1).float()
        nearest = torch.cdist(held, train).min(dim=1).values
        assert nearest.min() > 0


def test_held_out_splits_measure_a_point(builtin_set):
    """Binomial standard error of top-1, sqrt(p(1-p)/n), at most 0.7 points at any accuracy of 75% or more."""
    for name in HELD_OUT_LARGE:
        for split in ("val", "test"):
            n = len(builtin_set[name].splits[split])
            assert 100 * math.sqrt(0.75 * 0.25 / n) <= 0.7, (name, split, n)


@pytest.mark.parametrize("name, knob", [("glyphs", "EXTRA_GLYPHS_PER_CLASS"), ("signs", "EXTRA_SIGNS_FACTOR"),
                                        ("textures", "EXTRA_CROPS_PER_PHOTO")])
def test_training_split_does_not_depend_on_the_held_out_extras(builtin_set, monkeypatch, name, knob):
    """The extra held-out images come from their own random stream: with far fewer of them, training is the same
    image for image, and the held-out splits start with the same pool images."""
    monkeypatch.setattr(builtin, knob, 0.1 if knob == "EXTRA_SIGNS_FACTOR" else 1)
    small = builtin.DOMAINS[name].build(0, 16)
    full = builtin_set[name]
    assert torch.equal(torch.from_numpy(small.images["train"]), full.splits["train"].images)
    assert torch.equal(torch.from_numpy(small.labels["train"]), full.splits["train"].labels)
    pool = {"glyphs": 705, "textures": 240, "signs": 222}[name]  # version 4's held-out splits, from the pool
    for split in ("val", "test"):
        assert pool < len(small.images[split]) < len(full.splits[split])
        assert torch.equal(torch.from_numpy(small.images[split][:pool]), full.splits[split].images[:pool])


@pytest.mark.parametrize("name", HELD_OUT_LARGE)
def test_held_out_images_are_not_training_images(builtin_set, name):
    d = builtin_set[name]
    train = {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in d.splits["train"].images}
    for split in ("val", "test"):
        held = {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in d.splits[split].images}
        assert not train & held, (name, split)


def test_second_load_is_a_fast_cache_hit(builtin_set, builtin_cache):
    entries = sorted(p.name for p in builtin_cache.iterdir())
    start = time.perf_counter()
    again = load_domains("builtin", resolution=16, cache_dir=str(builtin_cache), progress=False)
    assert time.perf_counter() - start < 2.0
    assert sorted(p.name for p in builtin_cache.iterdir()) == entries
    for d in builtin_set:
        assert torch.equal(d.splits["val"].images, again[d.name].splits["val"].images)
        assert d.mean == again[d.name].mean


def test_seed_fixes_the_splits(builtin_set, builtin_cache, tmp_path):
    same = load_domains("builtin", ["faces"], resolution=16, cache_dir=str(tmp_path), progress=False)["faces"]
    other = load_domains("builtin", ["faces"], resolution=16, seed=1, cache_dir=str(builtin_cache),
                         progress=False)["faces"]
    faces = builtin_set["faces"]
    assert torch.equal(same.splits["train"].images, faces.splits["train"].images)
    assert len(other.splits["train"]) == len(faces.splits["train"])
    assert not torch.equal(other.splits["train"].images, faces.splits["train"].images)


def test_other_resolutions(tmp_path):
    d = load_domains("builtin", ["faces", "digits"], resolution=72, cache_dir=str(tmp_path), progress=False)
    assert d.names() == ["faces", "digits"]
    assert d["faces"].splits["train"].images.shape == (140, 3, 72, 72)


def test_unreadable_cache_entry_is_rebuilt(tmp_path, capsys):
    first = load_domains("builtin", ["faces"], resolution=16, cache_dir=str(tmp_path), progress=False)["faces"]
    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith("builtin-faces")]
    (entry / "val.images.npy").unlink()
    again = load_domains("builtin", ["faces"], resolution=16, cache_dir=str(tmp_path), progress=False)["faces"]
    assert "unreadable" in capsys.readouterr().err
    assert torch.equal(first.splits["val"].images, again.splits["val"].images)


@pytest.mark.parametrize("resolution", [4, 2048])
def test_resolution_bounds(resolution, tmp_path):
    with pytest.raises(MpnasError, match="resolution"):
        load_domains("builtin", resolution=resolution, cache_dir=str(tmp_path))
