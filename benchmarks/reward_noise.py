"""What is the search's reward worth? Spread of Q between paths against the noise of Q for one path.

Loads a finished search (RUN/search_state.pt), draws `--paths` paths per domain (uniformly, as the controllers
do when RL starts, or from the final controllers with `--from controller`), and scores every path on the same
`--batches` validation batches of the search's size, exactly as the search scores them (training-mode batch
norm, no gradients). Per domain it prints:

    between   std over paths of a path's true mean Q (its mean over batches, with the batch noise removed)
    within    std of one path's Q from batch to batch (what one REINFORCE step sees on top of the signal)
    paired    std of the difference of two paths' Q on the same batch, divided by sqrt(2): the noise left when
              paths are compared on shared images, as a leave-one-out baseline does
    snr       between / within: a single step's reward separates two paths only when this is well above 1
    cost      std over paths of the reward's cost factor (T/T0)^beta - 1, for scale

for both qualities the search offers: top-1 (the paper's) and `prob`, the mean probability of the true class.

    python benchmarks/reward_noise.py runs/b13/mpnas/seed0 --paths 24 --batches 12
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from pathlib import Path

import torch

from mpnas.data import MultiDomainLoader
from mpnas.rundir import load_data, read_config
from mpnas.space.presets import build_space
from mpnas.search.loop import CostModel, _targets, load_final_search
from mpnas.search.rewards import DEFAULT_BETA


def components(q: list[list[float]]) -> dict[str, float]:
    """q[path][batch] -> between-path std of true means, within-path std, paired (same-batch) noise."""
    p, b = len(q), len(q[0])
    within_var = statistics.mean(statistics.variance(row) for row in q)
    means = [statistics.mean(row) for row in q]
    between_var = max(0.0, statistics.variance(means) - within_var / b)
    # paired noise: centre each batch on the batch's mean over paths, then the per-path variance left over
    batch_means = [statistics.mean(q[i][j] for i in range(p)) for j in range(b)]
    centred = [[q[i][j] - batch_means[j] for j in range(b)] for i in range(p)]
    paired_var = statistics.mean(statistics.variance(row) for row in centred) * p / (p - 1)
    within = math.sqrt(within_var)
    return {"mean": statistics.mean(means), "between": math.sqrt(between_var), "within": within,
            "paired": math.sqrt(paired_var), "snr": math.sqrt(between_var) / within if within else float("inf")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--paths", type=int, default=24)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--from", dest="source", choices=("uniform", "controller"), default="uniform")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = read_config(args.run)
    domains = load_data(cfg, progress=False)
    space = build_space(cfg)
    num_classes = {d.name: d.num_classes for d in domains}
    supernet, controllers, _ = load_final_search(args.run, space, num_classes)
    sc = cfg.search
    beta = DEFAULT_BETA[sc.reward] if sc.beta is None else sc.beta
    cost_model = CostModel(space, num_classes, sc.latency_table)
    targets = _targets(sc.t0, space, domains.names(), cost_model)
    loader = MultiDomainLoader(domains, sc.val_batch_size or 4 * sc.batch_size, split="val", seed=args.seed + 99, augment=False)
    batches = [loader.next() for _ in range(args.batches)]
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    print(f"{args.run}: {args.paths} paths ({args.source}) x {args.batches} validation batches of "
          f"{sc.val_batch_size or 4 * sc.batch_size}; beta {beta}")
    print(f"{'domain':<10} {'Q':<5} {'mean':>6} {'between':>8} {'within':>7} {'paired':>7} {'snr':>5} {'cost':>6}")
    for d in domains.names():
        geos = []
        for _ in range(args.paths):
            if args.source == "controller":
                ctrl = controllers.get(d) or next(iter(controllers.values()))
                geos.append(space.geometry(space.path_from_choices(ctrl.sample(gen))))
            else:
                geos.append(space.geometry(space.random_path(rng)))
        top1 = [[0.0] * args.batches for _ in geos]
        prob = [[0.0] * args.batches for _ in geos]
        with torch.no_grad():
            for i, geo in enumerate(geos):
                for j, batch in enumerate(batches):
                    x, y = batch[d]
                    logits = supernet.forward_geometry(x, geo, d)
                    top1[i][j] = (logits.argmax(1) == y).float().mean().item()
                    prob[i][j] = torch.softmax(logits, 1).gather(1, y[:, None]).mean().item()
        cost = statistics.pstdev([(cost_model(d, g) / targets[d]) ** beta - 1 for g in geos])
        for name, q in (("top1", top1), ("prob", prob)):
            c = components(q)
            print(f"{d:<10} {name:<5} {c['mean']:6.3f} {c['between']:8.4f} {c['within']:7.4f} {c['paired']:7.4f} "
                  f"{c['snr']:5.2f} {cost:6.3f}", flush=True)


if __name__ == "__main__":
    main()
