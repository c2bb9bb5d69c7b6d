"""Kendall tau, percentiles and the set's headroom and noise on small examples worked out by hand."""

from __future__ import annotations

import pytest

from mpnas.analysis.ranking import headroom_and_noise, kendall_tau, percentile


def test_kendall_tau_on_known_orders():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10])[0] == pytest.approx(-1.0)
    # 4 items, one discordant pair of the 6 (the last two swapped): (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3])[0] == pytest.approx(4 / 6)
    # tau-b with a tie in the scores: concordant 5, discordant 0, ties in x 1 -> 5 / sqrt(5 * 6)
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4])[0] == pytest.approx(5 / (5 * 6) ** 0.5)
    with pytest.raises(ValueError):
        kendall_tau([1.0], [2.0])


def test_percentile_counts_ties_half():
    others = [10.0, 20.0, 30.0, 40.0]
    assert percentile(5.0, others) == 0.0
    assert percentile(45.0, others) == 100.0
    assert percentile(25.0, others) == 50.0
    assert percentile(30.0, others) == pytest.approx(100 * (2 + 0.5) / 4)
    with pytest.raises(ValueError):
        percentile(1.0, [])


def test_headroom_and_noise_by_hand():
    paths = [{"0": 80.0, "1": 82.0}, {"0": 70.0, "1": 74.0}, {"0": 75.0, "1": 75.0}, {"0": 90.0}]
    out = headroom_and_noise(paths)
    assert out["paths_complete"] == 3  # the last path lacks seed 1
    # seed 0: best 80, median 75 -> 5; seed 1: best 82, median 75 -> 7; mean 6
    assert out["headroom"] == pytest.approx(6.0)
    # per-path variances (n - 1): 2, 8, 0 -> mean 10/3 -> noise sqrt(10/3)
    assert out["noise"] == pytest.approx((10 / 3) ** 0.5)
    assert out["headroom_over_noise"] == pytest.approx(6.0 / (10 / 3) ** 0.5)
    # seed 0 orders the three paths 80 > 75 > 70, seed 1 82 > 75 > 74: the same order
    assert out["seed_tau"] == pytest.approx(1.0)
    swapped = headroom_and_noise([{"0": 1.0, "1": 2.0}, {"0": 2.0, "1": 1.0}, {"0": 3.0, "1": 3.0}])
    assert swapped["seed_tau"] == pytest.approx(1 / 3)  # one discordant pair of three: (2 - 1) / 3
    assert (out["top1_min"], out["top1_median"], out["top1_max"]) == (72.0, 75.0, 81.0)
