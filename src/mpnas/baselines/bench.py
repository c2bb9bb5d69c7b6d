"""`mpnas bench`: every method on the same data, budget and seeds; Table-2-style comparison and loss ablations.

    DIR/<method>/seed<S>/               one run directory per method and seed (skipped when already finished)
    DIR/ablate-loss/<variant>/seed<S>/  --ablate loss: MPNAS's architecture retrained with each loss variant,
                                        and SP-MN, MDSP-NAS and MRP retrained without ABDP (identity loss)
    DIR/bench.json, DIR/bench.md, DIR/figures/

Several processes (or machines sharing a file system) may run the same bench on one DIR to split the work: each run
directory is claimed with a `.claim` file created exclusively before it starts, others skip it, and every process
tabulates whatever has finished when it stops. A claim left by a process that died on this host is taken over.

The loss ablations retrain the searched architecture of the same seed with the other loss (the search itself
keeps the configured loss), so that only the training objective differs between the rows.
"""

from __future__ import annotations

import math
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator

from mpnas.baselines.methods import METHODS, average_results, retrain_with_loss, run_method
from mpnas.config import RunConfig
from mpnas.errors import MpnasError
from mpnas.io import atomic_write_text, read_json, write_json
from mpnas.pipeline import RESULTS, apply_threads, load_data

LOSS_VARIANTS = ("uwl", "empirical", "x", "x2", "exp", "exp_inc", "exp_dec")
LOSS_LABELS = {"uwl": "UWL", "empirical": "Empirical", "x": "x", "x2": "x^2", "exp": "exp(x/w)",
               "exp_inc": "exp(x/w), w increasing", "exp_dec": "exp(x/w), w decreasing"}
TABLE4_METHODS = ("mdsp-nas", "sp-mn", "mrp", "mpnas")
LABELS = {"mpnas": "MPNAS", "sd-nas": "SD-NAS", "sp-mn": "SP-MN", "mdsp-nas": "MDSP-NAS", "mrp": "MRP", "trl": "TRL"}


CLAIM = ".claim"


def _finished(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / RESULTS, "results file") if (run_dir / RESULTS).is_file() else None


def _claim_live(lock: Path) -> bool:
    """Whether another process holds this claim: a dead pid on this host releases it; other hosts are trusted."""
    try:
        host, pid = lock.read_text().split()
    except FileNotFoundError:
        return False
    except ValueError:  # being written right now, or garbage: trust it while it is young
        return time.time() - lock.stat().st_mtime < 60
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def claimed(run_dir: Path) -> Iterator[bool]:
    """Yield True when this process owns `run_dir` for the duration of the block, False when another does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / CLAIM
    fd = None
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if _claim_live(lock):
                break
            lock.unlink(missing_ok=True)
    if fd is None:
        yield False
        return
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}")
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)


def run_bench(cfg: RunConfig, methods: list[str], seeds: Iterable[int], out: Path, ablate: str | None = None,
              progress: bool = True, say=print) -> dict[str, Any]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MpnasError(f"--methods: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if ablate not in (None, "loss"):
        raise MpnasError(f"--ablate: {ablate!r} unknown; the only ablation is 'loss'")
    apply_threads(cfg)
    out.mkdir(parents=True, exist_ok=True)
    domains = None
    seeds = list(seeds)
    for method in methods:
        for seed in seeds:
            run_dir = out / method / f"seed{seed}"
            if _finished(run_dir):
                say(f"bench: {method} seed {seed} already finished, skipped")
                continue
            with claimed(run_dir) as mine:
                if not mine:
                    say(f"bench: {method} seed {seed} is being run by another process, skipped")
                    continue
                domains = domains or load_data(cfg, progress)
                say(f"bench: running {method} seed {seed} -> {run_dir}")
                run_method(method, replace(cfg, seed=seed), run_dir, domains, progress)
    if ablate == "loss":
        for seed in seeds:
            domains = _ablate_loss(cfg, out, seed, domains, progress, say)
    return write_bench(out, cfg)


def _ablate_loss(cfg: RunConfig, out: Path, seed: int, domains, progress: bool, say):
    scfg = replace(cfg, seed=seed)
    base = out / "mpnas" / f"seed{seed}"
    if not _finished(base):
        raise MpnasError(f"--ablate loss needs the mpnas run of seed {seed} first (add mpnas to --methods)")
    for kind in ("x",) + tuple(k for k in LOSS_VARIANTS if k not in ("x", "exp_dec")):
        run_dir = out / "ablate-loss" / kind / f"seed{seed}"
        if _finished(run_dir):
            continue
        with claimed(run_dir) as mine:
            if not mine:
                say(f"bench: loss ablation {kind} seed {seed} is being run by another process, skipped")
                continue
            domains = domains or load_data(cfg, progress)
            weights = _empirical_weights(out, seed, say) if kind == "empirical" else None
            say(f"bench: loss ablation {kind} seed {seed} -> {run_dir}")
            retrain_with_loss(scfg, base, run_dir, domains, kind, f"mpnas+{kind}", weights, progress)
    for method in ("sp-mn", "mdsp-nas", "mrp"):
        src = out / method / f"seed{seed}"
        run_dir = out / "ablate-loss" / f"{method}+x" / f"seed{seed}"
        if not _finished(src) or _finished(run_dir):
            continue
        with claimed(run_dir) as mine:
            if not mine:
                say(f"bench: {method} without ABDP seed {seed} is being run by another process, skipped")
                continue
            domains = domains or load_data(cfg, progress)
            say(f"bench: {method} without ABDP seed {seed} -> {run_dir}")
            if method == "mrp":
                trials = []
                for k in range(scfg.baselines.mrp_trials):
                    trials.append(_finished(run_dir / f"trial{k}") or retrain_with_loss(
                        scfg, src / f"trial{k}", run_dir / f"trial{k}", domains, "x", "mrp+x", None, progress))
                write_json(run_dir / RESULTS, average_results("mrp+x", trials))
            else:
                retrain_with_loss(scfg, src, run_dir, domains, "x", f"{method}+x", None, progress)
    return domains


def _empirical_weights(out: Path, seed: int, say=print, poll_s: float = 30.0) -> dict[str, float]:
    """The paper doubled the weight of its hardest domain; here the hardest is read off the identity-loss run."""
    x_dir = out / "ablate-loss" / "x" / f"seed{seed}"
    if _finished(x_dir) is None and _claim_live(x_dir / CLAIM):
        say(f"bench: the empirical loss waits for the identity-loss run of seed {seed} (another process)")
        while _finished(x_dir) is None and _claim_live(x_dir / CLAIM):
            time.sleep(poll_s)
    x = _finished(x_dir)
    if x is None:
        raise MpnasError(f"the empirical loss needs the identity-loss run of seed {seed} first")
    hardest = min(x["domains"], key=lambda d: x["domains"][d]["top1"])
    return {hardest: 2.0}


# ---------------------------------------------------------------------------------------------------------
# Aggregation and tables.


def _stats(values: list[float]) -> dict[str, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": round(m, 3), "std": round(sd, 3)}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-seed values, mean and std of a method's results over seeds."""
    names = list(runs[0]["domains"])
    return {
        "seeds": [r.get("seed") for r in runs],
        "per_seed": [{"seed": r.get("seed"), "mean_top1": r["mean_top1"], "top1": {d: r["domains"][d]["top1"] for d in names},
                      "params_total": r["params_total"], "macs_total": r["macs_total"]} for r in runs],
        "mean_top1": _stats([r["mean_top1"] for r in runs]),
        "top1": {d: _stats([r["domains"][d]["top1"] for r in runs]) for d in names},
        "params_total": _stats([r["params_total"] for r in runs]),
        "macs_total": _stats([r["macs_total"] for r in runs]),
        "num_classes": {d: runs[0]["domains"][d]["num_classes"] for d in names},
        "results": runs[0] if len(runs) == 1 else None,
    }


def _collect(root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    if not root.is_dir():
        return out
    for method_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = [r for r in (_finished(s) for s in sorted(method_dir.glob("seed*"))) if r is not None]
        if runs:
            out[method_dir.name] = aggregate(runs)
    return out


def write_bench(out: Path, cfg: RunConfig | None = None) -> dict[str, Any]:
    methods = {m: v for m, v in _collect(out).items() if m in METHODS}
    ablation = _collect(out / "ablate-loss")
    if not methods:
        raise MpnasError(f"bench directory {out}: no finished runs to tabulate")
    bench = {"methods": methods, "ablate_loss": ablation}
    if cfg is not None:
        bench["data"], bench["budget"] = cfg.data.spec, cfg.budget
    write_json(out / "bench.json", bench)
    figures = _figures(out, methods)
    atomic_write_text(out / "bench.md", bench_markdown(bench, figures))
    return bench


def _fmt(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}" if s["std"] else f"{s['mean']:.{digits}f}"


def bench_markdown(bench: dict[str, Any], figures: list[str]) -> str:
    methods = bench["methods"]
    order = [m for m in ("sd-nas", "sp-mn", "mdsp-nas", "mrp", "trl", "mpnas") if m in methods]
    domains = list(next(iter(methods.values()))["top1"])
    ref = methods.get("sp-mn")
    lines = ["# Benchmark: MPNAS against the paper's baselines", ""]
    if "data" in bench:
        lines += [f"Data `{bench['data']}`, budget `{bench['budget']}`. Top-1 in percent, mean ± std over seeds "
                  f"(seeds: {', '.join(str(s) for s in methods[order[0]]['seeds'])}); no ± where the seeds agree.", ""]
    lines += [
        "Parameters are relative to SP-MN (one backbone and a head per domain) when SP-MN ran; MACs are those of "
        "classifying one image of every domain (each domain's path, summed).", "",
        "| method | params | params (M) | MACs (M) | " + " | ".join(domains) + " | mean |",
        "|---|---:|---:|---:|" + "---:|" * len(domains) + "---:|",
    ]
    for m in order:
        r = methods[m]
        params = r["params_total"]["mean"]
        rel = f"{params / ref['params_total']['mean']:.2f}x" if ref else "-"
        cells = [_fmt(r["top1"][d]) for d in domains]
        macs = r["macs_total"]["mean"] / 1e6
        lines.append(f"| {LABELS[m]} | {rel} | {params / 1e6:.2f} | {macs:.2f} | " + " | ".join(cells)
                     + f" | **{_fmt(r['mean_top1'], 2)}** |")
    lines.append("")
    lines += [f"![{f}](figures/{f})" for f in figures]
    ab = bench.get("ablate_loss") or {}
    if ab:
        lines += ["", "## Loss ablation: MPNAS's architecture retrained with each loss (Table 5)", "",
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
    lines.append("")
    return "\n".join(lines)


def _figures(out: Path, methods: dict[str, Any]) -> list[str]:
    from matplotlib.figure import Figure

    order = [m for m in ("sd-nas", "sp-mn", "mdsp-nas", "mrp", "trl", "mpnas") if m in methods]
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    names = []

    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    means = [methods[m]["mean_top1"]["mean"] for m in order]
    stds = [methods[m]["mean_top1"]["std"] for m in order]
    ax.bar([LABELS[m] for m in order], means, yerr=stds, capsize=4, color=["#4c72b0" if m != "mpnas" else "#c44e52" for m in order])
    for i, v in enumerate(means):
        ax.text(i, v + 1, f"{v:.1f}", ha="center", fontsize=8)
    ax.set_ylabel("mean top-1 (%)")
    ax.set_title("Mean top-1 over domains (error bars: std over seeds)")
    fig.tight_layout()
    fig.savefig(fig_dir / "mean_top1.png", dpi=120)
    names.append("mean_top1.png")

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for m in order:
        ax.scatter(methods[m]["params_total"]["mean"] / 1e6, methods[m]["mean_top1"]["mean"], s=40)
        ax.annotate(LABELS[m], (methods[m]["params_total"]["mean"] / 1e6, methods[m]["mean_top1"]["mean"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("parameters of the whole multi-domain model (M)")
    ax.set_ylabel("mean top-1 (%)")
    ax.set_title("Accuracy against size")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(fig_dir / "params_vs_top1.png", dpi=120)
    names.append("params_vs_top1.png")

    domains = list(methods[order[0]]["top1"])
    fig = Figure(figsize=(max(7, 1.3 * len(domains)), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(order)
    for i, m in enumerate(order):
        xs = [j + (i - (len(order) - 1) / 2) * width for j in range(len(domains))]
        ax.bar(xs, [methods[m]["top1"][d]["mean"] for d in domains], width, label=LABELS[m])
    ax.set_xticks(range(len(domains)), domains)
    ax.set_ylabel("top-1 (%)")
    ax.legend(fontsize=7, ncol=len(order))
    ax.set_title("Top-1 per domain")
    fig.tight_layout()
    fig.savefig(fig_dir / "top1_per_domain.png", dpi=120)
    names.append("top1_per_domain.png")
    return names

