"""Paired comparisons of methods over seeds.

Methods in a bench share each seed's data order, initialisation seed and (for cost-matched baselines) the
MPNAS path they are matched to, so the natural unit is the per-seed difference. Seed-to-seed spread is large at
CPU budgets (one domain alone can move the mean by 2 points), and most of it is common to the methods of one
seed; differencing removes it. The interval is Student's t on the differences: with 3 to 10 seeds a bootstrap
has too few distinct resamples to be trusted, and t is exact when the differences are roughly normal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Paired:
    """`a - b` over the seeds both have: mean, sample std, and a two-sided t interval."""

    n: int
    mean: float
    std: float | None  # None for one seed
    low: float | None  # None when n < 2: no interval from one difference
    high: float | None
    level: float
    diffs: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["diffs"], d["seeds"] = list(self.diffs), list(self.seeds)
        d["excludes_zero"] = self.excludes_zero
        return d


def t_quantile(p: float, df: int) -> float:
    from scipy.stats import t  # scipy ships with scikit-learn, a core dependency

    return float(t.ppf(p, df))


def paired_difference(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> Paired:
    """Per-seed differences `a[s] - b[s]` for the seeds in both, their mean and a t interval at `level`."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError("paired_difference: no seed in common")
    diffs = tuple(float(a[s]) - float(b[s]) for s in seeds)
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return Paired(n, mean, None, None, None, level, diffs, seeds)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return Paired(n, mean, sd, mean - half, mean + half, level, diffs, seeds)


__all__ = ["Paired", "paired_difference", "t_quantile"]
