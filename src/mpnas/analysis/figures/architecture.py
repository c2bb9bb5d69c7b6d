"""The merged architecture as a figure (the paper's Fig. 3): every candidate node, each domain's path through them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpnas.analysis.figures.common import DPI, domain_colors, save
from mpnas.analysis.nodes import NodeUse, node_table
from mpnas.space.arch import Architecture


def plot_architecture(arch: Architecture, out: str | Path) -> Path:
    """Every candidate node of every layer, each domain's path through them, and the widths it uses there.

    Columns are layers, rows the (kernel, SE) candidates; a dark node is shared, a light one used by a single
    domain, a dashed one by none. Each domain keeps its own lane (vertical offset) inside every node, where it
    writes `expanded/output` filters, so its line can be followed across the network; a skipped layer sends the
    line through the `skip` row, where there is no node.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch, Rectangle
    from matplotlib.path import Path as MplPath

    table = node_table(arch)
    domains = arch.domains
    colors = domain_colors(domains)
    n = len(domains)
    columns = [(b, l, layer) for b, block in enumerate(arch.space.blocks) for l, layer in enumerate(block.layers)]
    cand_rows = sorted({(u.kernel, u.se) for u in table.values()})
    has_skip = any(layer.skippable for _, _, layer in columns)
    row_of = {key: i + has_skip for i, key in enumerate(cand_rows)}

    # Geometry in inches: the axes span the whole figure with one data unit per inch, so text sizes and line
    # offsets keep the same look whatever the number of layers and domains.
    lane = 0.16 if n <= 3 else 0.125 if n <= 6 else 0.1
    font = 6.5 if n <= 6 else 5.5
    node_w, col_w = 0.74, 1.06
    node_h = n * lane + 0.12
    row_h = node_h + 0.24
    left, top = 0.8, 1.3
    per_legend_line = max(1, int((len(columns) * col_w) // 1.7))
    bottom = 0.25 + 0.22 * math.ceil(n / per_legend_line)
    n_rows = len(cand_rows) + has_skip
    width, height = left + len(columns) * col_w + 0.15, top + n_rows * row_h + bottom

    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")

    def cx(i: int) -> float:
        return left + col_w * (i + 0.5)

    def cy(r: int) -> float:
        return top + row_h * (r + 0.5)

    offsets = {d: (i - (n - 1) / 2) * lane for i, d in enumerate(domains)}

    # Blocks: alternate shading and a header; layers: a column label, with the stride where it downsamples.
    for b in range(len(arch.space.blocks)):
        idx = [i for i, (bb, _, _) in enumerate(columns) if bb == b]
        x0 = left + col_w * idx[0]
        if b % 2:
            ax.add_patch(Rectangle((x0, top - 0.42), col_w * len(idx), n_rows * row_h + 0.42, color="0.95", zorder=0))
        ax.text(x0 + col_w * len(idx) / 2, top - 0.52, f"block {b}", ha="center", va="bottom", fontsize=8,
                weight="bold")
    for i, (b, l, layer) in enumerate(columns):
        label = f"b{b}.l{l}" + ("  /2" if layer.stride == 2 else "")
        ax.text(cx(i), top - 0.2, label, ha="center", va="bottom", fontsize=7, color="0.25")
    if has_skip:
        ax.text(left - 0.1, cy(0), "skip", ha="right", va="center", fontsize=8, style="italic", color="0.4")
    for (kernel, se), r in row_of.items():
        ax.text(left - 0.1, cy(r), f"k{kernel}" + (" se" if se else ""), ha="right", va="center", fontsize=8)

    # Paths under the nodes: straight inside a column, an S-curve between columns.
    half = node_w / 2
    for d in domains:
        used = {(u.block, u.layer): u for u in table.values() if d in u.domains}
        verts: list[tuple[float, float]] = []
        codes: list[Any] = []  # matplotlib path codes (numpy uint8)
        for i, (b, l, _) in enumerate(columns):
            u = used.get((b, l))
            y = (cy(row_of[(u.kernel, u.se)]) if u else cy(0)) + offsets[d]
            if verts:
                (px, py), gap = verts[-1], (cx(i) - half - verts[-1][0]) / 2
                verts += [(px + gap, py), (cx(i) - half - gap, y), (cx(i) - half, y)]
                codes += [MplPath.CURVE4] * 3
            else:
                verts.append((cx(i) - half, y))
                codes.append(MplPath.MOVETO)
            verts.append((cx(i) + half, y))
            codes.append(MplPath.LINETO)
        ax.add_patch(PathPatch(MplPath(verts, codes), fill=False, edgecolor=colors[d], lw=1.6 if n <= 6 else 1.3,
                               alpha=0.9, zorder=2))

    col_of = {(b, l): i for i, (b, l, _) in enumerate(columns)}
    for u in table.values():
        _draw_node(ax, u, cx(col_of[(u.block, u.layer)]), cy(row_of[(u.kernel, u.se)]), node_w, node_h, offsets,
                   colors, font)

    used_nodes = [u for u in table.values() if u.used]
    shared = sum(u.shared for u in used_nodes)
    ax.text(left, 0.12, f"Merged architecture ({arch.space.name} space): {len(used_nodes)} of {len(table)} candidate "
            f"nodes used, {shared} shared, {len(used_nodes) - shared} exclusive", ha="left", va="top", fontsize=10,
            weight="bold")
    ax.text(left, 0.36, "dark: shared by several domains · light: one domain · dashed: unused (dropped) · in a node: "
            "expanded/output filters of each domain, on its lane · /2: stride 2 · stem and head not drawn",
            ha="left", va="top", fontsize=7.5, color="0.3")
    for i, d in enumerate(domains):
        x = left + 1.7 * (i % per_legend_line)
        y = height - bottom + 0.18 + 0.22 * (i // per_legend_line)
        ax.plot([x, x + 0.3], [y, y], color=colors[d], lw=2.2)
        ax.text(x + 0.38, y, d, va="center", fontsize=8)
    return save(fig, out, DPI if n <= 6 else 140)  # the small width labels of many lanes need more pixels


def _draw_node(ax: Any, u: NodeUse, x: float, y: float, w: float, h: float, offsets: Mapping[str, float],
               colors: Mapping[str, Any], font: float) -> None:
    from matplotlib.patches import FancyBboxPatch

    if u.shared:
        face, edge, ink, style = "0.28", "0.1", "white", "-"
    elif u.used:
        face, edge, ink, style = "0.88", "0.45", "black", "-"
    else:
        face, edge, ink, style = "white", "0.7", "black", "--"
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.05", facecolor=face,
                     edgecolor=edge, linestyle=style, lw=0.9, zorder=3))
    for d in u.domains:
        exp_ch, out_ch = u.widths[d]
        ly = y + offsets[d]
        ax.plot([x - w / 2 + 0.07], [ly], marker="o", ms=3.2, color=colors[d], zorder=4)
        ax.text(x - w / 2 + 0.14, ly, f"{exp_ch}/{out_ch}", ha="left", va="center", fontsize=font, color=ink, zorder=4)
