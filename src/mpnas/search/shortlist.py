"""The shortlist step after the search (`search.shortlist`, issue 27): brief stand-alone training picks the path.

The final supernet ranks equal-cost paths no better than chance on the ground-truth set (benchmarks/RESULTS.md,
issue 24: Kendall tau near 0), while a path trained alone for a tenth of the `default` schedule ranks the same set
with tau near 0.35 on textures and signs (`benchmarks/brief_rank.py`). So the end-of-search candidates
(`search.final_candidates`: the controller's most likely path and draws from it, scored by the supernet) are cut
to the supernet's best `search.shortlist`, each is trained alone on each domain of its controller for
`search.shortlist_steps` steps with the training recipe compressed to those steps, and the one with the best
reward, with Q its mean validation top-1, is kept. The brief models are thrown away; their time is part of the
search's, as the search's wall time and the lever table count it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path as FsPath
from typing import Any, Callable

from mpnas.config import RunConfig
from mpnas.data import DomainSet
from mpnas.rundir import WEIGHTS
from mpnas.search.cost import CostModel
from mpnas.search.rewards import reward
from mpnas.space.arch import Architecture
from mpnas.space.space import Path, SearchSpace
from mpnas.train.evaluate import evaluate
from mpnas.train.trainer import train_architecture

Pick = Callable[[str, list[str], list[Path], list[float]], tuple[int, dict[str, Any]]]


def brief_config(cfg: RunConfig) -> RunConfig:
    """The training recipe compressed to `search.shortlist_steps` steps, validated once, at the end."""
    n = cfg.search.shortlist_steps
    return replace(cfg, train=replace(cfg.train, steps=n, epochs=None, eval_every=n, log_every=n))


def shortlist_pick(cfg: RunConfig, domains: DomainSet, space: SearchSpace, run_dir: FsPath, cost_model: CostModel,
                   targets: dict[str, float], beta: float) -> Pick:
    """The chooser `derive_paths` calls with a controller's candidates and their supernet scores."""
    sc, brief = cfg.search, brief_config(cfg)

    def pick(group: str, members: list[str], candidates: list[Path], scores: list[float]) -> tuple[int, dict[str, Any]]:
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])[:sc.shortlist]
        tried: list[dict[str, Any]] = []
        for i in order:
            t0 = time.perf_counter()
            geo = space.geometry(candidates[i])
            top1 = {}
            for d in members:
                single = DomainSet(domains.source, [domains[d]])
                arch = Architecture(space, {d: candidates[i]}, {d: domains[d].num_classes})
                with tempfile.TemporaryDirectory(dir=run_dir, prefix="shortlist-") as tmp:
                    model, _ = train_architecture(brief, single, arch, FsPath(tmp) / WEIGHTS, progress=False,
                                                  log=lambda row: None)
                    top1[d] = evaluate(model, single, "val", brief.train.eval_batch_size)[d]
            q = statistics.mean(top1.values()) / 100
            rel_cost = statistics.mean(cost_model(d, geo) / targets[d] for d in members)
            tried.append({"candidate": i, "supernet_reward": round(scores[i], 5), "val_top1": top1,
                          "reward": round(reward(sc.reward, q, rel_cost, 1.0, beta), 5),
                          "seconds": round(time.perf_counter() - t0, 2)})
        best = max(range(len(tried)), key=lambda k: float(tried[k]["reward"]))
        return order[best], {"shortlist": tried, "shortlist_steps": sc.shortlist_steps}

    return pick


__all__ = ["Pick", "brief_config", "shortlist_pick"]
