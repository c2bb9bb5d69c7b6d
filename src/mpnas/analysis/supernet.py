"""Does the supernet learn every domain during the search? The reward's Q of the sampled paths, per domain.

A controller learns only from differences between the paths it samples. While the supernet scores a domain's
paths at chance, every path gets the same quality and the reward is the cost term alone: that controller is
searching blind. The mean validation top-1 of the sampled paths (the Q of the reward) over the last stretch of
the warm-up and of the search, set against chance and against the trained model, shows where that happens.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

WINDOW = 0.1  # the last tenth of the search's steps, or of the warm-up if that is shorter


def supernet_quality(rows: Sequence[Mapping[str, Any]], window: float = WINDOW) -> dict[str, dict[str, float]]:
    """Per domain, the mean logged top-1 (percent) of the sampled paths over the last `window` of the search's
    steps before RL starts (`warmup_end`) and before the search ends (`search_end`), from metrics.jsonl rows."""
    search = [r for r in rows if r.get("stage") == "search" and isinstance(r.get("top1"), (int, float))]
    if not search:
        return {}
    steps = max(r["step"] for r in search) + 1
    rl_first = min((r["step"] for r in search if r.get("rl_active")), default=steps)
    span = max(1, round(window * steps))
    phases = {"warmup_end": (max(0, rl_first - span), rl_first), "search_end": (max(0, steps - span), steps)}
    out: dict[str, dict[str, float]] = {}
    for d in dict.fromkeys(r["domain"] for r in search):
        cell = {}
        for name, (lo, hi) in phases.items():
            values = [100.0 * r["top1"] for r in search if r["domain"] == d and lo <= r["step"] < hi]
            if values and hi > lo:
                cell[name] = round(statistics.mean(values), 2)
        out[d] = cell
    return out
