"""Binomial standard error of top-1, sqrt(p (1 - p) / n), per built-in domain on its val and test splits (issue 24).

    python benchmarks/split_error.py                                  # p: MPNAS's mean top-1 in bench-13-final
    python benchmarks/split_error.py --accuracy benchmarks/stability/stability.json   # p: the stable recipe's mean

The error of one model's measured top-1 at accuracy p on n independent images; a difference between two models
measured on the same split is less noisy than this (the images are shared), a difference between seeds is not.
Version 4's split sizes are given beside version 5's for the domains whose held-out splits grew.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from mpnas.data import load_domains

HERE = Path(__file__).resolve().parent
V4 = {"glyphs": 705, "textures": 240, "signs": 222}  # val and test sizes of data version 4


def accuracies(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    if "recipes" in data:  # stability.json: the mean over seeds of the stable recipe
        return {d: statistics.mean(v) for d, v in data["recipes"]["after"]["top1"].items()}
    return {d: v["mean"] for d, v in data["methods"]["mpnas"]["top1"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accuracy", type=Path, default=HERE / "bench-13-final" / "bench.json")
    args = ap.parse_args()
    acc = accuracies(args.accuracy)
    domains = load_domains("builtin", resolution=32, progress=False)
    print(f"p from {args.accuracy}\n")
    print("| domain | top-1 p | val n | test n | SE val | SE test | version 4: n, SE |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for d in domains:
        p = acc[d.name] / 100
        n_val, n_test = len(d.splits["val"]), len(d.splits["test"])
        se = [100 * math.sqrt(p * (1 - p) / n) for n in (n_val, n_test)]
        old = f"{V4[d.name]}, {100 * math.sqrt(p * (1 - p) / V4[d.name]):.2f}" if d.name in V4 else "unchanged"
        print(f"| {d.name} | {100 * p:.1f} | {n_val:,} | {n_test:,} | {se[0]:.2f} | {se[1]:.2f} | {old} |")


if __name__ == "__main__":
    main()
