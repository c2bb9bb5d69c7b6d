"""Wall time of one RL search step as the search options change (paths scored per step, final selection).

Runs short searches of the built-in data on the default space with RL from the first step (no warm-up, whose
op averaging costs more), alternating the settings so that machine load drifts affect them alike, and prints
each setting's median seconds per step and its ratio to `samples_per_step=1`. The final selection's one-off
cost is printed separately.

    python benchmarks/search_step_cost.py --steps 20 --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mpnas.config import resolve_config
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.search.loop import run_search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", default="1,2,4")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = resolve_config("default", overrides=[f"search.steps={args.steps}", "search.rl_start=0", "search.log_every=1000"])
    domains = load_data(cfg, progress=False)
    space = build_space(cfg)
    times: dict[int, list[float]] = {}
    ks = [int(k) for k in args.samples.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for k in ks:
                c = replace(cfg, search=replace(cfg.search, samples_per_step=k))
                t0 = time.perf_counter()
                run_search(c, domains, space, Path(tmp), progress=False, log=lambda r: None)
                times.setdefault(k, []).append((time.perf_counter() - t0) / args.steps)
        base = statistics.median(times[ks[0]])
        for k in ks:
            m = statistics.median(times[k])
            print(f"samples_per_step={k}: {m:.3f} s/step, {m / base:.2f}x")
        c = replace(cfg, search=replace(cfg.search, final_candidates=32, final_batches=8))
        t0 = time.perf_counter()
        run_search(c, domains, space, Path(tmp), progress=False, log=lambda r: None)
        extra = time.perf_counter() - t0 - base * args.steps
        print(f"final selection, 32 candidates x 8 batches for {len(domains.names())} domains: about {extra:.1f} s once")


if __name__ == "__main__":
    main()
