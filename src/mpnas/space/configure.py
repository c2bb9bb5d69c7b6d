"""`mpnas configure`: map a user's budget and domain preferences to a width configuration of a slimmable run.

The measured table (`slim_table.json`, written after slimmable training by `mpnas.train.slimmable.profile`,
which also runs this search to measure its choices; read from a run by `mpnas.rundir.read_slim_table`)
holds validation top-1 per domain for a few dozen width configurations. Each domain's top-1 depends only on its
own path's widths, so every row is one sample per domain. The search predicts a domain's top-1 with a linear
model of its multipliers fitted on the rows, with non-negative slopes (a wider unit is never predicted to
hurt); the reported prediction is the measured figure where the table holds that domain's multipliers.
Costs are exact, from geometry (`mpnas.space.widths.widths_cost`); latency is a per-domain line through the
measured batch-1 latencies of the uniform widths, since slimmed widths are not in a per-op table.

The search is greedy, as seed 003's is simple and fast: from the full widths, repeatedly take the narrowing
step (one unit of one domain, or one unit of every domain at once, which is what lowers the stored parameters
of a shared node) that loses the least preference-weighted predicted top-1 per unit of cost saved, until the
constraint holds; then widen back any unit that still fits, best gain first. A domain with a larger weight
loses more objective for the same narrowing, so it keeps its widths longer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mpnas.errors import MpnasError
from mpnas.space.arch import Architecture
from mpnas.space.cost import geometry_cost
from mpnas.space.widths import STEM, Widths, slim_path, width_units, widths_cost

CONFIG_FORMAT = "mpnas.width_config/1"
TABLE_FORMAT = "mpnas.slim_table/1"  # the measured table (`slim_table.json` of a run, `mpnas.rundir.read_slim_table`)
KINDS = {"macs": "MACs", "params": "parameters", "latency": "ms"}


@dataclass
class Table:
    """The fitted predictor and latency model of a slimmable run's measured table."""

    units: list[str]
    options: list[float]
    coef: dict[str, np.ndarray]  # per domain: intercept, then one coefficient per unit
    loo_rmse: dict[str, float]  # leave-one-out error of the predictor, top-1 points
    latency: dict[str, tuple[float, float]]  # per domain: ms at 0 MACs, ms per MAC
    rows: list[dict[str, Any]]
    # Per (domain, its multipliers): the mean measured top-1 where the table has that configuration.
    measured: dict[tuple[str, tuple[float, ...]], float]

    @staticmethod
    def from_dict(data: Any, arch: Architecture, where: str) -> Table:
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT or not isinstance(data.get("rows"), list):
            raise MpnasError(f"{where}: not a slim table (format {TABLE_FORMAT!r} with 'rows')")
        units = width_units(arch.space)
        if data.get("units") != units:
            raise MpnasError(f"{where}: units {data.get('units')} are not this architecture's {units}")
        try:
            options = [float(m) for m in data["multipliers"]]
            rows = [r for r in data["rows"] if r.get("recalibrated", True)]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MpnasError(f"{where}: needs 'multipliers' (numbers) and 'rows' (objects)") from None
        if len(rows) < 2:
            raise MpnasError(f"{where}: {len(rows)} measured row(s); the predictor needs at least 2")
        coef, loo = {}, {}
        for d in arch.domains:
            try:
                X = np.array([[1.0] + [float(r["widths"][d][u]) for u in units] for r in rows])
                y = np.array([float(r["val_top1"][d]) for r in rows])
            except (KeyError, TypeError, ValueError):
                raise MpnasError(f"{where}: a row lacks domain {d!r} or a number for it (was the table written for "
                                 "another run?)") from None
            coef[d] = _fit(X, y)
            errors = [y[i] - X[i] @ _fit(np.delete(X, i, 0), np.delete(y, i)) for i in range(len(y))] if len(y) > 2 else []
            loo[d] = float(np.sqrt(np.mean(np.square(errors)))) if errors else float("nan")
        seen: dict[tuple[str, tuple[float, ...]], list[float]] = {}
        for r in rows:
            for d in arch.domains:
                seen.setdefault((d, tuple(r["widths"][d][u] for u in units)), []).append(r["val_top1"][d])
        measured = {k: sum(v) / len(v) for k, v in seen.items()}
        latency = {}
        for d, points in (data.get("latency_ms") or {}).items():
            try:
                macs, ms = np.array(points, dtype=float).reshape(-1, 2).T
            except (TypeError, ValueError):
                raise MpnasError(f"{where}: latency_ms of domain {d!r} must be [MACs, ms] pairs") from None
            slope, intercept = np.polyfit(macs, ms, 1) if len(set(macs)) > 1 else (0.0, float(ms.mean()))
            latency[d] = (float(intercept), float(max(slope, 0.0)))
        return Table(units, options, coef, loo, latency, rows, measured)

    def predict(self, domain: str, multipliers: Mapping[str, float], measured: bool = True) -> float:
        """The linear model's top-1, or with `measured` the table's where it holds these multipliers for the
        domain. The search uses the model alone: mixing in measurements would make its objective jump
        wherever a configuration happens to have been measured."""
        key = (domain, tuple(multipliers[u] for u in self.units))
        if measured and key in self.measured:
            return self.measured[key]
        c = self.coef[domain]
        return float(c[0] + sum(c[i + 1] * multipliers[u] for i, u in enumerate(self.units)))

    def latency_ms(self, domain: str, macs: int) -> float:
        a, b = self.latency[domain]
        return a + b * macs


def _fit(X: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """Least squares with a small ridge on the slopes, then negative slopes dropped and the rest refitted."""
    active = list(range(1, X.shape[1]))
    while True:
        cols = [0, *active]
        A = X[:, cols]
        reg = ridge * np.eye(len(cols))
        reg[0, 0] = 0.0
        sol = np.linalg.solve(A.T @ A + reg, A.T @ y)
        coef = np.zeros(X.shape[1])
        coef[cols] = sol
        negative = [j for j in active if coef[j] < 0]
        if not negative:
            return coef
        active = [j for j in active if j not in negative]


def preference_weights(domains: list[str], prefer: Mapping[str, float]) -> dict[str, float]:
    """Each domain's weight (1 unless preferred), scaled to a mean of 1."""
    unknown = sorted(set(prefer) - set(domains))
    if unknown:
        raise MpnasError(f"--prefer: unknown domain(s) {', '.join(unknown)} (the run has {', '.join(domains)})")
    for d, w in prefer.items():
        if not w > 0:
            raise MpnasError(f"--prefer {d}: weight must be positive, got {w}")
    raw = {d: float(prefer.get(d, 1.0)) for d in domains}
    mean = sum(raw.values()) / len(raw)
    return {d: w / mean for d, w in raw.items()}


def parse_prefer(text: str | None) -> dict[str, float]:
    """`domain=weight,...` into a mapping; a malformed item is an error that quotes it."""
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise MpnasError(f"--prefer: {item.strip()!r} is not domain=weight (e.g. digits=3)") from None
    return out


def configure(arch: Architecture, table: Table, kind: str, limit: float, prefer: Mapping[str, float],
              bn_per_domain: bool = True) -> dict[str, Any]:
    """The width configuration for `kind` (macs | params | latency) at most `limit`, with `prefer`'s weights."""
    if kind not in KINDS:
        raise MpnasError(f"configure: unknown constraint {kind!r} (macs, params, latency)")
    if kind == "latency" and set(table.latency) != set(arch.domains):
        raise MpnasError("configure --max-latency-ms: the slim table has no latency measurements for every domain")
    t0 = time.perf_counter()
    weights = preference_weights(arch.domains, prefer)
    units, options = table.units, table.options
    space = arch.space
    domain_cache: dict[tuple[str, tuple[float, ...]], tuple[int, int]] = {}

    def domain_cost(d: str, mults: tuple[float, ...]) -> tuple[int, int]:
        key = (d, mults)
        if key not in domain_cache:
            c = geometry_cost(space.geometry(slim_path(space, arch.paths[d], dict(zip(units, mults)))), arch.num_classes[d])
            domain_cache[key] = (c.params, c.macs)
        return domain_cache[key]

    def cost(state: dict[str, tuple[float, ...]]) -> float:
        if kind == "macs":
            return float(sum(domain_cost(d, s)[1] for d, s in state.items()))
        if kind == "latency":
            return sum(table.latency_ms(d, domain_cost(d, s)[1]) for d, s in state.items())
        return float(widths_cost(arch, _widths(state, units), bn_per_domain)[0].params)

    def objective(state: dict[str, tuple[float, ...]]) -> float:
        return sum(weights[d] * table.predict(d, dict(zip(units, s)), measured=False) for d, s in state.items())

    def moves(state: dict[str, tuple[float, ...]], step: int) -> list[dict[str, tuple[float, ...]]]:
        out = []
        for i in range(len(units)):
            tied = dict(state)
            for d in arch.domains:
                j = options.index(state[d][i]) + step
                if 0 <= j < len(options):
                    s = state[d][:i] + (options[j],) + state[d][i + 1:]
                    out.append({**state, d: s})
                    tied[d] = s
            if tied != state:
                out.append(tied)
        return out

    smallest = {d: (options[0],) * len(units) for d in arch.domains}
    floor = cost(smallest)
    if floor > limit:
        raise MpnasError(f"configure: {_fmt(kind, limit)} cannot be met; the smallest configuration (every unit at "
                         f"{options[0]}) costs {_fmt(kind, floor)}")
    state = {d: (options[-1],) * len(units) for d in arch.domains}
    current_cost, current_obj = cost(state), objective(state)
    while current_cost > limit:
        best = None
        for new in moves(state, -1):
            saved = current_cost - cost(new)
            if saved <= 0:
                continue
            key = ((current_obj - objective(new)) / saved, -saved)
            if best is None or key < best[0]:
                best = (key, new)
        if best is None:  # cannot happen while the smallest configuration fits; kept as a guard
            raise MpnasError(f"configure: no narrowing step lowers the cost below {_fmt(kind, limit)}")
        state = best[1]
        current_cost, current_obj = cost(state), objective(state)
    while True:
        widen: tuple[float, dict[str, tuple[float, ...]]] | None = None  # gain per unit of cost, the state
        for new in moves(state, +1):
            c = cost(new)
            gain = objective(new) - current_obj
            if c <= limit and gain > 1e-9 and (widen is None or gain / max(c - current_cost, 1e-9) > widen[0]):
                widen = (gain / max(c - current_cost, 1e-9), new)
        if widen is None:
            break
        state = widen[1]
        current_cost, current_obj = cost(state), objective(state)

    widths = _widths(state, units)
    total, per_domain = widths_cost(arch, widths, bn_per_domain)
    slim = {d: slim_path(space, arch.paths[d], widths.multipliers[d]) for d in arch.domains}
    predicted = {d: round(table.predict(d, widths.multipliers[d]), 3) for d in arch.domains}
    out: dict[str, Any] = {
        "format": CONFIG_FORMAT,
        "constraint": {"kind": kind, "limit": limit},
        "widths": widths.to_dict(),
        "macs_total": total.macs,
        "params_total": total.params,
        "mean_top1": round(sum(predicted.values()) / len(predicted), 3),
        "mean_top1_predicted": round(sum(predicted.values()) / len(predicted), 3),
        "domains": {
            d: {
                "weight": round(weights[d], 4),
                "top1_predicted": predicted[d],
                "predictor_loo_rmse": round(table.loo_rmse[d], 3),
                "macs": per_domain[d].macs,
                "params": per_domain[d].params,
                "filters": {STEM: slim[d].stem_filters,
                            **{u: slim[d].blocks[int(u[1:])].filters for u in units if u != STEM}},
            }
            for d in arch.domains
        },
        "search_s": round(time.perf_counter() - t0, 3),
    }
    if set(table.latency) == set(arch.domains):
        out["latency_ms_predicted"] = round(sum(table.latency_ms(d, per_domain[d].macs) for d in arch.domains), 3)
    return out


def _widths(state: Mapping[str, tuple[float, ...]], units: list[str]) -> Widths:
    return Widths({d: dict(zip(units, s)) for d, s in state.items()})


def _fmt(kind: str, value: float) -> str:
    if kind == "latency":
        return f"{value:.3f} ms"
    return f"{value / 1e6:.3f} M {KINDS[kind]}"


def add_measured(config: dict[str, Any], top1: Mapping[str, float], split: str) -> None:
    """Record measured per-domain top-1 (and their mean) beside the predicted ones."""
    for d, v in top1.items():
        config["domains"][d][f"top1_measured_{split}"] = round(v, 3)
    mean = round(sum(top1.values()) / len(top1), 3)
    config[f"mean_top1_measured_{split}"] = mean
    config["mean_top1"] = mean

