"""Apply the end-of-search path selection to searches that already finished, then train and evaluate.

`search.final_candidates` only changes what happens after the last search step: the final supernet and
controllers rank candidate paths on fresh validation batches. A finished run's `search_state.pt` holds exactly
that state (supernet, controllers, random generator, validation-loader position), so this script derives the
paths a run with the option would have derived, without searching again, and trains them into a new run
directory like `mpnas run` would. The search's wall time is carried over, plus the time the selection took.

    python benchmarks/reselect.py --candidates 32 --batches 8 runs/b13/mpnas/seed0:runs/arm-select/mpnas/seed0

A bench on the new directory (`mpnas bench --methods mpnas,mrp-matched --out runs/arm-select`) then finds MPNAS
finished and adds the cost-matched random paths.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

from mpnas.baselines.methods import train_and_evaluate
from mpnas.data import MultiDomainLoader
from mpnas.io import read_json, write_json
from mpnas.rundir import STAGES, load_data, read_architecture, read_config, write_config
from mpnas.space.presets import build_space
from mpnas.search.loop import CostModel, _targets, derive_paths, load_final_search
from mpnas.search.rewards import DEFAULT_BETA
from mpnas.space.arch import Architecture


def reselect(src: Path, out: Path, candidates: int, batches: int) -> None:
    cfg = read_config(src)
    cfg = replace(cfg, search=replace(cfg.search, final_candidates=candidates, final_batches=batches))
    domains = load_data(cfg, progress=False)
    space = build_space(cfg)
    num_classes = {d.name: d.num_classes for d in domains}
    sc = cfg.search
    old = read_architecture(src)
    groups = old.meta["groups"]
    t0 = time.perf_counter()
    supernet, controllers, ckpt = load_final_search(src, space, num_classes)
    val_loader = MultiDomainLoader(domains, sc.val_batch_size or 4 * sc.batch_size, split="val", seed=cfg.seed + 1, augment=False)
    val_loader.load_state_dict(ckpt["val_loader"])
    generator = torch.Generator()
    generator.set_state(ckpt["generator"])
    state = SimpleNamespace(supernet=supernet, controllers=controllers, val_loader=val_loader, generator=generator)
    cost_model = CostModel(space, num_classes, sc.latency_table)
    beta = DEFAULT_BETA[sc.reward] if sc.beta is None else sc.beta
    targets = _targets(sc.t0, space, domains.names(), cost_model)
    paths, selection = derive_paths(state, space, groups, sc, cost_model, targets, beta)
    seconds = time.perf_counter() - t0

    out.mkdir(parents=True, exist_ok=True)
    write_config(out, cfg)
    with (src / "metrics.jsonl").open() as fin, (out / "metrics.jsonl").open("w") as fout:  # the search's rows only
        fout.writelines(line for line in fin if '"stage": "search' in line)
    stages = read_json(src / STAGES, "stages file")
    stages["search"]["wall_time_s"] = round(stages["search"]["wall_time_s"] + seconds, 2)
    stages = {"search": {**stages["search"], "selection_s": round(seconds, 2), "reselected_from": str(src)}}
    write_json(out / STAGES, stages)
    meta = {**old.meta, "selection": selection, "reselected_from": str(src)}
    arch = Architecture(space, paths, num_classes, meta=meta)
    changed = [d for d in paths if paths[d] != old.paths[d]]
    print(f"{src} -> {out}: selection {seconds:.1f} s, paths changed for {', '.join(changed) or 'no domain'}", flush=True)
    r = train_and_evaluate(cfg, out, domains, arch, "mpnas", progress=False)
    print(f"  mean top-1 {r['mean_top1']:.2f}, {r['params_total']:,} params, {r['macs_total'] / 1e6:.2f} M MACs", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jobs", nargs="+", help="SRC_RUN:OUT_RUN")
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for job in args.jobs:
        src, _, out = job.partition(":")
        if (Path(out) / "results.json").is_file():
            print(f"{out}: already finished, skipped")
            continue
        reselect(Path(src), Path(out), args.candidates, args.batches)


if __name__ == "__main__":
    main()
