"""Build the ground-truth set of issue 24 (`mpnas.baselines.rankset`): equal-cost random paths, each trained alone.

    # draw the set's paths (once, into OUT/plan.json) and train every (domain, path, seed) piece not yet done
    python benchmarks/rankset.py build --out runs/rankset --workers 2
    # the set as data (no weights), with headroom and noise per domain
    python benchmarks/rankset.py collect --out runs/rankset --write benchmarks/rankset/rankset.json
    # a candidate space's own set, at the same domains and target MACs (issue 27)
    python benchmarks/rankset.py build --out runs/rankset-4x4 --set space.preset=default-4x4 \
        --targets benchmarks/rankset/rankset.json

Which domains: those whose test top-1 in `benchmarks/bench-13-final/bench.json` is below 95% for every method
(the rule is applied to that committed file, before any result of the set exists: glyphs, textures, signs).

Per set domain, `--paths` (32) uniformly random paths of the `default` space whose MACs are within +-5% of one
target: that domain's MACs in the committed fixed architecture `benchmarks/stability/architecture.json` (MPNAS,
seed 0, default budget). Each is trained alone, as SD-NAS trains a domain, with the `default` budget's training
(the current recipe), once per `--seeds` seed. `--workers N` starts N processes of `--threads` threads each;
any number of separate invocations on the same OUT split the pieces too, and a killed build resumes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

from mpnas.baselines import rankset
from mpnas.config import RunConfig, resolve_config
from mpnas.io import read_json, write_json
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.space.arch import Architecture

HERE = Path(__file__).resolve().parent
FIXED_ARCH = HERE / "stability" / "architecture.json"
BENCH = HERE / "bench-13-final" / "bench.json"
SATURATED_AT = 95.0
TOLERANCE = 0.05


def set_config(seed: int, threads: int | None = None, extra: list[str] | None = None) -> RunConfig:
    """The `default` budget with the current recipe, as every method trains; `extra` overrides are recorded."""
    return resolve_config("default", overrides=[f"seed={seed}"] + ([f"threads={threads}"] if threads else []) + (extra or []))


def plan(out: Path, n_paths: int, extra: list[str], targets_from: Path | None = None) -> dict:
    """The set's domains, targets and paths, drawn once and kept in OUT/plan.json (a rerun reuses it). With
    `targets_from` (a committed rankset.json or plan.json), its domains and target MACs, drawn in the space the
    overrides build (a candidate space's own set, at the default set's costs)."""
    if (out / "plan.json").is_file():
        return read_json(out / "plan.json", "rank-set plan")
    space = build_space(set_config(0, None, extra))
    if targets_from is not None:
        source = read_json(targets_from, "rank set")
        targets = {d: (e["num_classes"], e["target_macs"]) for d, e in source["domains"].items()}
        result = {"rule": f"the domains and target MACs of {targets_from}", "space": space.name, "budget": "default",
                  "overrides": extra, "domains": rankset.plan_at(space, targets, n_paths, TOLERANCE)}
    else:
        domains = rankset.unsaturated_domains(read_json(BENCH, "bench file"), SATURATED_AT)
        result = {"rule": f"test top-1 below {SATURATED_AT}% for every method in {BENCH.relative_to(HERE.parent)}",
                  "fixed_architecture": str(FIXED_ARCH.relative_to(HERE.parent)), "budget": "default",
                  "overrides": extra,
                  "domains": rankset.plan_set(space, Architecture.load(FIXED_ARCH), domains, n_paths, TOLERANCE)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", result)
    return result


def worker(out: Path, seeds: list[int], threads: int, extra: list[str]) -> None:
    torch.set_num_threads(threads)
    the_plan = read_json(out / "plan.json", "rank-set plan")
    cfg = set_config(0, threads, extra)
    rankset.build(lambda s: set_config(s, threads, extra), load_data(cfg, progress=False), build_space(cfg),
                  the_plan["domains"], seeds, out, say=lambda line: print(line, flush=True))


def cmd_build(args: argparse.Namespace) -> None:
    plan(args.out, args.paths, args.set, args.targets)
    if args.restore:  # a committed, partly built set: its finished pieces are not trained again
        collected = read_json(args.restore, "rank set")
        if collected["domains"].keys() != read_json(args.out / "plan.json", "rank-set plan")["domains"].keys():
            raise SystemExit(f"{args.restore}: another set's domains than {args.out / 'plan.json'}")
        print(f"restored {rankset.restore(collected['domains'], args.out)} finished pieces from {args.restore}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.workers <= 1:
        worker(args.out, seeds, args.threads, args.set)
        return
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(args.out, seeds, args.threads, args.set)) for _ in range(args.workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"a worker failed (exit codes {[p.exitcode for p in procs]})")


def draw(domains: dict, path: Path) -> None:
    """Per set domain, its paths sorted by mean stand-alone top-1, each seed a dot: the spread between paths
    (what a search can gain) beside the spread of one path over seeds (what one measurement can resolve)."""
    fig, axes = plt.subplots(1, len(domains), figsize=(4.2 * len(domains), 3.4), squeeze=False)
    for ax, (d, e) in zip(axes[0], domains.items()):
        done = sorted((p for p in e["paths"] if p["top1"]), key=lambda p: sum(p["top1"].values()) / len(p["top1"]))
        for rank, p in enumerate(done):
            values = list(p["top1"].values())
            ax.plot([rank] * len(values), values, "o", color="tab:blue", ms=3, alpha=0.7)
            ax.plot(rank, sum(values) / len(values), "_", color="black", ms=8)
        ax.set_title(f"{d}: {len(done)} paths, {e['target_macs'] / 1e6:.2f}M MACs +-5%")
        ax.set_xlabel("path, by mean top-1")
        ax.set_ylabel("stand-alone test top-1 (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_collect(args: argparse.Namespace) -> None:
    the_plan = read_json(args.out / "plan.json", "rank-set plan")
    domains = rankset.collect(the_plan["domains"], args.out)
    for d, e in domains.items():
        print(f"{d}: target {e['target_macs']:.0f} MACs, {len(e['paths'])} paths, {e['summary']}")
    if args.write:
        write_json(args.write, {**{k: v for k, v in the_plan.items() if k != "domains"},
                                "command": "python benchmarks/rankset.py build --out runs/rankset --workers 2",
                                "domains": domains})
    if args.figure:
        draw(domains, args.figure)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--paths", type=int, default=32)
    b.add_argument("--seeds", default="0,1")
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    b.add_argument("--set", action="append", default=[], help="config override for every piece (recorded in the plan)")
    b.add_argument("--restore", type=Path, default=None, help="a collected rankset.json whose finished pieces to keep")
    b.add_argument("--targets", type=Path, default=None,
                   help="draw at this rankset.json's domains and target MACs (a candidate space's own set)")
    c = sub.add_parser("collect")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--write", type=Path, default=None)
    c.add_argument("--figure", type=Path, default=None, help="draw each domain's paths (PNG)")
    args = ap.parse_args()
    {"build": cmd_build, "collect": cmd_collect}[args.cmd](args)


if __name__ == "__main__":
    main()
