"""Uniformly random paths inside a cost window: the draws behind a ground-truth set of equal-cost paths.

Rejection sampling keeps the draws uniform over the paths of the window (the space's decisions drawn uniformly
and independently, as `SearchSpace.random_path` does, then kept only inside the window), which is what makes
"the percentile of the searched path among them" mean the same as "better than this share of random paths of
the same cost".
"""

from __future__ import annotations

import random
from typing import Callable

from mpnas.errors import MpnasError
from mpnas.space.space import Path, SearchSpace


def paths_in_cost_window(space: SearchSpace, cost: Callable[[Path], float], target: float, count: int,
                         tolerance: float, rng: random.Random, max_draws: int = 200_000) -> list[Path]:
    """`count` distinct uniformly random paths with |cost / target - 1| <= `tolerance`, in the order drawn."""
    if target <= 0 or tolerance < 0 or count < 1:
        raise MpnasError(f"cost window: needs target > 0, tolerance >= 0 and count >= 1 (got {target}, {tolerance}, "
                         f"{count})")
    paths: list[Path] = []
    for _ in range(max_draws):
        path = space.random_path(rng)
        if abs(cost(path) / target - 1) <= tolerance and path not in paths:
            paths.append(path)
            if len(paths) == count:
                return paths
    raise MpnasError(f"cost window: only {len(paths)} of {count} distinct paths within {tolerance:.0%} of {target:.4g} "
                     f"in {max_draws} draws")
