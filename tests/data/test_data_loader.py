"""MultiDomainLoader and iterate_split: batch sizes, cycling, determinism, exact resume, no forbidden flips."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from datahelpers import make_domain

from mpnas.data import AugmentSpec, DomainSet, MultiDomainLoader, Split, class_batch_sizes, iterate_split
from mpnas.errors import MpnasError


def indices(x: torch.Tensor, domain) -> list[int]:
    """Recover which image each sample is (make_domain images hold their index in every pixel)."""
    mean = torch.tensor(domain.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(domain.std).view(1, 3, 1, 1) * 255
    raw = (x * std + mean).round()
    return raw[:, 0, raw.shape[2] // 2, raw.shape[3] // 2].long().tolist()


def flat(batches):
    return [(name, x.clone(), y.clone()) for batch in batches for name, (x, y) in batch.items()]


def test_per_domain_batch_sizes_and_labels(small_set):
    loader = MultiDomainLoader(small_set, {"big": 16, "small": 5, "mid": 8}, seed=3)
    batch = loader.next()
    assert list(batch) == ["big", "small", "mid"]
    for name, size in {"big": 16, "small": 5, "mid": 8}.items():
        x, y = batch[name]
        assert x.shape == (size, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
        # The labels belong to the images drawn (pad crops keep the centre pixel inside the image).
        domain = small_set[name]
        assert y.tolist() == domain.splits["train"].labels[indices(x, domain)].tolist()


def test_small_domain_cycles_through_fresh_permutations(small_set):
    loader = MultiDomainLoader(small_set, 5, seed=0, augment=False)
    seen = [i for _ in range(23) for i in indices(loader.next()["small"][0], small_set["small"])]
    epochs = [seen[k * 23 : (k + 1) * 23] for k in range(5)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(23))
    assert len({tuple(e) for e in epochs}) == 5
    assert loader.state_dict()["domains"]["small"] == {"epoch": 5, "position": 0, "size": 23}
    assert loader.state_dict()["domains"]["big"]["epoch"] == 0


def test_batch_larger_than_the_domain(small_set):
    loader = MultiDomainLoader(small_set, 50, augment=False)
    x, _ = loader.next()["small"]
    got = indices(x, small_set["small"])
    assert len(got) == 50 and set(got) == set(range(23))


def test_same_seed_same_batches_other_seed_other_batches(small_set):
    a = flat(MultiDomainLoader(small_set, 7, seed=11).next() for _ in range(4))
    b = flat(MultiDomainLoader(small_set, 7, seed=11).next() for _ in range(4))
    c = flat(MultiDomainLoader(small_set, 7, seed=12).next() for _ in range(4))
    assert all(torch.equal(p[1], q[1]) and torch.equal(p[2], q[2]) for p, q in zip(a, b))
    assert not all(torch.equal(p[1], q[1]) for p, q in zip(a, c))


def test_state_round_trip_mid_epoch(small_set):
    loader = MultiDomainLoader(small_set, {"big": 16, "small": 5, "mid": 8}, seed=5)
    for _ in range(7):
        loader.next()
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["step"] == 7 and state["seed"] == 5
    assert state["domains"]["small"] == {"epoch": 1, "position": 12, "size": 23}
    expected = flat(loader.next() for _ in range(6))
    resumed = MultiDomainLoader(small_set, {"big": 16, "small": 5, "mid": 8}, seed=99)
    resumed.load_state_dict(state)
    got = flat(resumed.next() for _ in range(6))
    assert all(torch.equal(p[1], q[1]) and torch.equal(p[2], q[2]) for p, q in zip(expected, got))


def test_state_for_other_data_is_refused(small_set):
    state = MultiDomainLoader(small_set, 4).state_dict()
    fewer = DomainSet("test", [small_set["big"], small_set["mid"]])
    with pytest.raises(MpnasError, match=r"no position for domain\(s\) extra"):
        MultiDomainLoader(DomainSet("t", [*fewer.domains, make_domain("extra", 30, 2)]), 4).load_state_dict(state)
    state["domains"]["big"]["size"] = 201
    with pytest.raises(MpnasError, match="'big' had 201 train images, now 200"):
        MultiDomainLoader(small_set, 4).load_state_dict(state)
    with pytest.raises(MpnasError, match="malformed"):
        MultiDomainLoader(small_set, 4).load_state_dict({"version": 1})


def test_batch_size_errors(small_set):
    with pytest.raises(MpnasError, match=r"no batch size for domain\(s\) mid"):
        MultiDomainLoader(small_set, {"big": 4, "small": 4})
    with pytest.raises(MpnasError, match=r"unknown domain\(s\) huge"):
        MultiDomainLoader(small_set, {"big": 4, "small": 4, "mid": 4, "huge": 1})
    with pytest.raises(MpnasError, match="positive integer"):
        MultiDomainLoader(small_set, 0)


@pytest.mark.parametrize("crop", ["pad", "resize"])
def test_no_flip_domain_is_never_flipped(asymmetric_domain, crop):
    def left_minus_right(flip: bool) -> torch.Tensor:
        d = make_asym(asymmetric_domain, flip, crop)
        loader = MultiDomainLoader(DomainSet("t", [d]), 40, seed=1)
        x = torch.cat([loader.next()["arrows"][0] for _ in range(5)])
        half = x.shape[3] // 2
        return x[..., :half].mean(dim=(1, 2, 3)) - x[..., half:].mean(dim=(1, 2, 3))

    assert (left_minus_right(False) > 0).all()
    assert (left_minus_right(True) < 0).any()  # the check would catch a flip


def make_asym(domain, flip: bool, crop: str):
    return dataclasses.replace(domain, augment=AugmentSpec(flip=flip, crop=crop))


def test_iterate_split_in_order(small_set):
    d = small_set["small"]
    batches = list(iterate_split(d, "train", 10))
    assert [len(y) for _, y in batches] == [10, 10, 3]
    assert [i for x, _ in batches for i in indices(x, d)] == list(range(23))
    assert torch.cat([y for _, y in batches]).tolist() == d.splits["train"].labels.tolist()
    with pytest.raises(MpnasError, match=r"no test split \(has: train, val\)"):
        next(iterate_split(d, "test", 4))


def test_iterate_unlabelled_split(small_set):
    d = small_set["mid"]
    with_test = dataclasses.replace(d, splits={**d.splits, "test": Split(d.splits["val"].images, None)})
    assert all(y is None for _, y in iterate_split(with_test, "test", 5))


def test_class_batch_sizes_follow_the_number_of_classes():
    domains = DomainSet("test", [make_domain("two", 40, 2), make_domain("many", 400, 47), make_domain("huge", 900, 300),
                                 make_domain("mid", 60, 17)])
    assert class_batch_sizes(domains, 32, 0.0) == {"two": 32, "many": 32, "huge": 32, "mid": 32}
    # 2 x 47 = 94 -> 96 (a multiple of 8); 2 x 17 = 34 -> 40; 600 capped at 4 x 32
    assert class_batch_sizes(domains, 32, 2.0) == {"two": 32, "many": 96, "huge": 128, "mid": 40}
    with pytest.raises(MpnasError, match="batch_per_class"):
        class_batch_sizes(domains, 32, -1.0)
