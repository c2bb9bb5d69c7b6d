"""Top-1 and the Visual Decathlon score (1000 points per domain at zero error, 250 at the baseline's accuracy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpnas.analysis.metrics import DECATHLON_BASELINE_TOP1, decathlon_name, decathlon_points, decathlon_score, top1


def test_top1_is_a_percentage_for_tensors_and_arrays() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([1, 0, 0, 0])
    assert top1(logits, labels) == pytest.approx(75.0)
    assert top1(logits.numpy(), labels.numpy()) == pytest.approx(75.0)


def test_top1_rejects_empty_and_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="no labels"):
        top1(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="2 rows of logits for 3 labels"):
        top1(np.zeros((2, 3)), np.zeros(3))


@pytest.mark.parametrize("domain", sorted(DECATHLON_BASELINE_TOP1))
def test_decathlon_points_at_zero_error_baseline_and_twice_the_baseline_error(domain: str) -> None:
    base = DECATHLON_BASELINE_TOP1[domain]
    assert decathlon_score({domain: 100.0}) == pytest.approx(1000.0)
    assert decathlon_score({domain: base}) == pytest.approx(250.0)
    twice_error = 100.0 - 2 * (100.0 - base)
    assert decathlon_score({domain: twice_error}) == pytest.approx(0.0, abs=1e-9)
    assert decathlon_score({domain: max(0.0, twice_error - 5.0)}) == 0.0  # worse than 2x the error: no points


def test_decathlon_score_sums_decathlon_domains_and_ignores_others() -> None:
    # cifar100 at half its baseline error: alpha * (Emax - Emax/4)^2 = 1000 * (3/4)^2.
    half_error = 100.0 - (100.0 - 82.12) / 2
    acc = {"cifar100": half_error, "vgg-flowers": 81.41, "my-own-photos": 12.0}
    assert decathlon_points(acc) == pytest.approx({"cifar100": 562.5, "vgg-flowers": 250.0})
    assert decathlon_score(acc) == pytest.approx(812.5)


def test_decathlon_score_is_none_without_decathlon_domains() -> None:
    assert decathlon_score({"shapes": 90.0, "signs": 80.0}) is None
    assert decathlon_score({}) is None


def test_decathlon_names_forgive_case_and_underscores() -> None:
    assert decathlon_name("VGG_Flowers") == "vgg-flowers"
    assert decathlon_name("imagenet") is None
    assert decathlon_score({"SVHN": 96.55}) == pytest.approx(250.0)
