"""The names of the bench's methods and how tables and figures label and order them.

`mpnas.baselines.tables` (bench.json, bench.md) and `mpnas.baselines.bench_figures` (its PNGs) both show methods
by these labels in this order; holding them here lets each of the two use them without importing the other.
"""

from __future__ import annotations

from typing import Any

METHODS = ("mpnas", "sd-nas", "sp-mn", "mdsp-nas", "mrp", "trl", "mrp-matched", "mpnas-gradient", "mpnas-gradient-oneshot",
           "mrp-matched-gradient", "mrp-matched-shortlist")
LABELS = {"mpnas": "MPNAS", "sd-nas": "SD-NAS", "sp-mn": "SP-MN", "mdsp-nas": "MDSP-NAS", "mrp": "MRP", "trl": "TRL",
          "mrp-matched": "MRP, cost-matched", "mpnas-gradient": "MPNAS, gradient",
          "mpnas-gradient-oneshot": "MPNAS, gradient, single-shot",
          "mrp-matched-gradient": "MRP, cost-matched to gradient",
          "mrp-matched-shortlist": "MRP, cost-matched, best of the shortlist's count"}
ORDER = ("sd-nas", "sp-mn", "mdsp-nas", "mrp", "mrp-matched", "mrp-matched-shortlist", "trl", "mpnas",
         "mrp-matched-gradient", "mpnas-gradient", "mpnas-gradient-oneshot")
FRONT_PREFIX = "mpnas@beta="  # bench directories of MPNAS searched with another cost exponent (the front)


def front_name(beta: float) -> str:
    return f"{FRONT_PREFIX}{beta:g}"


def label(method: str) -> str:
    if method.startswith(FRONT_PREFIX):
        return f"MPNAS, beta {method[len(FRONT_PREFIX):]}"
    return LABELS.get(method, method)


def ordered(methods: dict[str, Any]) -> list[str]:
    known = [m for m in ORDER if m in methods]
    return known + sorted(m for m in methods if m not in ORDER)


__all__ = ["FRONT_PREFIX", "LABELS", "METHODS", "ORDER", "front_name", "label", "ordered"]
