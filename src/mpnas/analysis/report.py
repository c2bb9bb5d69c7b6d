"""`report.md` and `figures/` for a run directory: what was found, how it scores, and how the search and
training went, readable without opening any JSON.

The report reads only files: architecture.json (search), results.json (evaluate), metrics.jsonl (every stage),
config.yaml and, for a slimmable run, slim_table.json (`mpnas.analysis.slimmable`). A run without search or
training rows (a baseline) gets the figures it can have and a note in place of the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpnas.analysis import figures as f
from mpnas.analysis.figures import NothingToDraw
from mpnas.analysis.metrics import decathlon_points
from mpnas.analysis.nodes import NodeUse, format_path, node_table
from mpnas.analysis.slimmable import SLIM_FIGURE, plot_slimmable, slimmable_lines
from mpnas.errors import MpnasError
from mpnas.io import atomic_write_text, read_json, read_jsonl
from mpnas.rundir import ARCH, CONFIG, FIGURES, METRICS, REPORT, RESULTS, SLIM_TABLE
from mpnas.space.arch import Architecture

_PRODUCERS = {ARCH: "mpnas search --out", RESULTS: "mpnas evaluate --run"}  # each with the run directory


@dataclass(frozen=True)
class _Figure:
    file: str
    caption: str
    missing: str | None  # why it cannot be drawn for this run; None: draw it
    draw: Callable[[Path], Path]


def write_report(run_dir: str | Path) -> Path:
    """Write report.md and figures/*.png into `run_dir` and return the report's path."""
    run_dir = Path(run_dir)
    absent = [name for name in (ARCH, RESULTS) if not (run_dir / name).is_file()]
    if absent:
        raise MpnasError(f"report for run directory {run_dir}: " + "; ".join(
            f"no {name} (written by `{_PRODUCERS[name]} {run_dir}`)" for name in absent))
    arch = Architecture.load(run_dir / ARCH)
    results = _read_results(run_dir / RESULTS)
    rows = [r for r in read_jsonl(run_dir / METRICS) if isinstance(r, dict)]
    config = (run_dir / CONFIG).read_text(encoding="utf-8") if (run_dir / CONFIG).is_file() else None

    plan = _figure_plan(arch, results, rows)
    slim_table = read_json(run_dir / SLIM_TABLE, "slim table") if (run_dir / SLIM_TABLE).is_file() else None
    if slim_table is not None:
        plan.append(_Figure(SLIM_FIGURE, "Slimmable widths: mean validation top-1 against MACs", None,
                            lambda out: plot_slimmable(slim_table, out)))
    figures = _draw_figures(run_dir / FIGURES, plan)
    lines = _render(run_dir, arch, results, rows, config, figures)
    if slim_table is not None:
        at = lines.index("## Configuration")
        lines[at:at] = slimmable_lines(slim_table, _embed(figures, SLIM_FIGURE))
    text = "\n".join(lines) + "\n"
    atomic_write_text(run_dir / REPORT, text)
    return run_dir / REPORT


def _read_results(path: Path) -> dict[str, Any]:
    results = read_json(path, "results file")
    if not isinstance(results, dict) or not isinstance(results.get("domains"), dict):
        raise MpnasError(f"results file {path}: expected an object with 'domains' (domain -> results); "
                         "rewrite it with `mpnas evaluate`")
    for name, entry in results["domains"].items():
        if not isinstance(entry, dict):
            raise MpnasError(f"results file {path}: domain {name!r} must be an object, got {type(entry).__name__}")
    return results


# ---------------------------------------------------------------------------------------------------------
# Figures.


def _figure_plan(arch: Architecture, results: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[_Figure]:
    stages = {r.get("stage") for r in rows}
    order = arch.domains
    no_metrics = "no metrics.jsonl rows from"
    return [
        _Figure("accuracy.png", "Top-1 per domain", None, lambda out: f.plot_accuracy(results, out)),
        _Figure("architecture.png", "Merged architecture (as the paper's Fig. 3)", None,
                lambda out: f.plot_architecture(arch, out)),
        _Figure("jaccard.png", "Jaccard similarity of the domains' node sets (as the paper's Fig. 4)",
                None if len(order) > 1 else "a single domain has no other path to compare with",
                lambda out: f.plot_jaccard(arch.jaccard(), out)),
        _Figure("rewards.png", "Search: reward, quality, cost and controller entropy",
                None if "search" in stages else f"{no_metrics} a search (a baseline or a fixed architecture?)",
                lambda out: f.plot_rewards(rows, out, domains=order)),
        _Figure("controller_probs.png", "Search: controller probability of each final choice",
                None if "search_probs" in stages else f"{no_metrics} the search controllers",
                lambda out: f.plot_controller_probs(rows, arch.space, out, domains=order)),
        _Figure("training.png", "Training: loss, ABDP weight and validation top-1",
                None if stages & {"train", "train_eval"} else f"{no_metrics} training",
                lambda out: f.plot_training(rows, out, domains=order)),
    ]


def _draw_figures(folder: Path, plan: Sequence[_Figure]) -> dict[str, tuple[_Figure, str | None]]:
    """file -> (figure, why it is missing or None). A figure left from an earlier report of this run that can
    no longer be drawn is removed, so the folder never shows a stale picture."""
    out = {}
    for fig in plan:
        why = fig.missing
        if why is None:
            try:
                fig.draw(folder / fig.file)
            except NothingToDraw as exc:  # rows present but none usable: say so rather than fail the report
                why = str(exc)
        if why is not None:
            (folder / fig.file).unlink(missing_ok=True)
        out[fig.file] = (fig, why)
    return out


def _embed(figures: Mapping[str, tuple[_Figure, str | None]], file: str) -> list[str]:
    fig, why = figures[file]
    if why is not None:
        return [f"*{fig.caption}: not drawn: {why}.*", ""]
    return [f"![{fig.caption}]({FIGURES}/{file})", ""]


# ---------------------------------------------------------------------------------------------------------
# Text.


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any, spec: str = "") -> str:
    return format(v, spec) if _is_number(v) else "–"


def _macs(v: Any) -> str:
    return f"{v / 1e6:.2f} M" if _is_number(v) else "–"


def _seconds(v: Any) -> str:
    if not _is_number(v):
        return "–"
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min"


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks inside the text."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _render(run_dir: Path, arch: Architecture, results: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
            config: str | None, figures: Mapping[str, tuple[_Figure, str | None]]) -> list[str]:
    method, data = results.get("method", "?"), results.get("data", "?")
    space = arch.space
    times = results.get("wall_time_s") if isinstance(results.get("wall_time_s"), dict) else {}
    facts = [f"run `{run_dir.name}`", f"budget `{results.get('budget', '?')}`", f"seed {results.get('seed', '?')}",
             f"space `{space.name}` ({space.resolution} px)", f"{len(arch.domains)} domains"]
    if times:
        facts.append("wall time " + ", ".join(f"{k} {_seconds(v)}" for k, v in times.items()))
    lines = [f"# MPNAS report: {method} on {data}", "", " · ".join(facts), ""]
    lines += _results_section(results, figures)
    lines += _merged_section(arch, results, figures)
    lines += _similarity_section(arch, figures)
    lines += _paths_section(arch)
    lines += _search_section(rows, arch.domains, figures)
    lines += _supernet_section(arch, results)
    lines += _training_section(rows, figures)
    lines += ["## Configuration", ""]
    if config is None:
        lines += [f"*No {CONFIG} in the run directory.*", ""]
    else:
        fence = _fence(config)
        lines += ["<details><summary>Resolved config.yaml</summary>", "", f"{fence}yaml", config.rstrip("\n"), fence,
                  "", "</details>", ""]
    return lines


def _results_section(results: Mapping[str, Any], figures: Mapping[str, tuple[_Figure, str | None]]) -> list[str]:
    entries: dict[str, dict[str, Any]] = results["domains"]
    score = results.get("decathlon_score")
    top1 = {d: e["top1"] for d, e in entries.items() if _is_number(e.get("top1"))}
    points = decathlon_points(top1) if _is_number(score) else {}
    head = "| domain | classes | top-1 (%) | evaluated on | params | MACs |"
    rule = "|---|---:|---:|---|---:|---:|"
    if points:
        head, rule = head + " decathlon points |", rule + "---:|"
    lines = ["## Results", "", head, rule]
    for d, e in entries.items():
        row = (f"| {d} | {_fmt(e.get('num_classes'))} | {_fmt(e.get('top1'), '.2f')} | {e.get('eval_split', '–')} "
               f"| {_fmt(e.get('params'), ',')} | {_macs(e.get('macs'))} |")
        lines.append(row + (f" {_fmt(points.get(d), '.0f')} |" if points else ""))
    mean = f"| **mean** | | **{_fmt(results.get('mean_top1'), '.2f')}** | | | |"
    lines += [mean + (f" **{_fmt(score, '.0f')}** |" if points else ""), ""]
    if _is_number(score):
        lines += [f"Visual Decathlon score: **{score:.0f}** (up to 1000 per domain; 250 at the accuracy of the "
                  "finetuned ImageNet baseline of Rebuffi et al. 2017, 0 at twice its error).", ""]
    if any(e.get("eval_split") == "val" for e in entries.values()):
        lines += ["Domains evaluated on `val` have no labelled test split; their top-1 is also what training "
                  "selected its best weights on, so it is optimistic.", ""]
    return lines + _embed(figures, "accuracy.png")


def _merged_section(arch: Architecture, results: Mapping[str, Any],
                    figures: Mapping[str, tuple[_Figure, str | None]]) -> list[str]:
    table = node_table(arch)
    used = [u for u in table.values() if u.used]
    shared = [u for u in used if u.shared]
    standalone = [e.get("params") for e in results["domains"].values()]
    lines = ["## Merged model", ""]
    total = results.get("params_total")
    params = f"- parameters: {_fmt(total, ',')} in the merged model"
    if _is_number(total) and standalone and all(_is_number(p) for p in standalone):
        separate = sum(standalone)
        params += f", against {separate:,} for one separate network per domain ({total / separate:.0%} of that)"
    lines += [params,
              f"- MACs: {_macs(results.get('macs_total'))} to classify one image of every domain "
              "(each domain's path, summed)",
              f"- nodes: {len(used)} of {len(table)} candidates used, **{len(shared)} shared** and "
              f"{len(used) - len(shared)} exclusive; {len(table) - len(used)} unused candidates are not in the model",
              f"- paths: {_paths_differ(arch)}"]
    exclusive = {d: sum(1 for u in used if u.domains == (d,)) for d in arch.domains}
    lines += ["- exclusive nodes per domain: " + ", ".join(f"{d} {n}" for d, n in exclusive.items()), ""]
    if shared:
        lines += ["| shared node | domains | widths used (expanded/output) |", "|---|---|---|"]
        lines += [f"| `{u.node}` | {', '.join(u.domains)} | {_widths(u)} |" for u in shared]
        lines.append("")
    return lines + _embed(figures, "architecture.png")


def _widths(u: NodeUse) -> str:
    return ", ".join(f"{d} {e}/{o}" for d, (e, o) in u.widths.items())


def _paths_differ(arch: Architecture) -> str:
    """Whether the search found different paths: identical ones mean a single-path model for those domains."""
    groups: dict[Any, list[str]] = {}
    for d in arch.domains:
        groups.setdefault(arch.paths[d], []).append(d)
    if len(arch.domains) == 1:
        return "one domain, one path"
    if len(groups) == 1:
        return "**all domains have the same path** (a single-path model: every node shared at the same widths)"
    same = [g for g in groups.values() if len(g) > 1]
    text = f"{len(groups)} different paths for {len(arch.domains)} domains"
    if same:
        text += "; identical paths: " + "; ".join(", ".join(g) for g in same)
    node_sets = {d: frozenset(arch.nodes_of(d)) for d in arch.domains}
    twins = [(a, b) for i, a in enumerate(arch.domains) for b in arch.domains[i + 1:]
             if node_sets[a] == node_sets[b] and arch.paths[a] != arch.paths[b]]
    if twins:
        text += "; same nodes, different widths: " + "; ".join(f"{a} and {b}" for a, b in twins)
    return text


def _similarity_section(arch: Architecture, figures: Mapping[str, tuple[_Figure, str | None]]) -> list[str]:
    names = arch.domains
    if len(names) < 2:
        return ["## Path similarity", ""] + _embed(figures, "jaccard.png")
    jac = arch.jaccard()
    lines = ["## Path similarity", "",
             "Jaccard similarity of the domains' node sets: shared nodes over the nodes of either domain "
             "(1: the same nodes, 0: nothing in common).", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| **{a}** | " + " | ".join(f"{jac[a][b]:.2f}" for b in names) + " |" for a in names]
    pairs = sorted(((jac[a][b], a, b) for i, a in enumerate(names) for b in names[i + 1:]), reverse=True)
    lines += ["", f"Most similar: {pairs[0][1]} and {pairs[0][2]} ({pairs[0][0]:.2f}); "
              f"least similar: {pairs[-1][1]} and {pairs[-1][2]} ({pairs[-1][0]:.2f}).", ""]
    return lines + _embed(figures, "jaccard.png")


def _paths_section(arch: Architecture) -> list[str]:
    lines = ["## Paths", "",
             "One line per block: output filters, then each layer's depthwise kernel `k`, expansion ratio `e` and "
             "squeeze-and-excite `se`, or `skip`.", ""]
    for d in arch.domains:
        lines += [f"**{d}** ({arch.num_classes[d]} classes)", "", "```"]
        lines += format_path(arch.space, arch.paths[d])
        lines += ["```", ""]
    return lines


def _last(rows: Sequence[Mapping[str, Any]], stage: str) -> dict[str, Mapping[str, Any]]:
    """Each domain's row with the highest step of a stage."""
    out: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        d, step = r.get("domain"), r.get("step")
        if r.get("stage") == stage and isinstance(d, str) and _is_number(step):
            if d not in out or step >= out[d]["step"]:
                out[d] = r
    return out


def _search_section(rows: Sequence[Mapping[str, Any]], domains: Sequence[str],
                    figures: Mapping[str, tuple[_Figure, str | None]]) -> list[str]:
    lines = ["## Search", ""]
    last = _last(rows, "search")
    if last:
        order = [d for d in domains if d in last] + [d for d in last if d not in domains]
        lines += [f"At the last logged step ({max(r['step'] for r in last.values())}):", "",
                  "| domain | reward | baseline | quality | cost T/T0 | expected cost | entropy |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for d in order:
            r = last[d]
            lines.append(f"| {d} | " + " | ".join(_fmt(r.get(k), ".3f") for k in
                                                 ("reward", "baseline", "quality", "cost", "expected_cost", "entropy"))
                         + " |")
        lines.append("")
    return lines + _embed(figures, "rewards.png") + _embed(figures, "controller_probs.png")


def _supernet_section(arch: Architecture, results: Mapping[str, Any]) -> list[str]:
    """The reward's Q per domain at the end of the warm-up and of the search, against chance and the trained
    model: a domain whose sampled paths score near chance gave its controller no accuracy signal."""
    q = arch.meta.get("supernet_top1")
    if not isinstance(q, dict) or not q:
        return []
    domains = results["domains"] if isinstance(results.get("domains"), dict) else {}
    lines = ["### Does the supernet learn every domain?", "",
             "Mean validation top-1 (%) of the sampled paths (the reward's Q) over the last tenth of the warm-up and of "
             "the search, against chance and the trained model's validation top-1.", "",
             "| domain | chance | end of warm-up | end of search | trained model (val) |", "|---|---:|---:|---:|---:|"]
    for d in arch.domains:
        cell = q.get(d)
        cell = cell if isinstance(cell, dict) else {}
        trained = domains.get(d, {}).get("val_top1") if isinstance(domains.get(d), dict) else None
        lines.append(f"| {d} | {100.0 / arch.num_classes[d]:.1f} | {_fmt(cell.get('warmup_end'), '.1f')} | "
                     f"{_fmt(cell.get('search_end'), '.1f')} | {_fmt(trained, '.1f')} |")
    return lines + [""]


def _training_section(rows: Sequence[Mapping[str, Any]],
                      figures: Mapping[str, tuple[_Figure, str | None]]) -> list[str]:
    lines = ["## Training", ""]
    means = [r for r in rows if r.get("stage") == "train_eval" and r.get("domain") == "__mean__"
             and _is_number(r.get("val_top1")) and _is_number(r.get("step"))]
    if means:
        best = max(means, key=lambda r: r["val_top1"])
        lines += [f"Best mean validation top-1: {best['val_top1']:.2f}% at step {best['step']} "
                  f"(the weights kept; last evaluation at step {max(r['step'] for r in means)}).", ""]
    return lines + _embed(figures, "training.png")
