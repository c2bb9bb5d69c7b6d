"""Probes behind the bench analysis in RESULTS.md ("Why they do not reproduce here"), run on a finished bench dir.

    search-quality RUN...     mean validation top-1 (the reward's Q) of the sampled paths per domain over the last
                              `--last` search steps, from each run's metrics.jsonl (SD-NAS: give its domains/<d> runs)
    retrain RUN[:DOMAIN] ...  retrain a run's architecture from scratch for `--steps` steps with the run's own
                              config: the merged model (RUN), or one domain's path alone (RUN:DOMAIN)
    bn-recalibrate RUN        a model trained with shared batch norm (train.bn_per_domain=false), evaluated with its
                              pooled running statistics and with each domain's statistics re-estimated on its own
                              training images first: how much of the loss is the train/eval statistics mismatch

    python benchmarks/bench_probes.py search-quality runs/bench/mpnas/seed0 runs/bench/sd-nas/seed0/domains/*
    python benchmarks/bench_probes.py retrain --steps 3000 --out runs/probes runs/bench/mpnas/seed1 \
        runs/bench/mpnas/seed1:glyphs runs/bench/sd-nas/seed1/domains/glyphs:glyphs
    python benchmarks/bench_probes.py bn-recalibrate runs/sharedbn/sp-mn-seed0
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from mpnas.baselines.methods import train_and_evaluate
from mpnas.data import DomainSet
from mpnas.data.loader import iterate_split
from mpnas.nn.dynamic import DynamicBatchNorm2d
from mpnas.rundir import load_data, read_config
from mpnas.train.evaluate import load_trained_model
from mpnas.space.arch import Architecture
from mpnas.train.evaluate import evaluate


def search_quality(runs: list[Path], last: int) -> None:
    for run in runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        search = [r for r in rows if r.get("stage") == "search" and "quality" in r]
        if not search:
            raise SystemExit(f"{run}: no search steps in metrics.jsonl")
        end = max(r["step"] for r in search)
        by_domain: dict[str, list[float]] = {}
        for r in search:
            if r["step"] > end - last:
                by_domain.setdefault(r["domain"], []).append(r["quality"])
        cells = ", ".join(f"{d} {statistics.mean(q):.2f}" for d, q in by_domain.items())
        print(f"{run}: {cells}")


def retrain(jobs: list[str], steps: int, out: Path) -> None:
    for job in jobs:
        src, _, domain = job.partition(":")
        src = Path(src)
        cfg = read_config(src)
        cfg = replace(cfg, train=replace(cfg.train, steps=steps, eval_every=max(1, steps // 5)))
        domains = load_data(cfg, progress=False)
        arch = Architecture.load(src / "architecture.json")
        if domain:
            domains = DomainSet(domains.source, [domains[domain]])
            arch = Architecture(arch.space, {domain: arch.paths[domain]}, {domain: arch.num_classes[domain]})
        tag = "-".join(src.parts[-2:]) + (f"-{domain}" if domain else "-merged")
        r = train_and_evaluate(cfg, out / tag, domains, arch, tag, progress=False, report=False)
        top1 = ", ".join(f"{d} {v['top1']:.2f}" for d, v in r["domains"].items())
        print(f"{job} at {steps} steps: mean {r['mean_top1']:.2f} ({top1}), {r['params_total']:,} params", flush=True)


def bn_recalibrate(run: Path, batches: int) -> None:
    cfg = read_config(run)
    domains = load_data(cfg, progress=False)
    model = load_trained_model(cfg, run)

    def show(label: str, top1: dict[str, float]) -> None:
        cells = ", ".join(f"{d} {v:.1f}" for d, v in top1.items())
        print(f"{label}: mean {statistics.mean(top1.values()):.2f} ({cells})")

    show("running statistics as trained", evaluate(model, domains))
    recalibrated = {}
    for dom in domains:
        m = copy.deepcopy(model)
        bns = [mod for mod in m.modules() if isinstance(mod, DynamicBatchNorm2d)]
        for bn in bns:
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
        m.train()
        with torch.no_grad():
            for i, (x, _) in enumerate(iterate_split(dom, "train", 64)):
                if i == batches:
                    break
                for bn in bns:
                    bn.momentum = 1.0 / (i + 1)  # the cumulative average of the recalibration batches
                m(x, dom.name)
        recalibrated[dom.name] = evaluate(m, [dom])[dom.name]
    show(f"statistics re-estimated per domain on {batches} training batches of 64", recalibrated)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("search-quality")
    q.add_argument("runs", nargs="+", type=Path)
    q.add_argument("--last", type=int, default=100)
    r = sub.add_parser("retrain")
    r.add_argument("jobs", nargs="+")
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("bn-recalibrate")
    b.add_argument("run", type=Path)
    b.add_argument("--batches", type=int, default=31)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.cmd == "search-quality":
        search_quality(args.runs, args.last)
    elif args.cmd == "retrain":
        retrain(args.jobs, args.steps, args.out)
    else:
        bn_recalibrate(args.run, args.batches)


if __name__ == "__main__":
    main()
