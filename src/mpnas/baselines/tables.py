"""What a bench directory's finished runs say: aggregates over seeds, paired differences against MPNAS, the
cost front, `bench.json`, the Table-2-style `bench.md` and its figures.

Everything here reads run directories and writes tables; nothing trains. `mpnas bench` calls `write_bench`
when it stops, and so can anyone with a bench directory (a bench split over machines, say).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mpnas.analysis.stats import paired_difference
from mpnas.baselines.bench_figures import draw_bench_figures
from mpnas.baselines.names import FRONT_PREFIX, LABELS, METHODS, label, ordered
from mpnas.config import RunConfig
from mpnas.errors import MpnasError
from mpnas.io import atomic_write_text, read_json, write_json
from mpnas.rundir import ARCH, METRICS, finished_results

LOSS_VARIANTS = ("uwl", "empirical", "x", "x2", "exp", "exp_inc", "exp_dec")
LOSS_LABELS = {"uwl": "UWL", "empirical": "Empirical", "x": "x", "x2": "x^2", "exp": "exp(x/w)",
               "exp_inc": "exp(x/w), w increasing", "exp_dec": "exp(x/w), w decreasing"}
TABLE4_METHODS = ("mdsp-nas", "sp-mn", "mrp", "mpnas")
# Further paired comparisons (first minus second) drawn when both methods ran: the gradient strategy against random
# paths of its own cost and of MPNAS's, and the single-shot model against the same search trained from scratch.
PAIRS = (("mpnas-gradient", "mrp-matched-gradient"), ("mpnas-gradient", "mrp-matched"), ("mpnas-gradient", "mpnas"),
         ("mpnas-gradient-oneshot", "mrp-matched-gradient"), ("mpnas-gradient-oneshot", "mpnas-gradient"))


# ---------------------------------------------------------------------------------------------------------
# Aggregation.


def _stats(values: list[float]) -> dict[str, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": round(m, 3), "std": round(sd, 3)}


def final_entropies(run_dir: Path) -> dict[str, float]:
    """Each controller's entropy (nats) at the last logged search step, by domain; {} when the run did not search."""
    path = run_dir / METRICS
    if not path.is_file():
        return {}
    last: dict[str, tuple[int, float]] = {}
    with path.open() as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash is not a result
                continue
            if row.get("stage") == "search" and "entropy" in row:
                if row["domain"] not in last or row["step"] >= last[row["domain"]][0]:
                    last[row["domain"]] = (row["step"], row["entropy"])
    return {d: round(v, 3) for d, (_, v) in last.items()}


def _per_seed(run: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    names = list(run["domains"])
    row = {"seed": run.get("seed"), "mean_top1": run["mean_top1"], "top1": {d: run["domains"][d]["top1"] for d in names},
           "params_total": run["params_total"], "macs_total": run["macs_total"]}
    times = run.get("wall_time_s")
    if isinstance(times, dict):
        row["wall_time_s"] = times
    if run_dir is None:
        return row
    entropy = final_entropies(run_dir)
    if entropy:
        row["entropy"] = entropy
    arch = run_dir / ARCH
    if str(run.get("method", "")).startswith("mrp-matched") and arch.is_file():
        row["matched"] = read_json(arch, "architecture file").get("meta", {}).get("matched")
    return row


def aggregate(runs: list[dict[str, Any]], run_dirs: list[Path] | None = None) -> dict[str, Any]:
    """Per-seed values, mean and std of a method's results over seeds."""
    names = list(runs[0]["domains"])
    dirs: list[Path | None] = list(run_dirs) if run_dirs else [None] * len(runs)
    return {
        "seeds": [r.get("seed") for r in runs],
        "per_seed": [_per_seed(r, p) for r, p in zip(runs, dirs)],
        "mean_top1": _stats([r["mean_top1"] for r in runs]),
        "top1": {d: _stats([r["domains"][d]["top1"] for r in runs]) for d in names},
        "params_total": _stats([r["params_total"] for r in runs]),
        "macs_total": _stats([r["macs_total"] for r in runs]),
        "num_classes": {d: runs[0]["domains"][d]["num_classes"] for d in names},
        "results": runs[0] if len(runs) == 1 else None,
    }


def collect(root: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not root.is_dir():
        return out
    for method_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        pairs = [(r, s) for s in sorted(method_dir.glob("seed*")) if (r := finished_results(s)) is not None]
        if pairs:
            out[method_dir.name] = aggregate([r for r, _ in pairs], [s for _, s in pairs])
    return out


def paired_against_mpnas(methods: dict[str, Any], level: float = 0.95) -> dict[str, Any]:
    """For every method that shares seeds with MPNAS: MPNAS minus the method, per seed, on mean top-1 and on each
    domain, with a t interval; and the method's parameters and MACs relative to MPNAS's."""
    if "mpnas" not in methods:
        return {}
    ref = methods["mpnas"]
    return {m: _paired(ref, r, level) for m, r in methods.items() if m != "mpnas" and set(r["seeds"]) & set(ref["seeds"])}


def paired_pairs(methods: dict[str, Any], pairs: tuple[tuple[str, str], ...] = PAIRS, level: float = 0.95) -> dict[str, Any]:
    """`PAIRS` that both ran on shared seeds, keyed "a - b": a minus b, as `paired_against_mpnas`."""
    return {f"{a} - {b}": {"a": a, "b": b, **_paired(methods[a], methods[b], level)} for a, b in pairs
            if a in methods and b in methods and set(methods[a]["seeds"]) & set(methods[b]["seeds"])}


def _paired(ref: dict[str, Any], r: dict[str, Any], level: float) -> dict[str, Any]:
    """`ref` minus `r` per shared seed, on mean top-1 and each domain, with a t interval; r's cost relative to ref's."""
    by_seed = lambda run, key: {row["seed"]: row[key] for row in run["per_seed"]}  # noqa: E731
    entry = {"mean_top1": paired_difference(by_seed(ref, "mean_top1"), by_seed(r, "mean_top1"), level).to_dict(), "top1": {}}
    for d in ref["top1"]:
        a = {row["seed"]: row["top1"][d] for row in ref["per_seed"]}
        b = {row["seed"]: row["top1"][d] for row in r["per_seed"]}
        entry["top1"][d] = paired_difference(a, b, level).to_dict()
    entry["params_ratio"] = round(r["params_total"]["mean"] / ref["params_total"]["mean"], 3)
    entry["macs_ratio"] = round(r["macs_total"]["mean"] / ref["macs_total"]["mean"], 3)
    return entry


def write_bench(out: Path, cfg: RunConfig | None = None, methods_known: tuple[str, ...] = ()) -> dict[str, Any]:
    known = set(methods_known or METHODS)
    collected = collect(out)
    methods = {m: v for m, v in collected.items() if m in known}
    front = {m: v for m, v in collected.items() if m.startswith(FRONT_PREFIX)}
    ablation = collect(out / "ablate-loss")
    if not methods and not front:
        raise MpnasError(f"bench directory {out}: no finished runs to tabulate")
    bench: dict[str, Any] = {"methods": methods, "front": front, "paired": paired_against_mpnas({**methods, **front}),
                             "pairs": paired_pairs(methods), "ablate_loss": ablation}
    if cfg is not None:
        bench["data"], bench["budget"] = cfg.data.spec, cfg.budget
    write_json(out / "bench.json", bench)
    figures = draw_bench_figures(out / "figures", methods, front)
    atomic_write_text(out / "bench.md", bench_markdown(bench, figures))
    return bench


# ---------------------------------------------------------------------------------------------------------
# bench.md


def _fmt(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}" if s["std"] else f"{s['mean']:.{digits}f}"


def _fmt_paired(p: dict[str, Any]) -> str:
    if p["low"] is None:
        return f"{p['mean']:+.2f} (n = 1, no interval)"
    mark = "" if p["excludes_zero"] else ", includes 0"
    return f"{p['mean']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]{mark}"


def _paired_row(name: str, p: dict[str, Any]) -> str:
    """One row of a paired table: seeds, the mean top-1 difference with its interval, the worst domain, cost ratios."""
    worst = min(p["top1"], key=lambda d: p["top1"][d]["mean"])
    return (f"| {name} | {p['mean_top1']['n']} | {_fmt_paired(p['mean_top1'])} | {worst} {p['top1'][worst]['mean']:+.1f} | "
            f"{p['params_ratio']:.2f} | {p['macs_ratio']:.2f} |")


def bench_markdown(bench: dict[str, Any], figures: list[str]) -> str:
    methods = {**bench["methods"], **bench.get("front", {})}
    order = ordered(bench["methods"]) + sorted(bench.get("front", {}))
    domains = list(next(iter(methods.values()))["top1"])
    ref = methods.get("sp-mn")
    lines = ["# Benchmark: MPNAS against the paper's baselines", ""]
    if "data" in bench:
        seeds = sorted({s for m in methods.values() for s in m["seeds"]})
        lines += [f"Data `{bench['data']}`, budget `{bench['budget']}`. Top-1 in percent, mean ± std over seeds "
                  f"(seeds: {', '.join(str(s) for s in seeds)}; n per method in the table); no ± where the seeds agree.", ""]
    lines += [
        "Parameters are relative to SP-MN (one backbone and a head per domain) when SP-MN ran; MACs are those of "
        "classifying one image of every domain (each domain's path, summed).", "",
        "| method | n | params | params (M) | MACs (M) | " + " | ".join(domains) + " | mean |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(domains) + "---:|",
    ]
    for m in order:
        r = methods[m]
        params = r["params_total"]["mean"]
        rel = f"{params / ref['params_total']['mean']:.2f}x" if ref else "-"
        cells = [_fmt(r["top1"][d]) for d in domains]
        macs = r["macs_total"]["mean"] / 1e6
        lines.append(f"| {label(m)} | {len(r['seeds'])} | {rel} | {params / 1e6:.2f} | {macs:.2f} | " + " | ".join(cells)
                     + f" | **{_fmt(r['mean_top1'], 2)}** |")
    paired = bench.get("paired") or {}
    if paired:
        lines += ["", "## Paired by seed: MPNAS minus each method", "",
                  "Mean top-1 difference in points over the seeds both ran, with a 95% t interval; positive means MPNAS "
                  "is more accurate. An interval that includes 0 is a difference inside the seed noise.", "",
                  "| method | seeds | MPNAS − method, mean top-1 | worst domain | method's params / MPNAS's | MACs / MPNAS's |",
                  "|---|---:|---|---|---:|---:|"]
        lines += [_paired_row(label(m), paired[m]) for m in order if m in paired]
        domains_ = list(next(iter(paired.values()))["top1"])
        lines += ["", "Per domain, MPNAS minus each method (mean over the shared seeds [95% t interval]):", "",
                  "| method | " + " | ".join(domains_) + " |", "|---|" + "---|" * len(domains_)]
        for m in [x for x in order if x in paired]:
            cells = []
            for d in domains_:
                q = paired[m]["top1"][d]
                cells.append(f"{q['mean']:+.1f}" if q["low"] is None else f"{q['mean']:+.1f} [{q['low']:+.1f}, {q['high']:+.1f}]")
            lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    pairs = bench.get("pairs") or {}
    if pairs:
        lines += ["", "## Further paired comparisons", "",
                  "First method minus second, mean top-1 over the seeds both ran [95% t interval]; cost ratios are the "
                  "second's over the first's.", "",
                  "| comparison | seeds | difference, mean top-1 | worst domain | params ratio | MACs ratio |",
                  "|---|---:|---|---|---:|---:|"]
        lines += [_paired_row(f"{label(p['a'])} − {label(p['b'])}", p) for p in pairs.values()]
    lines += _search_lines(methods, order)
    lines.append("")
    lines += [f"![{f}](figures/{f})" for f in figures]
    lines += _ablation_lines(bench, domains)
    lines.append("")
    return "\n".join(lines)


def _search_lines(methods: dict[str, Any], order: list[str]) -> list[str]:
    """Wall time of search against training, and the controllers' final entropies, for the searched methods."""
    rows = []
    for m in order:
        seeds = [s for s in methods[m]["per_seed"] if isinstance(s.get("wall_time_s"), dict) and "search" in s["wall_time_s"]]
        if not seeds:
            continue
        search = sum(s["wall_time_s"]["search"] for s in seeds) / len(seeds)
        train = sum(s["wall_time_s"].get("train", 0.0) for s in seeds) / len(seeds)
        ent = [v for s in seeds for v in (s.get("entropy") or {}).values()]
        ratio = f"{search / train:.2f}" if train else "-"
        ent_cell = f"{min(ent):.1f} to {max(ent):.1f}" if ent else "-"
        rows.append(f"| {label(m)} | {search:.0f} | {train:.0f} | {ratio} | {ent_cell} |")
    matched = [s["matched"] for s in methods.get("mrp-matched", {}).get("per_seed", []) if s.get("matched")]
    out = []
    if rows:
        out += ["", "## Search cost", "",
                "Mean over seeds of the stage wall times (seconds, as the runs were scheduled) and the controllers' entropy "
                "at the last search step (nats, over domains and seeds).", "",
                "| method | search (s) | train (s) | search / train | final entropy |", "|---|---:|---:|---:|---|"] + rows
    if matched:
        draws = [v["draws"] for m in matched for v in m.values()]
        ratios = [v["ratio"] for m in matched for v in m.values()]
        out += ["", f"Cost matching (MRP, cost-matched): {len(draws)} paths drawn, {min(draws)} to {max(draws)} draws each "
                f"(median {sorted(draws)[len(draws) // 2]}); cost / MPNAS path cost {min(ratios):.3f} to {max(ratios):.3f}."]
    return out


def _ablation_lines(bench: dict[str, Any], domains: list[str]) -> list[str]:
    methods = bench["methods"]
    ab = bench.get("ablate_loss") or {}
    if not ab:
        return []
    lines = ["", "## Loss ablation: MPNAS with each loss (Table 5)", "",
             "| loss | " + " | ".join(domains) + " | mean |", "|---|" + "---:|" * (len(domains) + 1)]
    for kind in LOSS_VARIANTS:
        r = methods.get("mpnas") if kind == "exp_dec" else ab.get(kind)
        if r is None:
            continue
        cells = " | ".join(_fmt(r["top1"][d]) for d in domains)
        lines.append(f"| {LOSS_LABELS[kind]} | {cells} | **{_fmt(r['mean_top1'], 2)}** |")
    rows = []
    for m in TABLE4_METHODS:
        with_abdp = methods.get(m)
        without = ab.get("x") if m == "mpnas" else ab.get(f"{m}+x")
        if with_abdp and without:
            rows.append((m, with_abdp, without))
    if rows:
        lines += ["", "## With and without ABDP (Table 4): each architecture retrained with the identity loss", "",
                  "| domain | " + " | ".join(f"{LABELS[m]} | {LABELS[m]} + ABDP" for m, _, _ in rows) + " |",
                  "|---|" + "---:|" * (2 * len(rows))]
        for d in domains:
            lines.append(f"| {d} | " + " | ".join(f"{_fmt(wo['top1'][d])} | {_fmt(w['top1'][d])}" for _, w, wo in rows) + " |")
        means = " | ".join(f"{_fmt(wo['mean_top1'], 2)} | {_fmt(w['mean_top1'], 2)}" for _, w, wo in rows)
        lines.append(f"| **mean** | {means} |")
    return lines


__all__ = ["LOSS_VARIANTS", "PAIRS", "aggregate", "bench_markdown", "collect", "paired_against_mpnas", "paired_pairs",
           "write_bench"]
