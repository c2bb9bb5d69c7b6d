"""Domain and DomainSet check themselves: a malformed source fails with the domain and split named."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from datahelpers import make_domain

from mpnas.data import AugmentSpec, Domain, DomainSet, Split
from mpnas.errors import MpnasError


def rebuild(domain: Domain, **changes) -> Domain:
    fields = {f.name: getattr(domain, f.name) for f in dataclasses.fields(domain)}
    fields.update(changes)
    return Domain(**fields)


def test_labels_out_of_range():
    d = make_domain("d", 10, 3)
    bad = Split(d.splits["train"].images, torch.full((10,), 3))
    with pytest.raises(MpnasError, match=r"domain 'd', split train: label 3 out of range 0..2"):
        rebuild(d, splits={"train": bad, "val": d.splits["val"]})


def test_empty_split():
    d = make_domain("d", 10, 3)
    empty = Split(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(MpnasError, match=r"domain 'd', split val: empty"):
        rebuild(d, splits={"train": d.splits["train"], "val": empty})


def test_train_and_val_must_be_labelled():
    d = make_domain("d", 10, 3)
    with pytest.raises(MpnasError, match=r"no val split"):
        rebuild(d, splits={"train": d.splits["train"]})
    with pytest.raises(MpnasError, match=r"the val split has no labels"):
        rebuild(d, splits={"train": d.splits["train"], "val": Split(d.splits["val"].images, None)})


def test_shape_and_dtype():
    d = make_domain("d", 10, 3)
    with pytest.raises(MpnasError, match=r"uint8 N x 3 x 16 x 16, got torch.uint8 \(10, 3, 8, 8\)"):
        rebuild(d, resolution=16)


def test_augment_spec_is_validated():
    with pytest.raises(MpnasError, match="crop must be one of"):
        AugmentSpec(flip=True, crop="zoom")


def test_eval_split_prefers_labelled_test():
    d = make_domain("d", 10, 3)
    assert d.eval_split() == "val"
    with_test = rebuild(d, splits={**d.splits, "test": d.splits["val"]})
    assert with_test.eval_split() == "test"


def test_domain_set_lookup():
    ds = DomainSet("src", [make_domain("a", 10, 2), make_domain("b", 10, 2)])
    assert ds["b"].name == "b" and ds.names() == ["a", "b"] and len(ds) == 2
    assert [d.name for d in ds] == ["a", "b"]
    with pytest.raises(MpnasError, match=r"unknown domain 'c' in data src \(known: a, b\)"):
        ds["c"]
    with pytest.raises(MpnasError, match="duplicate domain name"):
        DomainSet("src", [make_domain("a", 10, 2), make_domain("a", 10, 2)])
