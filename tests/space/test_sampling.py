"""Uniformly random paths inside a cost window."""

from __future__ import annotations

import random

import pytest

from mpnas.errors import MpnasError
from mpnas.space.cost import path_cost
from mpnas.space.presets import get_space
from mpnas.space.sampling import paths_in_cost_window


def test_every_path_is_distinct_and_inside_the_window():
    space = get_space("default", resolution=32)
    target = float(path_cost(space, space.reference_path(), 10).macs)
    macs = lambda p: float(path_cost(space, p, 10).macs)  # noqa: E731
    paths = paths_in_cost_window(space, macs, target, 20, 0.05, random.Random(0))
    assert len(paths) == 20 and len({str(p.to_dict()) for p in paths}) == 20
    assert all(abs(macs(p) / target - 1) <= 0.05 for p in paths)
    # The same generator state gives the same set.
    assert paths == paths_in_cost_window(space, macs, target, 20, 0.05, random.Random(0))


def test_an_unreachable_window_is_a_named_error():
    space = get_space("default", resolution=32)
    with pytest.raises(MpnasError, match="only 0 of 3 distinct paths"):
        paths_in_cost_window(space, lambda p: 1.0, 1e12, 3, 0.01, random.Random(0), max_draws=50)
