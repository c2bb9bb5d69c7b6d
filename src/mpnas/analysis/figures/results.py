"""Figures of a run's results: top-1 per domain and the domains' Jaccard similarity (the paper's Fig. 4)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpnas.analysis.figures.common import NothingToDraw, domain_colors, is_number, save


def plot_jaccard(jaccard: Mapping[str, Mapping[str, float]], out: str | Path) -> Path:
    """Pairwise path similarity as an annotated heatmap, the paper's Fig. 4."""
    from matplotlib.figure import Figure

    names = list(jaccard)
    if not names:
        raise NothingToDraw(f"figure {out}: no domains in the Jaccard table")
    n = len(names)
    values = [[float(jaccard[a].get(b, math.nan)) for b in names] for a in names]
    side = 2.2 + 0.55 * n
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="Blues")
    size = 10 if n <= 5 else 8 if n <= 8 else 7
    for i in range(n):
        for j in range(n):
            v = values[i][j]
            ax.text(j, i, "–" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=size,
                    color="white" if v > 0.6 else "black")
    ax.set_xticks(range(n), names, rotation=40, ha="right", fontsize=9)
    ax.set_yticks(range(n), names, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Jaccard similarity of node sets")
    ax.set_title("Path similarity: shared nodes / nodes of either", fontsize=10)
    return save(fig, out)


def plot_accuracy(results: Mapping[str, Any], out: str | Path) -> Path:
    """Per-domain top-1 with the mean, so the weakest domain is visible at a glance."""
    from matplotlib.figure import Figure

    entries = results.get("domains") or {}
    names = [d for d, r in entries.items() if isinstance(r, Mapping) and is_number(r.get("top1"))]
    if not names:
        raise NothingToDraw(f"figure {out}: results have no per-domain top-1")
    accs = [float(entries[d]["top1"]) for d in names]
    mean = float(results["mean_top1"]) if is_number(results.get("mean_top1")) else sum(accs) / len(accs)
    colors = domain_colors(names)
    val_only = [d for d in names if entries[d].get("eval_split") == "val"]

    fig = Figure(figsize=(max(4.8, 1.4 + 0.62 * len(names)), 3.8), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(range(len(names)), accs, color=[colors[d] for d in names], width=0.7)
    ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.axhline(mean, color="black", ls="--", lw=1, label=f"mean {mean:.1f}")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_xticks(range(len(names)), [d + ("*" if d in val_only else "") for d in names],
                  rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center", fontsize=9)
    ax.set_ylim(0, 108)
    ax.set_ylabel("top-1 (%)")
    ax.grid(axis="y", alpha=0.3)
    title = f"{results.get('method', '?')} on {results.get('data', '?')}: top-1 per domain"
    if val_only:
        title += "\n* measured on the validation split (no labelled test split)"
    ax.set_title(title, fontsize=10)
    return save(fig, out)
