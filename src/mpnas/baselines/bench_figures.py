"""The bench's figures: mean top-1 per method, accuracy against MACs and against parameters (one point per
method and seed, MPNAS's cost front as a line), and top-1 per domain. Drawn on bare `Figure`s (no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpnas.baselines.names import FRONT_PREFIX, label, ordered

_MARKERS = "osD^v<>pPX*"


def _colour(method: str, i: int) -> str:
    if method == "mpnas" or method.startswith(FRONT_PREFIX):
        return "#c44e52"
    palette = ["#4c72b0", "#55a868", "#8172b2", "#ccb974", "#64b5cd", "#937860", "#da8bc3", "#8c8c8c"]
    return palette[i % len(palette)]


def _cost_plot(folder: Path, methods: dict[str, Any], front: dict[str, Any], key: str, xlabel: str, name: str) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.4))
    ax = fig.subplots()
    for i, m in enumerate(ordered(methods)):
        rows = methods[m]["per_seed"]
        ax.scatter([r[key] / 1e6 for r in rows], [r["mean_top1"] for r in rows], s=28, marker=_MARKERS[i % len(_MARKERS)],
                   color=_colour(m, i), label=label(m), alpha=0.85)
    for m in sorted(front):
        rows = front[m]["per_seed"]
        ax.scatter([r[key] / 1e6 for r in rows], [r["mean_top1"] for r in rows], s=28, marker="o", facecolors="none",
                   edgecolors="#c44e52", alpha=0.85)
    line = [(v[key]["mean"], v["mean_top1"]["mean"], m) for m, v in {**front, **{k: methods[k] for k in methods if k == "mpnas"}}.items()]
    if len(line) >= 2:
        line.sort()
        ax.plot([x / 1e6 for x, _, _ in line], [y for _, y, _ in line], color="#c44e52", lw=1.2, ls="--",
                label="MPNAS front (mean over seeds)")
        for x, y, m in line:
            ax.annotate(label(m).replace("MPNAS, ", ""), (x / 1e6, y), textcoords="offset points", xytext=(4, -10), fontsize=7,
                        color="#c44e52")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean top-1 over domains (%)")
    ax.set_title("One point per method and seed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(folder / name, dpi=120)
    return name


def draw_bench_figures(folder: Path, methods: dict[str, Any], front: dict[str, Any]) -> list[str]:
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    order = ordered(methods)
    if order:
        fig = Figure(figsize=(max(7, 1.1 * len(order)), 3.6))
        ax = fig.subplots()
        means = [methods[m]["mean_top1"]["mean"] for m in order]
        stds = [methods[m]["mean_top1"]["std"] for m in order]
        ax.bar([label(m) for m in order], means, yerr=stds, capsize=4, color=[_colour(m, i) for i, m in enumerate(order)])
        for i, v in enumerate(means):
            ax.text(i, v + 1, f"{v:.1f}", ha="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylabel("mean top-1 (%)")
        ax.set_title("Mean top-1 over domains (error bars: std over seeds)")
        fig.tight_layout()
        fig.savefig(folder / "mean_top1.png", dpi=120)
        names.append("mean_top1.png")

    names.append(_cost_plot(folder, methods, front, "macs_total", "MACs, one image of every domain (M)", "top1_vs_macs.png"))
    names.append(_cost_plot(folder, methods, front, "params_total", "parameters of the whole multi-domain model (M)",
                            "top1_vs_params.png"))

    if order:
        domains = list(methods[order[0]]["top1"])
        fig = Figure(figsize=(max(7, 1.3 * len(domains)), 3.8))
        ax = fig.subplots()
        width = 0.8 / len(order)
        for i, m in enumerate(order):
            xs = [j + (i - (len(order) - 1) / 2) * width for j in range(len(domains))]
            ax.bar(xs, [methods[m]["top1"][d]["mean"] for d in domains], width, label=label(m), color=_colour(m, i))
        ax.set_xticks(range(len(domains)), domains)
        ax.set_ylabel("top-1 (%)")
        ax.legend(fontsize=7, ncol=min(4, len(order)))
        ax.set_title("Top-1 per domain")
        fig.tight_layout()
        fig.savefig(folder / "top1_per_domain.png", dpi=120)
        names.append("top1_per_domain.png")
    return names


__all__ = ["draw_bench_figures"]
