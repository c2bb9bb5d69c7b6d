"""What the report's figures share: the PNG writer, the colour of each domain, and reading metric rows.

Every figure family (`results`, `architecture`, `curves`) draws on bare `Figure`s with these helpers, so a
domain has the same colour in every figure of a report and every figure is written the same way.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from mpnas.errors import MpnasError
from mpnas.io import atomic_write_bytes

DPI = 110
MEAN = "__mean__"  # the train_eval rows' name for the mean over domains

Row = Mapping[str, Any]


class NothingToDraw(MpnasError):
    """The input holds nothing this figure can show: a report notes it in place of the figure."""


Series = dict[str, tuple[list[int], list[float]]]


def domain_colors(domains: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per domain: tab10 up to ten domains (the decathlon), tab20 beyond."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(domains) <= 10 else "tab20"]
    return {d: cmap(i % cmap.N) for i, d in enumerate(domains)}


def save(fig: Any, out: str | Path, dpi: int = DPI) -> Path:
    out = Path(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    try:
        atomic_write_bytes(out, buf.getvalue())
    except OSError as exc:
        raise MpnasError(f"figure {out}: cannot write ({exc.strerror or exc})") from None
    return out


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_step(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def series_of(rows: Iterable[Row], stage: str, field: str) -> Series:
    """Per domain, the steps and values of one numeric field, in step order.

    A null value (the REINFORCE baseline before its first update) becomes NaN, a gap in the line. When a step
    is logged twice (a resumed run repeats the steps after its last checkpoint) the later row wins.
    """
    by_domain: dict[str, dict[int, float]] = {}
    for row in rows:
        if row.get("stage") != stage or field not in row:
            continue
        step, domain, value = row.get("step"), row.get("domain"), row[field]
        if not is_step(step) or not isinstance(domain, str):
            continue
        if value is None:
            value = math.nan
        elif not is_number(value):
            continue
        by_domain.setdefault(domain, {})[step] = float(value)
    return {d: (sorted(v), [v[s] for s in sorted(v)]) for d, v in by_domain.items()}


def domain_order(found: Iterable[str], domains: Sequence[str] | None) -> list[str]:
    """The given domain order first, then any other domain in the order it first appeared."""
    found = list(found)
    first = [d for d in domains or () if d in found]
    return first + [d for d in found if d not in first]


def ema(values: Sequence[float]) -> list[float]:
    """Exponential moving average over about a twentieth of the curve: the trend through batch noise."""
    alpha = min(1.0, 20.0 / max(1, len(values)))
    out, acc = [], math.nan
    for v in values:
        acc = v if math.isnan(acc) else acc + alpha * (v - acc)
        out.append(acc)
    return out


def noisy_lines(ax: Any, series: Series, order: Sequence[str], colors: Mapping[str, Any]) -> None:
    """Raw values faint, their moving average solid: noisy batch metrics stay readable for ten domains."""
    for d in order:
        steps, values = series[d]
        ax.plot(steps, values, color=colors[d], lw=0.7, alpha=0.25)
        ax.plot(steps, ema(values), color=colors[d], lw=1.6)


def not_logged(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not logged", transform=ax.transAxes, ha="center", va="center", color="0.45")


def domain_legend(fig: Any, order: Sequence[str], colors: Mapping[str, Any],
                   extra: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[d], lw=2) for d in order] + [Line2D([], [], **kw) for _, kw in extra]
    labels = list(order) + [name for name, _ in extra]
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 6), fontsize=8, frameon=False)


__all__ = ["DPI", "MEAN", "NothingToDraw", "Row", "Series", "domain_colors", "domain_legend", "domain_order", "ema",
           "is_number", "is_step", "noisy_lines", "not_logged", "save", "series_of"]
