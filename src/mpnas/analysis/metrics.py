"""Scores computed from predictions and accuracies: top-1 and the Visual Decathlon score.

Path similarity (Jaccard of node sets) lives on `Architecture.jaccard`, next to the node sets it compares.
Nothing here imports torch: `top1` works on anything with `argmax` and `==` (tensors and numpy arrays).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# Top-1 (percent) of the finetuned ImageNet network of Rebuffi et al. 2017, the reference every Visual Decathlon
# score is measured against: a domain scores 250 points at this accuracy and 0 at twice its error.
DECATHLON_BASELINE_TOP1: Mapping[str, float] = MappingProxyType(
    {
        "imagenet12": 59.87,
        "aircraft": 60.34,
        "cifar100": 82.12,
        "daimlerpedcls": 92.82,
        "dtd": 55.53,
        "gtsrb": 97.53,
        "vgg-flowers": 81.41,
        "omniglot": 87.69,
        "svhn": 96.55,
        "ucf101": 51.20,
    }
)
DECATHLON_POINTS_PER_DOMAIN = 1000.0


def top1(logits: Any, labels: Any) -> float:
    """Top-1 accuracy in percent: the unit results.json and the paper's tables use."""
    if len(labels) == 0:
        raise ValueError("top1: no labels")
    if len(logits) != len(labels):
        raise ValueError(f"top1: {len(logits)} rows of logits for {len(labels)} labels")
    correct = (logits.argmax(1) == labels).sum()
    return 100.0 * float(correct) / len(labels)


def decathlon_name(domain: str) -> str | None:
    """The devkit's name for a domain (case and '_' for '-' forgiven), or None when it is not one of the ten."""
    name = domain.lower().replace("_", "-")
    return name if name in DECATHLON_BASELINE_TOP1 else None


def decathlon_points(top1: Mapping[str, float]) -> dict[str, float]:
    """Each decathlon domain's share of the score, so a report can show where the points come from.

    S_d = alpha_d * max(0, Emax_d - E_d)^2 with errors in percent, Emax_d twice the baseline error and
    alpha_d = 1000 / Emax_d^2. Domains outside the decathlon are left out.
    """
    points = {}
    for domain, acc in top1.items():
        name = decathlon_name(domain)
        if name is None:
            continue
        e_max = 2.0 * (100.0 - DECATHLON_BASELINE_TOP1[name])
        error = 100.0 - float(acc)
        points[domain] = DECATHLON_POINTS_PER_DOMAIN / e_max**2 * max(0.0, e_max - error) ** 2
    return points


def decathlon_score(top1: Mapping[str, float]) -> float | None:
    """The Visual Decathlon score over the decathlon domains present; None when there are none to score."""
    points = decathlon_points(top1)
    return sum(points.values()) if points else None
