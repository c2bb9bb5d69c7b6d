"""Search step time of the two strategies, REINFORCE and gradient, side by side, and the whole search they imply.

Times steps of the built-in data's `default` search in both phases (the warm-up, where both strategies only
train the supernet, and the learning phase, where RL scores a path and takes a REINFORCE step and the gradient
strategy takes a gated architecture step), alternating the strategies round by round so that load drifts hit
both alike. Prints the median seconds per step of each phase and the estimated search time (steps x time per
step, without the final selection, which both run alike), and the gradient/RL ratio.

    python benchmarks/strategy_step_cost.py --rounds 3 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from mpnas.config import resolve_config
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.search.loop import time_search_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="default")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = resolve_config(args.budget)
    domains = load_data(cfg, progress=False)
    space = build_space(cfg)
    times: dict[str, dict[str, list[float]]] = {}
    steps = warm = 0
    for _ in range(args.rounds):
        for strategy in ("rl", "gradient"):
            c = replace(cfg, search=replace(cfg.search, strategy=strategy))
            t = time_search_steps(c, domains, space, repeats=args.repeats)
            steps, warm = t["steps"], t["warmup_steps"]
            for phase in ("warmup", "rl"):
                times.setdefault(strategy, {}).setdefault(phase, []).append(t[f"{phase}_s_per_step"])
    total = {}
    for strategy, phases in times.items():
        w, r = (statistics.median(phases[p]) for p in ("warmup", "rl"))
        total[strategy] = warm * w + (steps - warm) * r
        print(f"{strategy:8s}: warm-up {w:.3f} s/step, learning {r:.3f} s/step; {steps} steps ({warm} warm-up): "
              f"about {total[strategy]:.0f} s")
    print(f"gradient / rl, whole search: {total['gradient'] / total['rl']:.2f}x; learning step: "
          f"{statistics.median(times['gradient']['rl']) / statistics.median(times['rl']['rl']):.2f}x")


if __name__ == "__main__":
    main()
