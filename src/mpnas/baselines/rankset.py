"""A ground-truth set for judging a search: equal-cost random paths per domain, each trained alone (NAS-Bench
style; `benchmarks/rankset.py` builds the committed one, `benchmarks/search_quality.py` judges searches on it).

The set is data: per domain a cost target, a tolerance and a list of paths, each with its MACs, parameters and
stand-alone top-1 per training seed. A path is trained alone exactly as SD-NAS trains a domain (one domain, the
run config's training steps, batch and recipe), so "the percentile of a searched path" compares like with like.

Building it is a list of independent pieces, one (domain, path, seed) training each, written as one result file.
A piece is claimed with the bench's `.claim` files before it starts, so that several processes split the work,
and a build that was killed resumes with the pieces it had not finished. The set is only for evaluation: no search
may train on it.
"""

from __future__ import annotations

import random
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from mpnas.analysis.ranking import headroom_and_noise
from mpnas.baselines.bench import claimed
from mpnas.config import RunConfig
from mpnas.data import DomainSet
from mpnas.errors import MpnasError
from mpnas.io import read_json, write_json
from mpnas.search.loop import CostModel
from mpnas.space.arch import Architecture
from mpnas.space.cost import path_cost
from mpnas.space.sampling import paths_in_cost_window
from mpnas.space.space import Path as SpacePath
from mpnas.space.space import SearchSpace
from mpnas.rundir import WEIGHTS
from mpnas.train.evaluate import evaluate
from mpnas.train.trainer import train_architecture

RESULT = "result.json"


def unsaturated_domains(bench: dict[str, Any], saturated_at: float) -> list[str]:
    """The domains whose mean test top-1 is below `saturated_at` for every method (and front point) of a bench's
    `bench.json`: on the others every path scores alike, so they cannot rank a search."""
    methods = list(bench["methods"].values()) + list((bench.get("front") or {}).values())
    domains = list(methods[0]["top1"])
    return [d for d in domains if all(m["top1"][d]["mean"] < saturated_at for m in methods if d in m["top1"])]


def plan_set(space: SearchSpace, fixed: Architecture, domains: list[str], count: int, tolerance: float) -> dict[str, Any]:
    """Per domain, `count` distinct uniformly random paths whose MACs (the search's cost) are within `tolerance`
    of that domain's MACs in `fixed`. Each domain's draws are seeded by its name, so the set is a pure function
    of the space, the fixed architecture, the domain and `count`."""
    if fixed.space.to_dict() != space.to_dict():
        raise MpnasError("rank set: the fixed architecture was searched in another space than the config builds")
    targets: dict[str, tuple[int, float]] = {}
    for d in domains:
        if d not in fixed.paths:
            raise MpnasError(f"rank set: domain {d!r} is not in the fixed architecture ({', '.join(fixed.domains)})")
        nc = fixed.num_classes[d]
        targets[d] = (nc, CostModel(space, {d: nc}, None)(d, space.geometry(fixed.paths[d])))
    return plan_at(space, targets, count, tolerance)


def plan_at(space: SearchSpace, targets: dict[str, tuple[int, float]], count: int, tolerance: float) -> dict[str, Any]:
    """As `plan_set`, at given (classes, target MACs) per domain: another space's set at the same costs (a new
    space is judged against its own set, of the same domains and targets as the default space's)."""
    out: dict[str, Any] = {}
    for d, (nc, target) in targets.items():
        cost = CostModel(space, {d: nc}, None)
        rng = random.Random(zlib.crc32(f"rankset:{d}".encode()))
        paths = paths_in_cost_window(space, lambda p: cost(d, space.geometry(p)), target, count, tolerance, rng)
        costs = [path_cost(space, p, nc) for p in paths]
        out[d] = {"num_classes": nc, "target_macs": target, "tolerance": tolerance,
                  "paths": [{"path": p.to_dict(), "macs": c.macs, "params": c.params} for p, c in zip(paths, costs)]}
    return out


def pieces(domains: dict[str, Any], seeds: list[int], out: Path) -> list[tuple[str, int, int, Path]]:
    """Every (domain, path index, seed) piece and its directory, seed-major, so a partial build has whole seeds."""
    longest = max(len(e["paths"]) for e in domains.values())
    return [(d, i, s, out / d / f"p{i:02d}" / f"seed{s}") for s in seeds for i in range(longest)
            for d, e in domains.items() if i < len(e["paths"])]


def train_path_alone(cfg: RunConfig, domains: DomainSet, domain: str, path: SpacePath, space: SearchSpace,
                     piece: Path) -> dict[str, Any]:
    """One path trained alone on one domain (as SD-NAS trains it); test and val top-1 written to `piece`."""
    single = DomainSet(domains.source, [domains[domain]])
    arch = Architecture(space, {domain: path}, {domain: domains[domain].num_classes})
    t0 = time.perf_counter()
    weights = piece / WEIGHTS
    model, state = train_architecture(cfg, single, arch, weights, progress=False, log=lambda row: None)
    result = {"top1": evaluate(model, single, None, cfg.train.eval_batch_size)[domain],
              "val_top1": evaluate(model, single, "val", cfg.train.eval_batch_size)[domain],
              "best_step": state.best_step, "seed": cfg.seed, "wall_time_s": round(time.perf_counter() - t0, 1)}
    write_json(piece / RESULT, result)
    weights.unlink(missing_ok=True)  # the set keeps figures, not weights
    return result


def build(config_for_seed: Callable[[int], RunConfig], domains: DomainSet, space: SearchSpace, plan: dict[str, Any],
          seeds: list[int], out: Path, limit: int | None = None, say: Callable[[str], None] = print) -> int:
    """Train every piece not finished or claimed by another process; at most `limit` pieces. Returns how many."""
    done = 0
    for d, i, s, piece in pieces(plan, seeds, out):
        if limit is not None and done >= limit:
            break
        if (piece / RESULT).is_file():
            continue
        with claimed(piece) as mine:
            if not mine or (piece / RESULT).is_file():  # another process has it, or finished it meanwhile
                continue
            path = SpacePath.from_dict(plan[d]["paths"][i]["path"], space, f"rank-set path {d} p{i:02d}")
            r = train_path_alone(config_for_seed(s), domains, d, path, space, piece)
        done += 1
        say(f"{d} p{i:02d} seed {s}: top1 {r['top1']:.2f} val {r['val_top1']:.2f} ({r['wall_time_s']} s)")
    return done


def collect(plan: dict[str, Any], out: Path) -> dict[str, Any]:
    """The set as data: per domain its target and paths with `top1` and `val_top1` per seed (as far as built), and
    a summary (headroom, noise, their ratio) over the paths that have every seed."""
    result: dict[str, Any] = {}
    for d, entry in plan.items():
        paths = []
        for i, p in enumerate(entry["paths"]):
            files = sorted((out / d / f"p{i:02d}").glob(f"seed*/{RESULT}"))
            runs = {int(f.parent.name[4:]): read_json(f, "rank-set piece") for f in files}
            paths.append({**p, "top1": {str(s): round(r["top1"], 3) for s, r in sorted(runs.items())},
                          "val_top1": {str(s): round(r["val_top1"], 3) for s, r in sorted(runs.items())}})
        summary = headroom_and_noise([p["top1"] for p in paths])
        summary = {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}
        result[d] = {**{k: v for k, v in entry.items() if k != "paths"}, "summary": summary, "paths": paths}
    return result


def restore(collected: dict[str, Any], out: Path) -> int:
    """Write back the pieces a collected set (`collect`'s output, e.g. a committed rankset.json) holds and `out`
    lacks, so that a build started on a fresh machine continues where the collected one stopped. Returns how many."""
    restored = 0
    for d, entry in collected.items():
        for i, p in enumerate(entry["paths"]):
            for seed, top1 in p.get("top1", {}).items():
                piece = out / d / f"p{i:02d}" / f"seed{seed}"
                if (piece / RESULT).is_file():
                    continue
                write_json(piece / RESULT, {"top1": top1, "val_top1": p["val_top1"][seed], "seed": int(seed),
                                            "restored": True})
                restored += 1
    return restored
