"""The search judged on the ground-truth set (issue 24): Kendall tau between the final supernet's scores and the
set's stand-alone top-1, and the percentile of the path the search picked among the set's paths.

    # the searches: the `default` budget's search, per method and seed (resumable; start several processes to split)
    python benchmarks/search_quality.py search --methods mpnas,mpnas-gradient --seeds 0,1,2 --out runs/quality
    # issue 27's levers (LEVERS below): the same searches with a lever's overrides, into runs/quality/mpnas+<lever>
    python benchmarks/search_quality.py search --methods mpnas --levers fair,sandwich --seeds 0,1,2 --out runs/quality
    python benchmarks/search_quality.py search --methods mpnas-gradient --levers reinforce-ops,rl-warm-0.5 --seeds 0,1,2 \
        --out runs/quality
    # the picked paths trained alone with the set's recipe and seeds, then tau and percentiles
    python benchmarks/search_quality.py judge --rankset benchmarks/rankset/rankset.json --out runs/quality \
        --write benchmarks/rankset/quality.json
    # run directories do not outlive a machine: --merge keeps the committed file's other (method, seed) cells, so
    # a lever table grows across sessions; `table` prints it (markdown)
    python benchmarks/search_quality.py judge --rankset benchmarks/rankset/rankset.json --out runs/quality \
        --write benchmarks/rankset/levers.json --merge
    python benchmarks/search_quality.py table benchmarks/rankset/levers.json
    # SD-NAS's per-domain supernets of a bench, judged the same way (does sharing one supernet blur the ranking?)
    python benchmarks/search_quality.py judge-sd --bench runs/bench24e2e --rankset benchmarks/rankset/rankset.json \
        --write benchmarks/rankset/quality-sd.json

Score of a set path: the mean over `--batches` (16) validation batches of the search's validation batch size of
the path's top-1 in the final supernet, with batch statistics as the search scores paths (the reward's Q), on the
same batches for every path. Tau is Kendall's tau-b (`scipy.stats.kendalltau`) between these scores and the mean
over seeds of the set's stand-alone test top-1.

Percentile of the picked path: the path the search wrote into architecture.json, trained alone exactly as the
set's paths (`benchmarks/rankset.py`: same recipe, steps and seeds), placed among the set's paths by its mean
top-1 over those seeds: 100 x (paths below + half the ties) / paths. A path drawn from the set's own distribution
scores 50 on average. The set holds paths of one cost; a picked path of another cost is placed all the same, and
its MACs relative to the set's target are reported beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib
import torch

from mpnas.analysis.ranking import kendall_tau, percentile
from mpnas.baselines.bench import claimed
from mpnas.baselines.methods import gradient_config
from mpnas.baselines.rankset import train_path_alone
from mpnas.data import DomainSet, MultiDomainLoader
from mpnas.io import read_json, read_jsonl, write_json
from mpnas.pipeline import stage_search
from mpnas.rundir import load_data, read_config, stage_finished
from mpnas.space.presets import build_space
from mpnas.search.gradient import batch_counts, scores_of
from mpnas.search.loop import load_final_search
from mpnas.space.arch import Architecture
from mpnas.space.cost import path_cost
from mpnas.space.space import Path as SpacePath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rankset import set_config  # noqa: E402  (the set's recipe: picked paths train exactly as the set's)

METHODS = ("mpnas", "mpnas-gradient")
# Issue 27's levers on the search, each a list of config overrides on the `default` budget; a lever's runs are
# `<method>+<lever>/seed<N>` (e.g. `mpnas+fair`), judged beside the plain methods.
LEVERS: dict[str, list[str]] = {
    "fair": ["search.fair_sampling=true"],
    "sandwich": ["search.sandwich=true"],
    "likelihood": ["search.quality=likelihood"],
    "prob": ["search.quality=prob"],
    "warmup-0.25": ["search.rl_start=0.25"],
    "loo-3": ["search.samples_per_step=3"],
    "shortlist": ["search.final_candidates=8", "search.shortlist=3", "search.shortlist_steps=100"],
    # the gradient strategy's fixes (use with --methods mpnas-gradient; they name the strategy they need)
    "reinforce-ops": ["search.strategy=gradient", "search.gradient_ops=reinforce"],
    "rl-warm-0.5": ["search.strategy=gradient", "search.gradient_rl_fraction=0.5"],
}


def _label_ok(name: str) -> bool:
    method, _, lever = name.partition("+")
    return method in METHODS and (not lever or lever in LEVERS)


def searched_runs(out: Path) -> list[Path]:
    """The run directories of METHODS (plain or with a lever) under `out` whose search finished. `out` may be a bench
    directory: its MPNAS runs are searched here first and trained by the bench later, so both measure the same
    searches."""
    names = sorted(p.name for p in out.iterdir() if p.is_dir() and _label_ok(p.name)) if out.is_dir() else []
    order = sorted(names, key=lambda n: (METHODS.index(n.partition("+")[0]), n))
    return [run for m in order for run in sorted((out / m).glob("seed*")) if stage_finished(run, "search")]


def method_config(label: str, seed: int, threads: int | None) -> Any:
    method, _, lever = label.partition("+")
    cfg = set_config(seed, threads, LEVERS[lever] if lever else [])
    return gradient_config(cfg) if method == "mpnas-gradient" else cfg


def cmd_search(args: argparse.Namespace) -> None:
    levers = [lv for lv in (args.levers or "").split(",") if lv]
    for lever in levers:
        if lever not in LEVERS:
            raise SystemExit(f"lever {lever!r}: choose from {', '.join(LEVERS)}")
    for method in args.methods.split(","):
        if method not in METHODS:
            raise SystemExit(f"method {method!r}: choose from {', '.join(METHODS)}")
    labels = [f"{m}+{lv}" for m in args.methods.split(",") for lv in levers] if levers else args.methods.split(",")
    for method in labels:
        for seed in [int(s) for s in args.seeds.split(",")]:
            run = args.out / method / f"seed{seed}"
            if stage_finished(run, "search"):
                continue
            with claimed(run) as mine:
                if not mine:
                    continue
                cfg = method_config(method, seed, args.threads)
                stage_search(cfg, run, load_data(cfg, progress=False), progress=False, method=method, resume=True)
            print(f"{method} seed {seed}: searched", flush=True)


def picked_dir(out: Path, run: Path) -> Path:
    """Where a run's picked paths are trained alone: beside the run directories, never inside one."""
    return out / "picked" / run.parent.name / run.name


@torch.no_grad()
def supernet_batch_scores(supernet: Any, space: Any, domains: DomainSet, domain: str, paths: list[SpacePath],
                          batches: int, batch_size: int, quality: str = "top1") -> list[list[float]]:
    """Q of each path (rows) on each of the same `batches` validation batches of `domain` (columns), in the final
    supernet; Q is the search's own (`search.quality`: top-1 unless a lever changed it)."""
    single = DomainSet(domains.source, [domains[domain]])
    loader = MultiDomainLoader(single, batch_size, split="val", seed=12345, augment=False)
    data = [loader.next()[domain] for _ in range(batches)]
    out = []
    for p in paths:
        geo = space.geometry(p)
        out.append([float(scores_of(batch_counts(supernet.forward_geometry(x, geo, domain), y, quality)[None],
                                    quality)[1][0]) for x, y in data])
    return out


def supernet_scores(supernet: Any, space: Any, domains: DomainSet, domain: str, paths: list[SpacePath], batches: int,
                    batch_size: int, quality: str = "top1") -> list[float]:
    """Mean Q of each path over the same `batches` validation batches (`supernet_batch_scores`)."""
    return [statistics.mean(row) for row in
            supernet_batch_scores(supernet, space, domains, domain, paths, batches, batch_size, quality)]


def search_facts(run: Path) -> dict[str, Any]:
    """The search's wall time and each controller's entropy at its last logged step (nats)."""
    entropy: dict[str, float] = {}
    for row in read_jsonl(run / "metrics.jsonl"):
        if row.get("stage") == "search" and "entropy" in row:
            entropy[row["domain"]] = round(float(row["entropy"]), 3)
    stages = read_json(run / "stages.json", "stages file")
    return {"search_s": stages["search"]["wall_time_s"], "entropy": entropy}


def train_picked(out: Path, the_set: dict[str, Any], threads: int | None) -> None:
    """Every searched run's picked path of every set domain, trained alone with the set's seeds (resumable)."""
    torch.set_num_threads(threads or 1)
    domains = load_data(set_config(0, threads, []), progress=False)
    seeds = [int(s) for s in next(iter(the_set["domains"].values()))["summary"]["seeds"]]
    for run in searched_runs(out):
        arch = Architecture.load(run / "architecture.json")
        for d in the_set["domains"]:
            for s in seeds:
                piece = picked_dir(out, run) / d / f"seed{s}"
                if (piece / "result.json").is_file():
                    continue
                with claimed(piece) as mine:
                    if not mine:
                        continue
                    r = train_path_alone(set_config(s, threads, the_set.get("overrides", [])), domains, d,
                                         arch.paths[d], arch.space, piece)
                print(f"{run} {d} seed {s}: {r['top1']:.2f}", flush=True)


def judge(out: Path, the_set: dict[str, Any], batches: int) -> dict[str, Any]:
    domains = load_data(set_config(0, None, []), progress=False)
    result: dict[str, Any] = {"batches": batches, "methods": {}}
    for run in searched_runs(out):
        method, seed = run.parent.name, int(run.name[4:])
        cfg = read_config(run)
        arch = Architecture.load(run / "architecture.json")
        space = build_space(cfg)
        supernet, _, _ = load_final_search(run, space, {d.name: d.num_classes for d in domains})
        per_domain = {}
        for d, entry in the_set["domains"].items():
            seeds = entry["summary"]["seeds"]
            complete = [p for p in entry["paths"] if len(p["top1"]) == len(seeds)]
            truth = [statistics.mean(p["top1"].values()) for p in complete]
            paths = [SpacePath.from_dict(p["path"], space, "rank-set path") for p in complete]
            # the picked path is scored on the same batches, so it can be drawn among the set's paths
            *scores, picked_score = supernet_scores(supernet, space, domains, d, [*paths, arch.paths[d]], batches,
                                                    cfg.search.val_batch_size or 4 * cfg.search.batch_size,
                                                    cfg.search.quality)
            t, pv = kendall_tau(scores, truth)
            cell: dict[str, Any] = {"tau": round(t, 4), "tau_p": round(pv, 4), "paths": len(complete),
                                    "scores": [round(v, 4) for v in scores], "picked_score": round(picked_score, 4)}
            picked = [read_json(f, "picked piece")["top1"] for f in sorted((picked_dir(out, run) / d).glob("seed*/result.json"))]
            macs = path_cost(space, arch.paths[d], entry["num_classes"]).macs
            cell["picked_macs_ratio"] = round(macs / entry["target_macs"], 4)
            if len(picked) == len(seeds):
                cell["picked_top1"] = [round(v, 3) for v in picked]
                cell["percentile"] = round(percentile(statistics.mean(picked), truth), 2)
            per_domain[d] = cell
        result["methods"].setdefault(method, {})[str(seed)] = per_domain
        result.setdefault("search", {}).setdefault(method, {})[str(seed)] = search_facts(run)
    return summarize(result, the_set)


def merged(old: dict[str, Any], new: dict[str, Any], the_set: dict[str, Any]) -> dict[str, Any]:
    """`new`'s judged (method, seed) cells over `old`'s: run directories do not outlive a machine, so a lever table
    grows across sessions in its committed file, one finished search at a time. Both must use the same batches."""
    if old.get("batches") != new["batches"]:
        raise SystemExit(f"--write holds a judge over {old.get('batches')} batches, this one uses {new['batches']}")
    out: dict[str, Any] = {"batches": new["batches"], "methods": {}, "search": {}}
    for key in ("methods", "search"):
        for source in (old, new):
            for method, seeds in source.get(key, {}).items():
                out[key].setdefault(method, {}).update(seeds)
    return summarize(out, the_set)


def summarize(result: dict[str, Any], the_set: dict[str, Any]) -> dict[str, Any]:
    """Per method: mean and least tau per set domain, mean percentile where picked paths were trained, and the
    search's mean wall time and final entropy where its facts were recorded."""
    result["summary"] = {}
    for method, runs in result["methods"].items():
        summary: dict[str, Any] = {}
        for d in the_set["domains"]:
            taus = [r[d]["tau"] for r in runs.values()]
            pct = [r[d]["percentile"] for r in runs.values() if "percentile" in r[d]]
            summary[d] = {"tau_mean": round(statistics.mean(taus), 4), "tau_min": min(taus),
                          **({"percentile_mean": round(statistics.mean(pct), 2)} if pct else {})}
        all_pct = [v["percentile_mean"] for v in summary.values() if "percentile_mean" in v]
        summary["percentile_mean_over_domains"] = round(statistics.mean(all_pct), 2) if all_pct else None
        summary["seeds"] = len(runs)
        facts = list(result.get("search", {}).get(method, {}).values())
        if facts:
            summary["search_s_mean"] = round(statistics.mean(f["search_s"] for f in facts), 1)
            summary["entropy_mean"] = round(statistics.mean(v for f in facts for v in f["entropy"].values()), 3)
        result["summary"][method] = summary
    return result


def judge_per_domain(bench: Path, the_set: dict[str, Any], batches: int) -> dict[str, Any]:
    """The same judge for SD-NAS's per-domain supernets (an `mpnas bench` directory's sd-nas runs): each set
    domain's paths scored by the supernet searched on that domain alone. Against the joint supernets' tau this
    says whether sharing one supernet across six domains is what blurs the ranking (the few-shot lever's premise).
    The picked path's percentile uses SD-NAS's own training of it (one seed, the set's recipe)."""
    domains = load_data(set_config(0, None, []), progress=False)
    result: dict[str, Any] = {"batches": batches, "bench": str(bench), "seeds": {}}
    for run in sorted((bench / "sd-nas").glob("seed*")):
        per_domain = {}
        for d, entry in the_set["domains"].items():
            sub = run / "domains" / d
            if not stage_finished(sub, "search"):
                continue
            cfg = read_config(sub)
            space = build_space(cfg)
            supernet, _, _ = load_final_search(sub, space, {d: entry["num_classes"]})
            arch = Architecture.load(sub / "architecture.json")
            seeds = entry["summary"]["seeds"]
            complete = [p for p in entry["paths"] if len(p["top1"]) == len(seeds)]
            truth = [statistics.mean(p["top1"].values()) for p in complete]
            paths = [SpacePath.from_dict(p["path"], space, "rank-set path") for p in complete]
            scores = supernet_scores(supernet, space, domains, d, paths, batches,
                                     cfg.search.val_batch_size or 4 * cfg.search.batch_size, cfg.search.quality)
            t, pv = kendall_tau(scores, truth)
            cell: dict[str, Any] = {"tau": round(t, 4), "tau_p": round(pv, 4), "paths": len(complete),
                                    "picked_macs_ratio": round(path_cost(space, arch.paths[d], entry["num_classes"]).macs
                                                               / entry["target_macs"], 4)}
            if (sub / "results.json").is_file():
                top1 = read_json(sub / "results.json", "results")["domains"][d]["top1"]
                cell["picked_top1"] = [round(top1, 3)]
                cell["percentile"] = round(percentile(top1, truth), 2)
            per_domain[d] = cell
        if per_domain:
            result["seeds"][run.name[4:]] = per_domain
    summary: dict[str, Any] = {}
    for d in the_set["domains"]:
        cells = [r[d] for r in result["seeds"].values() if d in r]
        if cells:
            summary[d] = {"tau_mean": round(statistics.mean(c["tau"] for c in cells), 4), "seeds": len(cells),
                          **({"percentile_mean": round(statistics.mean(c["percentile"] for c in cells), 2)}
                             if all("percentile" in c for c in cells) else {})}
    result["summary"] = summary
    return result


def split_half(rows: list[list[float]], truth: list[float]) -> dict[str, float]:
    """From each path's per-batch scores (rows, an even number of batches): tau between the mean scores of the
    first and second half of the batches, tau against `truth` of the first half's and of all batches' means, the
    spread of the mean scores over the paths, and the mean over paths of a score's standard deviation across
    batches."""
    half = len(rows[0]) // 2
    first = [statistics.mean(r[:half]) for r in rows]
    second = [statistics.mean(r[half:]) for r in rows]
    both = [statistics.mean(r) for r in rows]
    return {"tau_halves": round(kendall_tau(first, second)[0], 4),
            "tau_truth_first_half": round(kendall_tau(first, truth)[0], 4),
            "tau_truth_both": round(kendall_tau(both, truth)[0], 4),
            "score_spread": round(max(both) - min(both), 4),
            "score_batch_sd": round(statistics.mean(statistics.stdev(r) for r in rows), 4)}


def reliability(out: Path, the_set: dict[str, Any], batches: int, methods: list[str] | None) -> dict[str, Any]:
    """Is the supernets' ranking noisy or biased? For each finished search (of `methods`, default all) and set
    domain, the set's paths are scored on two disjoint halves of `2 x batches` validation batches. The halves'
    tau is the score's own split-half reliability: near 1, more validation images cannot raise tau against the
    truth, because the supernet ranks the paths consistently, only not as stand-alone training does (bias); near
    0, the score is mostly batch noise and a longer evaluation would help. Beside it, tau against the truth on
    the first half (the judge's) and on both halves, and tau between the scores and the final controller's
    log-probability of each path: high, the supernet favours the paths its controller drew most (they got more
    weight updates), which fair sampling or a longer uniform warm-up would undo."""
    domains = load_data(set_config(0, None, []), progress=False)
    result: dict[str, Any] = {"batches_per_half": batches, "runs": {}}
    for run in searched_runs(out):
        if methods and run.parent.name not in methods:
            continue
        cfg = read_config(run)
        space = build_space(cfg)
        supernet, controllers, _ = load_final_search(run, space, {d.name: d.num_classes for d in domains})
        size = cfg.search.val_batch_size or 4 * cfg.search.batch_size
        cells = {}
        for d, entry in the_set["domains"].items():
            val = len(domains[d].splits["val"])
            if 2 * batches * size > val:
                raise SystemExit(f"{d}: {2 * batches} batches of {size} exceed its {val} validation images; "
                                 "the halves would overlap")
            seeds = entry["summary"]["seeds"]
            complete = [p for p in entry["paths"] if len(p["top1"]) == len(seeds)]
            truth = [statistics.mean(p["top1"].values()) for p in complete]
            paths = [SpacePath.from_dict(p["path"], space, "rank-set path") for p in complete]
            rows = supernet_batch_scores(supernet, space, domains, d, paths, 2 * batches, size, cfg.search.quality)
            cells[d] = split_half(rows, truth)
            if d in controllers:  # one controller per domain: does the supernet favour what its controller drew most?
                with torch.no_grad():
                    logp = [float(controllers[d].log_prob(space.choices_of(p))) for p in paths]
                cells[d]["tau_controller"] = round(kendall_tau([statistics.mean(r) for r in rows], logp)[0], 4)
            print(f"{run.parent.name}/{run.name} {d}: {cells[d]}", flush=True)
        result["runs"][f"{run.parent.name}/{run.name}"] = cells
    summary: dict[str, Any] = {}
    for key in result["runs"]:
        method = key.split("/")[0]
        for d, c in result["runs"][key].items():
            summary.setdefault(method, {}).setdefault(d, []).append(c)
    result["summary"] = {m: {d: {k: round(statistics.mean(c[k] for c in cs), 4) for k in cs[0] if all(k in c for c in cs)}
                                 | {"runs": len(cs)}
                             for d, cs in per.items()} for m, per in summary.items()}
    return result


def cmd_reliability(args: argparse.Namespace) -> None:
    result = reliability(args.out, read_json(args.rankset, "rank set"), args.batches,
                         args.methods.split(",") if args.methods else None)
    for method, per in result["summary"].items():
        print(method, per)
    if args.write:
        write_json(args.write, result)


def cmd_judge_sd(args: argparse.Namespace) -> None:
    result = judge_per_domain(args.bench, read_json(args.rankset, "rank set"), args.batches)
    print(result["summary"])
    if args.write:
        write_json(args.write, result)


def draw(result: dict[str, Any], the_set: dict[str, Any], path: Path) -> None:
    """Per method (rows) and set domain (columns): each set path's supernet score against its stand-alone top-1,
    one colour per search seed, and the picked path as a star where it was trained alone."""
    methods = list(result["methods"])
    names = list(the_set["domains"])
    fig, axes = plt.subplots(len(methods), len(names), figsize=(4.2 * len(names), 3.4 * len(methods)), squeeze=False)
    for row, method in zip(axes, methods):
        for ax, d in zip(row, names):
            entry = the_set["domains"][d]
            truth = [statistics.mean(p["top1"].values()) for p in entry["paths"]
                     if len(p["top1"]) == len(entry["summary"]["seeds"])]
            for k, (seed, cells) in enumerate(result["methods"][method].items()):
                c = cells[d]
                ax.plot(c["scores"], truth, "o", ms=3, color=f"C{k}", label=f"seed {seed}: tau {c['tau']:+.2f}")
                if "picked_top1" in c:
                    ax.plot(c["picked_score"], statistics.mean(c["picked_top1"]), "*", ms=11, color=f"C{k}",
                            markeredgecolor="black")
            ax.set_title(f"{method}, {d}")
            ax.set_xlabel("final supernet's top-1 on the val batches (fraction)")
            ax.set_ylabel("stand-alone test top-1 (%)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_judge(args: argparse.Namespace) -> None:
    the_set = read_json(args.rankset, "rank set")
    if not args.no_train:
        train_picked(args.out, the_set, args.threads)
    result = judge(args.out, the_set, args.batches)
    if args.write and args.merge and args.write.is_file():
        result = merged(read_json(args.write, "judged file"), result, the_set)
    for method, s in result.get("summary", {}).items():
        print(method, s)
    if args.write:
        write_json(args.write, result)
    if args.figure:
        draw(result, the_set, args.figure)


def lever_table(files: list[Path]) -> str:
    """One markdown row per judged method (plain or with a lever) of the judged files, the later file's rows after
    the earlier's: mean tau per set domain and over them, the picked paths' mean percentile, the search's mean
    wall time and the controllers' mean final entropy, and the seeds behind each."""
    rows = ["| method + lever | seeds | tau " + " | tau ".join(DOMAIN_ORDER) + " | tau mean | percentile mean | "
            "search s | final entropy (nats) |", "|---" * (6 + len(DOMAIN_ORDER)) + "|"]
    for f in files:
        result = read_json(f, "judged file")
        for method, s in result.get("summary", {}).items():
            taus = [s[d]["tau_mean"] for d in DOMAIN_ORDER if d in s]
            pct = s.get("percentile_mean_over_domains")
            cells = [f"{s[d]['tau_mean']:+.2f}" if d in s else "-" for d in DOMAIN_ORDER]
            seeds = s.get("seeds", len(result["methods"][method]))
            rows.append(f"| {method} | {seeds} | " + " | ".join(cells) + f" | {statistics.mean(taus):+.2f} | "
                        + (f"{pct:.1f}" if pct is not None else "-") + " | "
                        + (f"{s['search_s_mean']:.0f}" if "search_s_mean" in s else "-") + " | "
                        + (f"{s['entropy_mean']:.1f}" if "entropy_mean" in s else "-") + " |")
    return "\n".join(rows)


DOMAIN_ORDER = ("glyphs", "textures", "signs")


def cmd_table(args: argparse.Namespace) -> None:
    print(lever_table(args.files))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("--methods", default="mpnas,mpnas-gradient")
    s.add_argument("--levers", default=None, help=f"comma-separated levers on each method: {', '.join(LEVERS)}")
    s.add_argument("--seeds", default="0,1,2")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--threads", type=int, default=1)
    j = sub.add_parser("judge")
    j.add_argument("--rankset", type=Path, required=True)
    j.add_argument("--out", type=Path, required=True)
    j.add_argument("--batches", type=int, default=16)
    j.add_argument("--threads", type=int, default=1)
    j.add_argument("--no-train", action="store_true", help="only judge (the picked paths' pieces already trained)")
    j.add_argument("--write", type=Path, default=None)
    j.add_argument("--merge", action="store_true",
                   help="keep --write's judged (method, seed) cells that this --out no longer holds")
    j.add_argument("--figure", type=Path, default=None, help="draw scores against stand-alone top-1 (PNG)")
    sd = sub.add_parser("judge-sd", help="judge SD-NAS's per-domain supernets of an `mpnas bench` directory")
    sd.add_argument("--bench", type=Path, required=True)
    sd.add_argument("--rankset", type=Path, required=True)
    sd.add_argument("--batches", type=int, default=16)
    sd.add_argument("--threads", type=int, default=1)
    sd.add_argument("--write", type=Path, default=None)
    r = sub.add_parser("reliability", help="split-half reliability of the final supernets' scores of the set's paths")
    r.add_argument("--rankset", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--methods", default=None, help="run labels to judge, e.g. mpnas,mpnas+warmup-0.25 (default: all)")
    r.add_argument("--batches", type=int, default=16, help="validation batches per half")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--write", type=Path, default=None)
    t = sub.add_parser("table", help="the lever table (markdown) of judged files, e.g. quality.json levers.json")
    t.add_argument("files", type=Path, nargs="+")
    args = ap.parse_args()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    {"search": cmd_search, "judge": cmd_judge, "judge-sd": cmd_judge_sd, "table": cmd_table,
     "reliability": cmd_reliability}[args.cmd](args)


if __name__ == "__main__":
    main()
