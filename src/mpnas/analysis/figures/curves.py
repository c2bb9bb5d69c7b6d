"""Curves of a run's search and training from metrics.jsonl: controller probabilities, rewards, training loss
and validation top-1."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mpnas.analysis.figures.common import (
    MEAN,
    NothingToDraw,
    Row,
    domain_colors,
    domain_legend,
    domain_order,
    is_number,
    is_step,
    noisy_lines,
    not_logged,
    save,
    series_of,
)
from mpnas.space.space import SearchSpace


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
        if row.get("stage") != "search_probs" or not is_step(step) or not isinstance(domain, str):
            continue
        if isinstance(probs, Mapping):
            out.setdefault(domain, {})[step] = probs
    return out


def _prob(probs: Mapping[str, Any], key: str, index: int) -> float:
    p = probs.get(key)
    if isinstance(p, list) and index < len(p) and is_number(p[index]):
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
    order = domain_order(logged, domains)
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
    assert image is not None  # at least one domain was logged, or NothingToDraw was raised above
    fig.colorbar(image, cax=bar, orientation="horizontal")
    bar.tick_params(labelsize=7)
    bar.set_title("probability of the final choice (labelled on the right; grey: inside a skipped layer)", fontsize=8)
    return save(fig, out)


def _rl_start(rows: Iterable[Row]) -> tuple[int, int] | None:
    """First step and first RL step when the search began with a warm-up (controllers not learning)."""
    flags = {r["step"]: r["rl_active"] for r in rows
             if r.get("stage") == "search" and is_step(r.get("step")) and isinstance(r.get("rl_active"), bool)}
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
    fields = {f: series_of(rows, "search", f) for f in names}
    found = [d for f in fields.values() for d in f]
    if not found:
        raise NothingToDraw(f"figure {out}: no search rows in the metrics")
    order = domain_order(dict.fromkeys(found), domains)
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
        not_logged(ax, "reward")
    ax.set_ylabel("reward\n(faint: sampled, solid: baseline)", fontsize=8)

    ax = axes[1]
    noisy_lines(ax, fields["quality"], [d for d in order if d in fields["quality"]], colors)
    if not fields["quality"]:
        not_logged(ax, "quality")
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
        not_logged(ax, "cost")
    ax.set_ylabel("cost T/T0\n(faint: sampled, solid: expected)", fontsize=8)

    ax = axes[3]
    for d in order:
        if d in fields["entropy"]:
            ax.plot(*fields["entropy"][d], color=colors[d], lw=1.6)
    if not fields["entropy"]:
        not_logged(ax, "entropy")
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
    domain_legend(fig, order, colors, extra)
    return save(fig, out)


def plot_training(rows: Iterable[Row], out: str | Path, *, domains: Sequence[str] | None = None) -> Path:
    """Training loss and ABDP gradient weight h'(L) per domain, and validation top-1: whether the hard domains
    got the weight and whether every domain kept improving."""
    from matplotlib.figure import Figure

    rows = list(rows)
    loss, weight = series_of(rows, "train", "loss"), series_of(rows, "train", "weight")
    val = series_of(rows, "train_eval", "val_top1")
    mean = val.pop(MEAN, None)
    found = list(dict.fromkeys([*loss, *weight, *val]))
    if not found and mean is None:
        raise NothingToDraw(f"figure {out}: no train or train_eval rows in the metrics")
    order = domain_order(found, domains)
    colors = domain_colors(order)
    fig = Figure(figsize=(8.5, 8.0), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)

    noisy_lines(axes[0], loss, [d for d in order if d in loss], colors)
    if not loss:
        not_logged(axes[0], "training loss")
    axes[0].set_ylabel("training loss", fontsize=8)

    noisy_lines(axes[1], weight, [d for d in order if d in weight], colors)
    if not weight:
        not_logged(axes[1], "ABDP weight")
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
        not_logged(ax, "validation top-1")
    ax.set_ylabel("val top-1 (%)", fontsize=8)
    ax.set_xlabel("training step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    domain_legend(fig, order, colors, extra)
    return save(fig, out)
