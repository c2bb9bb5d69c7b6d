"""The split-half reliability of a supernet's scores (`benchmarks/search_quality.py reliability`): a score that
ranks the paths the same way on every batch has halves' tau 1 whatever the truth says; a score that is only batch
noise has halves' tau near 0; and the truth's tau is taken on the first half and on all batches."""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from search_quality import split_half  # noqa: E402


def test_a_consistent_but_wrong_ranking_is_reliable_and_anticorrelated():
    truth = [float(i) for i in range(12)]
    rows = [[float(-i) + 0.01 * b for b in range(8)] for i in range(12)]  # reversed ranking on every batch
    cell = split_half(rows, truth)
    assert cell["tau_halves"] == 1.0
    assert cell["tau_truth_first_half"] == -1.0 and cell["tau_truth_both"] == -1.0
    assert cell["score_spread"] == 11.0


def test_pure_batch_noise_is_unreliable():
    rng = random.Random(0)
    truth = [float(i) for i in range(40)]
    rows = [[rng.random() for _ in range(16)] for _ in range(40)]
    cell = split_half(rows, truth)
    assert abs(cell["tau_halves"]) < 0.25
    assert 0.25 < cell["score_batch_sd"] < 0.32  # a uniform variable's sd is 0.289


def test_halves_split_the_batches_in_order():
    truth = [0.0, 1.0, 2.0]
    # first half ranks with the truth, second half against it, strongly enough to reverse the mean
    rows = [[0.0, 0.0, 9.0, 9.0], [1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 1.0, 1.0]]
    cell = split_half(rows, truth)
    assert cell["tau_truth_first_half"] == 1.0
    assert cell["tau_halves"] == -1.0
    assert cell["tau_truth_both"] == -1.0
