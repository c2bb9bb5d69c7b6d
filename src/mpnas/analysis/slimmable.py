"""The report's section on a slimmable run (`train.slimmable`): what its measured table says.

It reads `slim_table.json` alone: the batch-norm measurement (uniform widths with statistics sliced from the full
widths, and recalibrated), the controllability curve (`configure` at five MACs budgets, measured), the
preference table (at 70% of the full MACs, each domain preferred in turn) and the predictor's error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

SLIM_FIGURE = "slimmable.png"


def plot_slimmable(table: Mapping[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = [r for r in table["rows"] if r.get("recalibrated", True)]
    ax.scatter([r["macs_total"] / 1e6 for r in rows], [r["mean_val_top1"] for r in rows], s=12, alpha=0.4,
               color="grey", label="measured configurations")
    curve = sorted(table.get("curve", []), key=lambda r: r["macs_total"])
    if curve:
        ax.plot([r["macs_total"] / 1e6 for r in curve], [r["mean_val_top1"] for r in curve], marker="o",
                label="configure at 5 budgets, measured")
        ax.plot([r["macs_total"] / 1e6 for r in curve], [r["predicted_mean_top1"] for r in curve], marker="x",
                linestyle="--", label="... as predicted")
    ax.set_xlabel("MACs, one image per domain (M)")
    ax.set_ylabel("mean validation top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def slimmable_lines(table: Mapping[str, Any], figure: list[str]) -> list[str]:
    """Markdown for the report; `figure` is the embedded figure's lines."""
    full = table["rows"][0]
    lines = ["## Slimmable widths (seed 003)", "",
             f"The model was trained with `train.slimmable` (multipliers {table['multipliers']} of each width unit: "
             f"{', '.join(table['units'])}). Every figure here is validation top-1 of this one model, measured after "
             f"recalibrating batch norm on {table['recalibrate_batches']} training batches per domain; "
             f"`mpnas configure --run DIR --max-macs M` picks widths for a budget. Measuring took "
             f"{table.get('seconds', 0):.0f} s.", ""]
    lines += figure
    lines += ["### Controllability: configure at five MACs budgets", "",
              "| budget | MACs | parameters | mean top-1, predicted | measured |", "| ---: | ---: | ---: | ---: | ---: |"]
    for r in table.get("curve", []):
        lines.append(f"| {r['budget_frac']:.2f} | {r['macs_total'] / 1e6:.2f} M | {r['params_total']:,} | "
                     f"{r['predicted_mean_top1']:.2f} | {r['mean_val_top1']:.2f} |")
    prefs = table.get("preferences", [])
    if prefs:
        equal = next(r for r in prefs if r["preferred"] is None)
        lines += ["", "### Preferences: at 70% of the full MACs, one domain's weight raised to 4", "",
                  "| preferred | its top-1, equal weights | its top-1, preferred | its MACs (M), equal → preferred | "
                  "mean top-1 |", "| --- | ---: | ---: | --- | ---: |"]
        lines.append(f"| none | | | | {equal['mean_val_top1']:.2f} |")
        for r in prefs:
            d = r["preferred"]
            if d is None:
                continue
            lines.append(f"| {d} | {equal['val_top1'][d]:.2f} | {r['val_top1'][d]:.2f} | "
                         f"{equal['macs'][d] / 1e6:.2f} → {r['macs'][d] / 1e6:.2f} | {r['mean_val_top1']:.2f} |")
    sliced = {r["widths"][next(iter(r["widths"]))]["stem"]: r for r in table["rows"]
              if r["kind"] == "uniform" and not r["recalibrated"]}
    recal = {r["widths"][next(iter(r["widths"]))]["stem"]: r for r in table["rows"]
             if r["kind"] == "uniform" and r["recalibrated"]}
    if sliced:
        lines += ["", "### Batch norm: sliced from the full widths, or recalibrated", "",
                  "| every unit at | mean top-1, sliced statistics | recalibrated |", "| ---: | ---: | ---: |",
                  f"| 1.0 | {full['mean_val_top1']:.2f} | (exact: only the full widths update them) |"]
        for m in sorted(sliced, reverse=True):
            lines.append(f"| {m} | {sliced[m]['mean_val_top1']:.2f} | {recal[m]['mean_val_top1']:.2f} |")
    lines.append("")
    return lines


__all__ = ["SLIM_FIGURE", "plot_slimmable", "slimmable_lines"]
