"""Sampling paths: uniformly inside a cost window (the draws behind a ground-truth set of equal-cost paths), and
FairNAS's fair sets of paths for training a supernet.

Rejection sampling keeps the draws uniform over the paths of the window (the space's decisions drawn uniformly
and independently, as `SearchSpace.random_path` does, then kept only inside the window), which is what makes
"the percentile of the searched path among them" mean the same as "better than this share of random paths of
the same cost".
"""

from __future__ import annotations

import random
from typing import Any, Callable

from mpnas.errors import MpnasError
from mpnas.space.space import Decision, Path, SearchSpace


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

def _balanced(count: int, options: int, rng: random.Random) -> list[int]:
    """`count` option indices in random order, each of the `options` used floor or ceil(count / options) times."""
    out = [i for i in range(options) for _ in range(count // options)]
    out += rng.sample(range(options), count % options)
    rng.shuffle(out)
    return out


def fair_choices(decisions: list[Decision], rng: random.Random) -> list[dict[str, Any]]:
    """A fair set of paths for one supernet step (FairNAS's strict fairness, Chu et al. 2021): the choices of K paths
    such that every candidate of every layer is in exactly one of them when the layer has K candidates, and in
    floor or ceil(K / n) of them when it has n < K. Trained together in one weight step, every candidate then gets
    one update per step, so no op's weights are ahead of another's when the supernet ranks them.

    A layer's candidates are its ops: each kernel, and the skip when the layer is skippable (a skipped layer
    trains none of its kernels, so the skip is one more op, as in FairNAS). Every other decision (squeeze-and-
    excite, expansion, a block's filters, the stem's) is spread over the K paths the same way, independently.
    K is the most candidates of any of them (4 in the default space: three kernels and the skip)."""
    groups: list[list[dict[str, Any]]] = []
    by_layer: dict[tuple[int, int], dict[str, Decision]] = {}
    for d in decisions:
        if d.kind in ("kernel", "skip") and d.layer is not None:
            by_layer.setdefault(d.layer, {})[d.kind] = d
        else:
            groups.append([{d.key: v} for v in d.options])
    for layer in by_layer.values():
        kernel, skip = layer.get("kernel"), layer.get("skip")
        ops: list[dict[str, Any]] = [{kernel.key: k} for k in kernel.options] if kernel else [{}]
        if skip is not None:
            ops = [{**op, skip.key: False} for op in ops]
            ops.append({skip.key: True, **({kernel.key: kernel.options[0]} if kernel else {})})
        groups.append(ops)
    k = max((len(g) for g in groups), default=1)
    paths: list[dict[str, Any]] = [{} for _ in range(k)]
    for options in groups:
        for path, i in zip(paths, _balanced(k, len(options), rng)):
            path.update(options[i])
    return paths



def sandwich_choices(decisions: list[Decision], choices: dict[str, Any]) -> list[dict[str, Any]]:
    """The sandwich rule's two extra paths (BigNAS, Yu et al. 2020): `choices` with every width decision (a block's
    or the stem's filters, a layer's expansion) at its largest and at its smallest, its ops unchanged. Trained
    beside the sampled path, they bound every width the controller can pick, so the narrow slices a cheap path
    uses are trained as often as the wide ones."""
    widths = [d for d in decisions if d.kind in ("filters", "expansion")]
    return [{**choices, **{d.key: pick(d.options) for d in widths}} for pick in (max, min)]
