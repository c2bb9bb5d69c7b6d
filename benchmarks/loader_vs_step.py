"""Is the data loader fast enough for CPU training? (goal: loader at least 5x faster than a training step)

Loader: `MultiDomainLoader.next()` on the built-in benchmark, one batch per domain, augmentation on.
Step: one training step (forward, backward, optimiser step) of the merged model of the space's reference
path for every domain, on batches of the same size. Both are timed alternately in one process and reported
as images per second; the ratio is the median of per-round ratios.

    python benchmarks/loader_vs_step.py --batch 32 --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mpnas.config import LossConfig
from mpnas.data import MultiDomainLoader, load_domains
from mpnas.nn.merged import MultiPathModel
from mpnas.space.arch import Architecture
from mpnas.space.presets import get_space
from mpnas.train.losses import LossCombiner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    domains = load_domains("builtin", resolution=args.resolution, progress=False)
    space = get_space("default", args.resolution)
    arch = Architecture(space, {d.name: space.reference_path() for d in domains}, {d.name: d.num_classes for d in domains})
    model = MultiPathModel(arch)
    combiner = LossCombiner(LossConfig(), domains.names())
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1.0, momentum=0.9)
    loader = MultiDomainLoader(domains, args.batch, seed=0)
    fixed = loader.next()
    images = args.batch * len(domains)

    def step() -> None:
        losses = torch.stack([F.cross_entropy(model(x, d), y) for d, (x, y) in fixed.items()])
        opt.zero_grad(set_to_none=True)
        combiner(losses, 0.5).backward()
        opt.step()

    for _ in range(3):
        loader.next()
        step()
    load_t, step_t = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        loader.next()
        t1 = time.perf_counter()
        step()
        t2 = time.perf_counter()
        load_t.append(t1 - t0)
        step_t.append(t2 - t1)
    ratio = statistics.median(s / l for s, l in zip(step_t, load_t))
    threads = torch.get_num_threads()
    print(f"{len(domains)} domains x batch {args.batch} at {args.resolution} px, {threads} threads, torch {torch.__version__}")
    print(f"  loader: {images / statistics.median(load_t):,.0f} images/s (augmentation on)")
    print(f"  training step: {images / statistics.median(step_t):,.0f} images/s")
    print(f"loader / step speed ratio (median of {args.rounds} rounds): {ratio:.1f}x")


if __name__ == "__main__":
    main()
