"""The report's figures, one PNG per function, each returning the path it wrote.

matplotlib is imported inside the functions (it takes about a second to import and only reports need it), and
every figure is a bare `Figure` on the Agg canvas, so pyplot's global backend is never switched. Functions that
read metric rows take all rows and keep their own stage, ignoring rows they do not understand; `domains` fixes
the order and colours, so a domain has the same colour in every figure of a report.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mpnas.analysis.nodes import NodeUse, node_table
from mpnas.errors import MpnasError
from mpnas.io import atomic_write_bytes
from mpnas.space.arch import Architecture
from mpnas.space.space import SearchSpace

DPI = 110
MEAN = "__mean__"  # the train_eval rows' name for the mean over domains

Row = Mapping[str, Any]


class NothingToDraw(MpnasError):
    """The input holds nothing this figure can show: a report notes it in place of the figure."""


Series = dict[str, tuple[list[int], list[float]]]


# ---------------------------------------------------------------------------------------------------------
# Shared helpers.


def domain_colors(domains: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per domain: tab10 up to ten domains (the decathlon), tab20 beyond."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(domains) <= 10 else "tab20"]
    return {d: cmap(i % cmap.N) for i, d in enumerate(domains)}


def _save(fig: Any, out: str | Path, dpi: int = DPI) -> Path:
    out = Path(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    try:
        atomic_write_bytes(out, buf.getvalue())
    except OSError as exc:
        raise MpnasError(f"figure {out}: cannot write ({exc.strerror or exc})") from None
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_step(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _series(rows: Iterable[Row], stage: str, field: str) -> Series:
    """Per domain, the steps and values of one numeric field, in step order.

    A null value (the REINFORCE baseline before its first update) becomes NaN, a gap in the line. When a step
    is logged twice (a resumed run repeats the steps after its last checkpoint) the later row wins.
    """
    by_domain: dict[str, dict[int, float]] = {}
    for row in rows:
        if row.get("stage") != stage or field not in row:
            continue
        step, domain, value = row.get("step"), row.get("domain"), row[field]
        if not _is_step(step) or not isinstance(domain, str):
            continue
        if value is None:
            value = math.nan
        elif not _is_number(value):
            continue
        by_domain.setdefault(domain, {})[step] = float(value)
    return {d: (sorted(v), [v[s] for s in sorted(v)]) for d, v in by_domain.items()}


def _order(found: Iterable[str], domains: Sequence[str] | None) -> list[str]:
    """The given domain order first, then any other domain in the order it first appeared."""
    found = list(found)
    first = [d for d in domains or () if d in found]
    return first + [d for d in found if d not in first]


def _ema(values: Sequence[float]) -> list[float]:
    """Exponential moving average over about a twentieth of the curve: the trend through batch noise."""
    alpha = min(1.0, 20.0 / max(1, len(values)))
    out, acc = [], math.nan
    for v in values:
        acc = v if math.isnan(acc) else acc + alpha * (v - acc)
        out.append(acc)
    return out


def _noisy_lines(ax: Any, series: Series, order: Sequence[str], colors: Mapping[str, Any]) -> None:
    """Raw values faint, their moving average solid: noisy batch metrics stay readable for ten domains."""
    for d in order:
        steps, values = series[d]
        ax.plot(steps, values, color=colors[d], lw=0.7, alpha=0.25)
        ax.plot(steps, _ema(values), color=colors[d], lw=1.6)


def _not_logged(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not logged", transform=ax.transAxes, ha="center", va="center", color="0.45")


def _domain_legend(fig: Any, order: Sequence[str], colors: Mapping[str, Any],
                   extra: Sequence[tuple[str, dict]] = ()) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[d], lw=2) for d in order] + [Line2D([], [], **kw) for _, kw in extra]
    labels = list(order) + [name for name, _ in extra]
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 6), fontsize=8, frameon=False)


# ---------------------------------------------------------------------------------------------------------
# Results.


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
    return _save(fig, out)


def plot_accuracy(results: Mapping[str, Any], out: str | Path) -> Path:
    """Per-domain top-1 with the mean, so the weakest domain is visible at a glance."""
    from matplotlib.figure import Figure

    entries = results.get("domains") or {}
    names = [d for d, r in entries.items() if isinstance(r, Mapping) and _is_number(r.get("top1"))]
    if not names:
        raise NothingToDraw(f"figure {out}: results have no per-domain top-1")
    accs = [float(entries[d]["top1"]) for d in names]
    mean = float(results["mean_top1"]) if _is_number(results.get("mean_top1")) else sum(accs) / len(accs)
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
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------------------
# The merged architecture (the paper's Fig. 3).


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
        codes: list[int] = []
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
    return _save(fig, out, DPI if n <= 6 else 140)  # the small width labels of many lanes need more pixels


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


# ---------------------------------------------------------------------------------------------------------
# Search and training curves.


def _option_label(key: str, value: Any) -> str:
    kind = key.rsplit(".", 1)[-1]
    if kind == "kernel":
        return f"k{value}"
    if kind == "expansion":
        return f"e{value:g}"
    if kind == "se":
        return "se" if value else "no se"
    if kind == "skip":
        return "skip" if value else "keep"
    return f"f{value}"


def _prob_rows(rows: Iterable[Row]) -> dict[str, dict[int, Mapping[str, Any]]]:
    """domain -> step -> probs of the search_probs rows; a repeated step keeps its later row."""
    out: dict[str, dict[int, Mapping[str, Any]]] = {}
    for row in rows:
        step, domain, probs = row.get("step"), row.get("domain"), row.get("probs")
        if row.get("stage") != "search_probs" or not _is_step(step) or not isinstance(domain, str):
            continue
        if isinstance(probs, Mapping):
            out.setdefault(domain, {})[step] = probs
    return out


def _prob(probs: Mapping[str, Any], key: str, index: int) -> float:
    p = probs.get(key)
    if isinstance(p, list) and index < len(p) and _is_number(p[index]):
        return float(p[index])
    return math.nan


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value, NaN counting as smallest (a decision missing from the log)."""
    return max(range(len(values)), key=lambda i: -math.inf if math.isnan(values[i]) else values[i])


def plot_controller_probs(rows: Iterable[Row], space: SearchSpace, out: str | Path, *,
                          domains: Sequence[str] | None = None) -> Path:
    """Per domain, how sure its controller grew of each final choice: the probability over the search steps
    of the option that is most likely at the last logged step (written on the right of each row).

    A row that turns bright early is a decision settled early; one that stays dark was still open at the end.
    Grey labels are decisions inside a layer the controller finally skips, which have no effect; a dash marks a
    decision of `space` that the rows do not log (rows from a search over another space).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    logged = _prob_rows(rows)
    if not logged:
        raise NothingToDraw(f"figure {out}: no search_probs rows in the metrics")
    decisions = space.decisions()
    keys = [d.key for d in decisions]
    if not any(k in probs for steps in logged.values() for probs in steps.values() for k in keys):
        raise NothingToDraw(f"figure {out}: the search_probs rows name none of the decisions of space {space.name!r}")
    order = _order(logged, domains)
    colors = domain_colors(order)
    nrows = math.ceil(len(order) / 4)
    ncols = math.ceil(len(order) / nrows)

    # Placed by hand in inches: hundreds of row labels make a layout engine the slowest part of the report,
    # and labels are plain texts rather than ticks for the same reason.
    panel_w, panel_h = 2.3, 0.11 * len(keys)
    left, label_w, gap, top, row_gap, bottom = 1.0, 0.45, 0.2, 0.55, 0.75, 0.85
    width = left + ncols * (panel_w + label_w + gap)
    height = top + nrows * (panel_h + row_gap) + bottom
    fig = Figure(figsize=(width, height))
    fig.suptitle("Controller distributions during the search", fontsize=10, y=1 - 0.12 / height)
    image = None
    for i, domain in enumerate(order):
        r, c = divmod(i, ncols)
        x0 = left + c * (panel_w + label_w + gap)
        y0 = height - top - (r + 1) * panel_h - r * row_gap
        ax = fig.add_axes((x0 / width, y0 / height, panel_w / width, panel_h / height))
        steps = sorted(logged[domain])
        last = logged[domain][steps[-1]]
        final = [_argmax([_prob(last, d.key, j) for j in range(len(d.options))]) for d in decisions]
        grid = [[_prob(logged[domain][s], d.key, j) for s in steps] for d, j in zip(decisions, final)]
        # Columns are logged steps (indices), labelled with their step numbers: exact even when the last step
        # falls off the logging interval.
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", vmin=0.0, vmax=1.0, cmap="viridis")
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _, s=steps: str(s[int(v)]) if 0 <= v < len(s) else ""))
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        ax.set_title(domain, fontsize=9, color=colors[domain], weight="bold")
        if r == nrows - 1 or i + ncols >= len(order):
            ax.set_xlabel("search step", fontsize=7)
        for y in range(1, len(keys)):
            if keys[y].split(".")[0] != keys[y - 1].split(".")[0]:
                ax.axhline(y - 0.5, color="white", lw=0.8)
        chosen = {d.key: d.options[j] for d, j in zip(decisions, final)}
        labels = ax.get_yaxis_transform()
        for y, (d, j) in enumerate(zip(decisions, final)):
            logged_here = not math.isnan(_prob(last, d.key, j))
            off = not logged_here or (d.skip_key is not None and chosen.get(d.skip_key) is True)
            ax.text(1.02, y, _option_label(d.key, chosen[d.key]) if logged_here else "–", transform=labels,
                    va="center", fontsize=6, color="0.6" if off else "black")
            if c == 0:
                ax.text(-0.02, y, d.key, transform=labels, va="center", ha="right", fontsize=6)
    bar = fig.add_axes((0.3, 0.35 / height, 0.4, 0.12 / height))
    fig.colorbar(image, cax=bar, orientation="horizontal")
    bar.tick_params(labelsize=7)
    bar.set_title("probability of the final choice (labelled on the right; grey: inside a skipped layer)", fontsize=8)
    return _save(fig, out)


def _rl_start(rows: Iterable[Row]) -> tuple[int, int] | None:
    """First step and first RL step when the search began with a warm-up (controllers not learning)."""
    flags = {r["step"]: r["rl_active"] for r in rows
             if r.get("stage") == "search" and _is_step(r.get("step")) and isinstance(r.get("rl_active"), bool)}
    warm = [s for s, on in flags.items() if not on]
    if not warm:
        return None
    active = [s for s, on in flags.items() if on]
    return min(flags), min(active) if active else max(flags)


def plot_rewards(rows: Iterable[Row], out: str | Path, *, domains: Sequence[str] | None = None) -> Path:
    """Reward with its REINFORCE baseline, the sampled paths' quality, the expected cost against the target and
    the controllers' entropy, per domain over the search: whether the controllers learned and converged."""
    from matplotlib.figure import Figure

    rows = list(rows)
    names = ("reward", "baseline", "quality", "cost", "expected_cost", "entropy")
    fields = {f: _series(rows, "search", f) for f in names}
    found = [d for f in fields.values() for d in f]
    if not found:
        raise NothingToDraw(f"figure {out}: no search rows in the metrics")
    order = _order(dict.fromkeys(found), domains)
    colors = domain_colors(order)
    fig = Figure(figsize=(8.5, 9.5), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)

    ax = axes[0]
    for d in order:
        if d in fields["reward"]:
            ax.plot(*fields["reward"][d], color=colors[d], lw=0.7, alpha=0.3)
        if d in fields["baseline"]:
            ax.plot(*fields["baseline"][d], color=colors[d], lw=1.6)
    if not fields["reward"]:
        _not_logged(ax, "reward")
    ax.set_ylabel("reward\n(faint: sampled, solid: baseline)", fontsize=8)

    ax = axes[1]
    _noisy_lines(ax, fields["quality"], [d for d in order if d in fields["quality"]], colors)
    if not fields["quality"]:
        _not_logged(ax, "quality")
    ax.set_ylabel("quality Q\n(val top-1 of the sampled path)", fontsize=8)

    ax = axes[2]
    for d in order:
        if d in fields["cost"]:
            ax.plot(*fields["cost"][d], color=colors[d], lw=0.7, alpha=0.25)
        if d in fields["expected_cost"]:
            ax.plot(*fields["expected_cost"][d], color=colors[d], lw=1.6)
    if fields["cost"] or fields["expected_cost"]:
        ax.axhline(1.0, color="black", ls=":", lw=1)
    else:
        _not_logged(ax, "cost")
    ax.set_ylabel("cost T/T0\n(faint: sampled, solid: expected)", fontsize=8)

    ax = axes[3]
    for d in order:
        if d in fields["entropy"]:
            ax.plot(*fields["entropy"][d], color=colors[d], lw=1.6)
    if not fields["entropy"]:
        _not_logged(ax, "entropy")
    ax.set_ylabel("controller entropy\n(nats)", fontsize=8)
    ax.set_xlabel("search step")

    warm = _rl_start(rows)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if warm:
            ax.axvspan(*warm, color="0.85", alpha=0.6, lw=0)
    extra = [("warm-up: controllers not learning", {"color": "0.8", "lw": 6})] if warm else []
    extra.append(("target T0", {"color": "black", "ls": ":", "lw": 1}))
    _domain_legend(fig, order, colors, extra)
    return _save(fig, out)


def plot_training(rows: Iterable[Row], out: str | Path, *, domains: Sequence[str] | None = None) -> Path:
    """Training loss and ABDP gradient weight h'(L) per domain, and validation top-1: whether the hard domains
    got the weight and whether every domain kept improving."""
    from matplotlib.figure import Figure

    rows = list(rows)
    loss, weight = _series(rows, "train", "loss"), _series(rows, "train", "weight")
    val = _series(rows, "train_eval", "val_top1")
    mean = val.pop(MEAN, None)
    found = list(dict.fromkeys([*loss, *weight, *val]))
    if not found and mean is None:
        raise NothingToDraw(f"figure {out}: no train or train_eval rows in the metrics")
    order = _order(found, domains)
    colors = domain_colors(order)
    fig = Figure(figsize=(8.5, 8.0), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)

    _noisy_lines(axes[0], loss, [d for d in order if d in loss], colors)
    if not loss:
        _not_logged(axes[0], "training loss")
    axes[0].set_ylabel("training loss", fontsize=8)

    _noisy_lines(axes[1], weight, [d for d in order if d in weight], colors)
    if not weight:
        _not_logged(axes[1], "ABDP weight")
    axes[1].set_ylabel("ABDP weight h'(L)", fontsize=8)

    ax = axes[2]
    for d in order:
        if d in val:
            ax.plot(*val[d], color=colors[d], lw=1.3, marker="o", ms=2.5)
    extra = []
    if mean is not None:
        ax.plot(*mean, color="black", lw=2, ls="--")
        steps, values = mean
        best = _argmax(values)
        ax.plot([steps[best]], [values[best]], marker="*", ms=12, color="black")
        late = steps[best] > (steps[0] + steps[-1]) / 2
        ax.annotate(f"best mean {values[best]:.1f} at step {steps[best]}", (steps[best], values[best]),
                    textcoords="offset points", xytext=(-8 if late else 8, 8), ha="right" if late else "left",
                    fontsize=8)
        extra.append(("mean over domains", {"color": "black", "lw": 2, "ls": "--"}))
    if not val and mean is None:
        _not_logged(ax, "validation top-1")
    ax.set_ylabel("val top-1 (%)", fontsize=8)
    ax.set_xlabel("training step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    _domain_legend(fig, order, colors, extra)
    return _save(fig, out)
