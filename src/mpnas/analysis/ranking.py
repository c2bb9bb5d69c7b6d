"""Judging a search by a ground-truth set (NAS-Bench style): rank correlation and the searched path's percentile.

A weight-sharing search pays only if its supernet orders paths as stand-alone training does (Kendall tau) and if
the path it picks beats most random paths of the same cost (the percentile). The set's own spread bounds what any
search can show: the headroom (best path minus the median path) against the noise of retraining one path.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from scipy.stats import kendalltau


def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> tuple[float, float]:
    """Kendall's tau-b (ties counted as scipy does) and its two-sided p-value."""
    if len(scores) != len(truth) or len(scores) < 2:
        raise ValueError(f"Kendall tau needs two equal lists of at least 2 values, got {len(scores)} and {len(truth)}")
    res = kendalltau(scores, truth)
    return float(res.statistic), float(res.pvalue)


def percentile(value: float, others: Sequence[float]) -> float:
    """Where `value` falls among `others`: 100 x (those below + half of those equal) / their number. A value drawn
    from the same distribution as `others` scores 50 on average."""
    if not others:
        raise ValueError("no values to place the value among")
    below = sum(o < value for o in others)
    ties = sum(o == value for o in others)
    return 100.0 * (below + 0.5 * ties) / len(others)


def headroom_and_noise(top1: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Per path, top-1 by seed. Headroom: best path minus median path, per seed, mean over seeds. Noise: the
    std of one path across seeds, as the root mean of the per-path variances. Seed tau: Kendall tau between two
    seeds' top-1 over the paths (mean over pairs of seeds), how far retraining reproduces the set's own order, which
    bounds the tau a supernet can show against it. Only paths with every seed count."""
    seeds = sorted({s for t in top1 for s in t})
    full = [t for t in top1 if seeds and all(s in t for s in seeds)]
    out: dict[str, Any] = {"paths_complete": len(full), "seeds": seeds}
    if len(full) < 2:
        return out
    out["headroom"] = statistics.mean(max(t[s] for t in full) - statistics.median(t[s] for t in full) for s in seeds)
    if len(seeds) > 1:
        noise = statistics.mean(statistics.variance([t[s] for s in seeds]) for t in full) ** 0.5
        out["noise"] = noise
        out["headroom_over_noise"] = out["headroom"] / noise if noise else None
        # How well one seed's ranking predicts another's: the ceiling of any tau measured against this set.
        taus = [kendall_tau([t[a] for t in full], [t[b] for t in full])[0]
                for i, a in enumerate(seeds) for b in seeds[i + 1:]]
        # undefined (NaN) when a seed scores every path alike: reported as None, not as a NaN that equals nothing
        out["seed_tau"] = None if any(math.isnan(v) for v in taus) else statistics.mean(taus)
    means = [statistics.mean(t[s] for s in seeds) for t in full]
    out.update(top1_min=min(means), top1_median=statistics.median(means), top1_max=max(means))
    return out
