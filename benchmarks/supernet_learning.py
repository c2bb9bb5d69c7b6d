"""Does the supernet learn during a search as fast as a plain network would?

Trains a fresh supernet on the built-in data the way a search does (one batch per domain per step, joint
loss, the search's optimiser and schedule), in five settings, and prints each domain's training loss side by
side (mean of the last `--tail` steps):

    fixed             every step runs the space's reference path (what a plain network of that shape does)
    kernels           the reference path with each layer's kernel size drawn at random per step and domain
    kernels+warm-up   the same with TuNAS's filter and op warm-up over the first `--warmup` fraction of steps
    all               every decision drawn uniformly at random, as a controller does before RL starts
    all+warm-up       the same with the warm-up

Losses do not depend on the machine's load, so this can run beside other jobs. The seeds are fixed.

    python benchmarks/supernet_learning.py --domains digits,mnist,textures --steps 300
"""

from __future__ import annotations

import argparse
import random
import statistics

import torch
import torch.nn.functional as F

from mpnas.config import resolve_config
from mpnas.data import MultiDomainLoader
from mpnas.nn.supernet import Supernet
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.search.loop import warm_up
from mpnas.train.optim import make_optimizer, make_scheduler


MODES = ("fixed", "kernels", "kernels+warm-up", "all", "all+warm-up")


def train(mode: str, args, domains, space, cfg) -> dict[str, float]:
    torch.manual_seed(0)
    names = domains.names()
    net = Supernet(space, {d.name: d.num_classes for d in domains}, dropout=0.0)
    opt = make_optimizer(cfg.search.optim, net.parameters())
    sched = make_scheduler(opt, args.steps, cfg.search.optim.warmup_frac)
    loader = MultiDomainLoader(domains, args.batch, split="train", seed=0)
    rng, warm_rng = random.Random(0), random.Random(1)
    decisions = space.decisions()
    reference = space.choices_of(space.reference_path())
    warm_steps = int(round(args.warmup * args.steps))
    history: dict[str, list[float]] = {d: [] for d in names}
    for step in range(args.steps):
        batch = loader.next()
        losses = []
        for d, (x, y) in batch.items():
            mix = {}
            if mode == "fixed":
                path = space.reference_path()
            else:
                choices = {k.key: rng.choice(k.options) for k in decisions}  # a uniform controller's sample
                if mode.startswith("kernels"):
                    choices = {k.key: choices[k.key] if k.kind == "kernel" else reference[k.key] for k in decisions}
                p = 1.0 - step / warm_steps if mode.endswith("warm-up") and step < warm_steps else 0.0
                if p > 0:
                    choices, mix = warm_up(decisions, choices, p, warm_rng)
                path = space.path_from_choices(choices)
            losses.append(F.cross_entropy(net.forward_geometry(x, space.geometry(path), d, mix), y))
        loss = torch.stack(losses)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sched.step()
        for d, v in zip(names, loss.tolist()):
            history[d].append(v)
    return {d: statistics.mean(v[-args.tail:]) for d, v in history.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default="digits,mnist,textures")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=0.125, help="warm-up fraction (the search's rl_start)")
    ap.add_argument("--tail", type=int, default=25, help="steps averaged at the end")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = resolve_config("default", overrides=[f"data.domains=[{args.domains}]"])
    domains, space = load_data(cfg, progress=False), build_space(cfg)
    rows = {mode: train(mode, args, domains, space, cfg) for mode in MODES}
    names = domains.names()
    print(f"training loss of the supernet, mean of the last {args.tail} of {args.steps} steps (batch {args.batch} per domain)")
    print(f"{'paths':<18}" + "".join(f"{d:>10}" for d in names))
    for mode, r in rows.items():
        print(f"{mode:<18}" + "".join(f"{r[d]:>10.3f}" for d in names))


if __name__ == "__main__":
    main()
