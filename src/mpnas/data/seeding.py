"""Seeds derived from (seed, purpose, ...) so that every random stream can be recreated from counters alone."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed that depends on `seed` and every part, stable across runs, platforms and Python versions."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & (2**63 - 1)


def generator(seed: int, *parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *parts))


def stratified_split(labels: torch.Tensor, fractions: dict[str, float], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Indices per split with each class divided in the given proportions (the first split takes the rest).

    A class keeps at least one example in the first split; the others get `round(fraction * n)` each, and at
    least one when the class has enough examples for every split.
    """
    names = list(fractions)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        start = 0
        counts = {}
        for name in names[1:]:
            k = round(fractions[name] * len(idx))
            if k == 0 and len(idx) >= len(names):
                k = 1
            counts[name] = k
        while sum(counts.values()) >= len(idx) and any(counts.values()):
            biggest = max(counts, key=counts.__getitem__)
            counts[biggest] -= 1
        for name in names[1:]:
            out[name].append(idx[start : start + counts[name]])
            start += counts[name]
        out[names[0]].append(idx[start:])
    return {n: torch.sort(torch.cat(v)).values for n, v in out.items()}
