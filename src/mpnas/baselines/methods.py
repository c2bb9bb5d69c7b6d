"""MPNAS and the paper's baselines (seed 002, §5 "Evaluated methods"), on the same space, data, augmentation,
training steps per domain and seeds.

    mpnas     one controller per domain; the domains' paths merged, shared nodes sharing weights
    sd-nas    one search and one from-scratch training per domain; the bundle's cost is the sum of its models
    sp-mn     a backbone searched on one domain (the largest) and shared by every domain, a head per domain
    mdsp-nas  one controller for all domains, rewarded by their mean accuracy; shared backbone, heads per domain
    mrp       one random path per domain, merged and trained like MPNAS, averaged over several trials
    mrp-matched  per domain, a random path whose cost is within ±5% of that domain's MPNAS path of the same
              seed (rejection sampling), merged and trained exactly like MPNAS: what the search itself adds
    mpnas-gradient  MPNAS with the gradient strategy (seed 004): straight-through Gumbel search with a
              minimum-entropy regulariser, then the merged model trained from scratch
    mpnas-gradient-oneshot  the same search's supernet weights for the derived paths, batch norm recalibrated and
              briefly fine-tuned (`train.from_supernet`), no training from scratch. It reuses the search of
              mpnas-gradient of the same seed (identical by construction: same config and seed), and its
              results count that search's wall time
    mrp-matched-gradient  mrp-matched, matched to the paths of mpnas-gradient of the same seed instead
    trl       task routing layers: a fixed random channel mask per domain after every block, on a fixed
              MobileNetV3-like backbone (the space's reference path)

Every method produces architectures (plain data) that go through the same builder, trainer and evaluation.
Shared-backbone methods share every convolution; like all multi-domain models here they keep batch norm
per domain.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mpnas.baselines.names import METHODS
from mpnas.config import RunConfig
from mpnas.data import DomainSet
from mpnas.errors import MpnasError
from mpnas.analysis.metrics import decathlon_score
from mpnas.pipeline import stage_evaluate, stage_report, stage_search, stage_train
from mpnas.rundir import ARCH, finished_results, load_data, mark_stage, stage_times, write_config, write_results
from mpnas.search.loop import CostModel
from mpnas.search.shortlist import shortlist_pick
from mpnas.space.arch import Architecture
from mpnas.space.cost import domain_costs
from mpnas.space.presets import build_space
from mpnas.train.optim import steps_for

# Methods that need another method's run of the same seed (in the same bench directory) before they can start.
NEEDS = {"mrp-matched": "mpnas", "mpnas-gradient-oneshot": "mpnas-gradient", "mrp-matched-gradient": "mpnas-gradient",
         "mrp-matched-shortlist": "mpnas"}
MATCH_TOLERANCE = 0.05  # mrp-matched: |cost / MPNAS cost - 1| at most this, per domain
MATCH_MAX_DRAWS = 20_000  # rejection draws before walking towards the target (mpnas paths matched within 3,594)


def run_method(method: str, cfg: RunConfig, run_dir: Path, domains: DomainSet | None = None, progress: bool = True,
               mpnas_dir: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run one method end to end into `run_dir`; returns its results (also written to results.json).

    `mpnas_dir` is the finished run of the same seed of the method it needs (`NEEDS`), for the methods that need
    one. With `resume`, the stages that finished are kept and an unfinished one continues from its checkpoint."""
    if method not in METHODS:
        raise MpnasError(f"method {method!r} unknown; choose from {', '.join(METHODS)}")
    domains = domains or load_data(cfg, progress)
    cfg = fix_steps(cfg, domains)
    write_config(run_dir, cfg)
    if method in NEEDS:
        if mpnas_dir is None or not (mpnas_dir / ARCH).is_file():
            raise MpnasError(f"method {method} needs a finished {NEEDS[method]} run of seed {cfg.seed} (its architecture.json)")
        if method == "mpnas-gradient-oneshot":
            return _gradient_oneshot(cfg, run_dir, domains, progress, mpnas_dir, resume)
        if method == "mrp-matched-shortlist":
            return _mrp_matched_shortlist(cfg, run_dir, domains, progress, mpnas_dir, resume)
        return _mrp_matched(cfg, run_dir, domains, progress, mpnas_dir, resume, method)
    runner = {
        "mpnas": _mpnas,
        "mpnas-gradient": _mpnas_gradient,
        "sd-nas": _sd_nas,
        "sp-mn": _sp_mn,
        "mdsp-nas": _mdsp_nas,
        "mrp": _mrp,
        "trl": _trl,
    }[method]
    return runner(cfg, run_dir, domains, progress, resume)


def train_and_evaluate(cfg: RunConfig, run_dir: Path, domains: DomainSet, arch: Architecture, method: str,
                       progress: bool = True, report: bool = True, resume: bool = False) -> dict[str, Any]:
    """Train an architecture from scratch in `run_dir`, evaluate it and (optionally) write its report."""
    write_config(run_dir, cfg)
    arch.meta["method"] = method
    arch.save(run_dir / ARCH)
    model = stage_train(cfg, run_dir, domains, progress, arch=arch, resume=resume)
    results = stage_evaluate(cfg, run_dir, domains, model, method=method)
    if report:
        stage_report(run_dir)
    return results


def _mpnas(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, resume: bool = False) -> dict[str, Any]:
    arch = stage_search(cfg, run_dir, domains, progress, method="mpnas", resume=resume)
    return train_and_evaluate(cfg, run_dir, domains, arch, "mpnas", progress, resume=resume)


def gradient_config(cfg: RunConfig) -> RunConfig:
    return replace(cfg, search=replace(cfg.search, strategy="gradient"))


def _mpnas_gradient(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, resume: bool = False) -> dict[str, Any]:
    cfg = gradient_config(cfg)
    write_config(run_dir, cfg)
    arch = stage_search(cfg, run_dir, domains, progress, method="mpnas-gradient", resume=resume)
    return train_and_evaluate(cfg, run_dir, domains, arch, "mpnas-gradient", progress, resume=resume)


def _gradient_oneshot(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, search_dir: Path,
                      resume: bool = False) -> dict[str, Any]:
    """The single-shot model of `search_dir`'s gradient search: its architecture and supernet, fine-tuned here.
    The search's stage time is recorded in this run's stage times, so that the wall time is search + fine-tune."""
    cfg = gradient_config(cfg)
    cfg = replace(cfg, train=replace(cfg.train, from_supernet=True))
    write_config(run_dir, cfg)
    arch = Architecture.load(search_dir / ARCH)
    if arch.domains != domains.names():
        raise MpnasError(f"mpnas-gradient-oneshot: the search {search_dir} has domains {arch.domains}, the data {domains.names()}")
    arch.meta["search_dir"] = str(search_dir)
    searched = stage_times(search_dir).get("search")
    if searched is not None:
        mark_stage(run_dir, "search", searched, reused_from=str(search_dir))
    arch.meta["method"] = "mpnas-gradient-oneshot"
    arch.save(run_dir / ARCH)
    model = stage_train(cfg, run_dir, domains, progress, arch=arch, resume=resume, supernet_from=search_dir)
    results = stage_evaluate(cfg, run_dir, domains, model, method="mpnas-gradient-oneshot")
    stage_report(run_dir)
    return results


def _mdsp_nas(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, resume: bool = False) -> dict[str, Any]:
    arch = stage_search(cfg, run_dir, domains, progress, groups={"shared": domains.names()}, method="mdsp-nas", resume=resume)
    return train_and_evaluate(cfg, run_dir, domains, arch, "mdsp-nas", progress, resume=resume)


def _largest(domains: DomainSet) -> str:
    return max(domains, key=lambda d: len(d.splits["train"])).name


def _sp_mn(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, resume: bool = False) -> dict[str, Any]:
    source = _largest(domains)
    single = DomainSet(domains.source, [domains[source]])
    searched = stage_search(cfg, run_dir / f"search-{source}", single, progress, method="sp-mn-search", resume=resume)
    path = searched.paths[source]
    arch = Architecture(build_space(cfg), {d.name: path for d in domains}, {d.name: d.num_classes for d in domains},
                        meta={"searched_on": source})
    return train_and_evaluate(cfg, run_dir, domains, arch, "sp-mn", progress, resume=resume)


def _trl(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, resume: bool = False) -> dict[str, Any]:
    space = build_space(cfg)
    ref = space.reference_path()
    arch = Architecture(space, {d.name: ref for d in domains}, {d.name: d.num_classes for d in domains},
                        routing_ratio=cfg.baselines.trl_ratio, meta={"backbone": "reference path of the space"})
    return train_and_evaluate(cfg, run_dir, domains, arch, "trl", progress, resume=resume)


def random_architecture(cfg: RunConfig, domains: DomainSet, seed: int) -> Architecture:
    space = build_space(cfg)
    rng = random.Random(seed)
    return Architecture(space, {d.name: space.random_path(rng) for d in domains}, {d.name: d.num_classes for d in domains},
                        meta={"random_seed": seed})


def fix_steps(cfg: RunConfig, domains: DomainSet) -> RunConfig:
    """Turn epoch budgets into step counts of the whole domain set, so that every method, and every single-domain
    search or training inside one (SD-NAS, SP-MN), takes the same number of steps per domain.

    An epoch is one pass over the largest domain's training split. Counted inside SD-NAS's per-domain runs, it
    would be an epoch of each small domain, and SD-NAS would get a fraction of the joint methods' steps."""
    search = replace(cfg.search, steps=steps_for(cfg.search.steps, cfg.search.epochs, domains, cfg.search.batch_size, "search"),
                     epochs=None)
    train = replace(cfg.train, steps=steps_for(cfg.train.steps, cfg.train.epochs, domains, cfg.train.batch_size, "train"),
                    epochs=None)
    return replace(cfg, search=search, train=train)


def matched_random_architecture(cfg: RunConfig, domains: DomainSet, reference: Architecture, seed: int,
                                tolerance: float = MATCH_TOLERANCE, max_draws: int = MATCH_MAX_DRAWS,
                                max_walk: int = 100_000) -> Architecture:
    """Per domain, the first uniformly random path whose cost is within `tolerance` of `reference`'s path.

    The cost is the search's own (MACs, or latency when `search.latency_table` is set), so the comparison holds
    the searched quantity fixed and varies only which path was chosen. The number of draws and the matched
    costs are recorded in the architecture's metadata.

    A target far in the tail of the uniform distribution (the gradient strategy's paths cost a fifth of the
    space's reference) may take no path within the window in `max_draws` draws. The last draw then walks
    towards the target: a uniformly random decision takes a uniformly random option whenever that brings the
    cost closer, until it is inside the window. Such a path is random but not uniform over the window (the
    walk favours paths near its start); `matched[domain]["walk_steps"]` records that it was used."""
    space = build_space(cfg)
    if reference.space.to_dict() != space.to_dict():
        raise MpnasError("mrp-matched: the MPNAS run was searched in another space than this config builds")
    num_classes = {d.name: d.num_classes for d in domains}
    cost = CostModel(space, num_classes, cfg.search.latency_table)
    rng = random.Random(seed)
    paths, match = {}, {}
    for d in domains:
        target = cost(d.name, space.geometry(reference.paths[d.name]))
        draws = 0
        while True:
            draws += 1
            path = space.random_path(rng)
            value = cost(d.name, space.geometry(path))
            if abs(value / target - 1) <= tolerance:
                break
            if draws >= max_draws:
                break
        walk: int | None = 0
        if abs(value / target - 1) > tolerance:
            path, value, walk = _walk_to_cost(space, path, lambda p: cost(d.name, space.geometry(p)), target, tolerance, rng,
                                              max_walk)
            if walk is None:
                raise MpnasError(f"mrp-matched: no random path of domain {d.name} within {tolerance:.0%} of the searched "
                                 f"path's cost {target:.4g} {cost.unit} in {max_draws} draws and a walk towards it")
        paths[d.name] = path
        match[d.name] = {"target": target, "cost": value, "ratio": round(value / target, 4), "draws": draws}
        if walk:
            match[d.name]["walk_steps"] = walk
    return Architecture(space, paths, num_classes,
                        meta={"random_seed": seed, "cost_unit": cost.unit, "tolerance": tolerance, "matched": match})


def _walk_to_cost(space: Any, path: Any, cost: Any, target: float, tolerance: float, rng: random.Random,
                  max_steps: int = 100_000) -> tuple[Any, float, int | None]:
    """Random single-decision changes to `path`, each kept when it brings the cost closer to `target`, until the
    cost is within `tolerance`; the path, its cost and the number of steps (None if it never got there)."""
    decisions = space.decisions()
    choices = {d.key: (False if d.kind == "skip" else d.options[0]) for d in decisions}
    choices.update(space.choices_of(path))
    value = cost(path)
    for step in range(1, max_steps + 1):
        d = rng.choice(decisions)
        trial = {**choices, d.key: rng.choice(d.options)}
        candidate = space.path_from_choices(trial)
        v = cost(candidate)
        if abs(v - target) < abs(value - target):
            choices, path, value = trial, candidate, v
            if abs(value / target - 1) <= tolerance:
                return path, value, step
    return path, value, None


def _mrp_matched(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, mpnas_dir: Path,
                 resume: bool = False, method: str = "mrp-matched") -> dict[str, Any]:
    reference = Architecture.load(mpnas_dir / ARCH)
    if reference.domains != domains.names():
        raise MpnasError(f"{method}: the searched run {mpnas_dir} has domains {reference.domains}, the data {domains.names()}")
    arch = matched_random_architecture(cfg, domains, reference, seed=7919 + cfg.seed)
    arch.meta["matched_to"] = str(mpnas_dir)
    return train_and_evaluate(cfg, run_dir, domains, arch, method, progress, resume=resume)


def _mrp_matched_shortlist(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, mpnas_dir: Path,
                           resume: bool = False) -> dict[str, Any]:
    """mrp-matched given the shortlist's extra time (issue 27): per domain, `search.shortlist` cost-matched random
    paths, each trained alone as briefly as MPNAS's shortlist trains its candidates (`mpnas.search.shortlist`),
    and the best validation reward kept (with MPNAS's own targets and beta), then merged and trained like MPNAS.
    With no shortlist (0 or 1) it is mrp-matched: one path, no brief training."""
    method = "mrp-matched-shortlist"
    reference = Architecture.load(mpnas_dir / ARCH)
    if reference.domains != domains.names():
        raise MpnasError(f"{method}: the searched run {mpnas_dir} has domains {reference.domains}, the data {domains.names()}")
    kept = Architecture.load(run_dir / ARCH) if resume and (run_dir / ARCH).is_file() else None
    if kept is not None and kept.meta.get("method") == method:
        return train_and_evaluate(cfg, run_dir, domains, kept, method, progress, resume=resume)
    k = max(cfg.search.shortlist, 1)
    draws = [matched_random_architecture(cfg, domains, reference, seed=7919 + cfg.seed + 100_003 * j) for j in range(k)]
    arch = draws[0]
    if k > 1:
        space = build_space(cfg)
        cost = CostModel(space, {d.name: d.num_classes for d in domains}, cfg.search.latency_table)
        pick = shortlist_pick(cfg, domains, space, run_dir, cost, dict(reference.meta["targets"]),
                              float(reference.meta["beta"]))
        paths, picked = {}, {}
        for d in domains.names():
            i, info = pick(d, [d], [a.paths[d] for a in draws], [0.0] * k)  # no supernet: every draw is tried
            paths[d], picked[d] = draws[i].paths[d], {"chosen": i, **info}
        arch = Architecture(space, paths, arch.num_classes,
                            meta={"random_seeds": [a.meta["random_seed"] for a in draws], "shortlist": picked,
                                  "matched": {d: draws[picked[d]["chosen"]].meta["matched"][d] for d in paths}})
    arch.meta.update({"method": method, "matched_to": str(mpnas_dir)})
    return train_and_evaluate(cfg, run_dir, domains, arch, method, progress, resume=resume)


def _mrp(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, resume: bool = False) -> dict[str, Any]:
    if cfg.baselines.mrp_trials < 1:
        raise MpnasError("config baselines.mrp_trials must be >= 1")
    t0 = time.perf_counter()
    trials = []
    for k in range(cfg.baselines.mrp_trials):
        trial_dir = run_dir / f"trial{k}"
        done = finished_results(trial_dir)
        if done is not None:
            trials.append(done)
            continue
        arch = random_architecture(cfg, domains, seed=1000 * cfg.seed + k)
        trials.append(train_and_evaluate(cfg, trial_dir, domains, arch, "mrp", progress, report=False, resume=resume))
    results = average_results("mrp", trials)
    mark_stage(run_dir, "mrp", time.perf_counter() - t0)
    write_results(run_dir, results)
    return results


def _sd_nas(cfg: RunConfig, run_dir: Path, domains: DomainSet, progress: bool, resume: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    per_domain, paths = {}, {}
    for dom in domains:
        sub = run_dir / "domains" / dom.name
        single = DomainSet(domains.source, [dom])
        done = finished_results(sub)
        if done is not None:
            per_domain[dom.name] = done
            paths[dom.name] = Architecture.load(sub / ARCH).paths[dom.name]
            continue
        arch = stage_search(cfg, sub, single, progress, method="sd-nas", resume=resume)
        per_domain[dom.name] = train_and_evaluate(cfg, sub, single, arch, "sd-nas", progress, report=False, resume=resume)
        paths[dom.name] = arch.paths[dom.name]
    bundle = Architecture(build_space(cfg), paths, {d.name: d.num_classes for d in domains}, meta={"method": "sd-nas", "bundle": True})
    bundle.save(run_dir / ARCH)
    results = bundle_results(cfg, bundle, {d: r["domains"][d]["top1"] for d, r in per_domain.items()}, domains)
    mark_stage(run_dir, "sd-nas", time.perf_counter() - t0)
    write_results(run_dir, results)
    return results


def bundle_results(cfg: RunConfig, bundle: Architecture, top1: dict[str, float], domains: DomainSet) -> dict[str, Any]:
    """Results of separate single-domain models: nothing is shared, so totals are sums of the models."""
    costs = domain_costs(bundle)
    return {
        "method": "sd-nas",
        "data": cfg.data.spec,
        "budget": cfg.budget,
        "seed": cfg.seed,
        "domains": {
            d.name: {"top1": top1[d.name], "params": costs[d.name].params, "macs": costs[d.name].macs,
                     "num_classes": d.num_classes, "eval_split": d.eval_split()}
            for d in domains
        },
        "mean_top1": round(sum(top1.values()) / len(top1), 3),
        "params_total": sum(c.params for c in costs.values()),
        "macs_total": sum(c.macs for c in costs.values()),
        "jaccard": bundle.jaccard(),  # similarity of the separately searched paths
        "shared_nodes": {},
        "num_nodes": sum(len(bundle.nodes_of(d)) for d in bundle.domains),
        "decathlon_score": _decathlon(cfg, top1),
    }


def _decathlon(cfg: RunConfig, top1: dict[str, float]) -> float | None:
    return decathlon_score(top1) if cfg.data.spec.startswith("decathlon:") else None


def average_results(method: str, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over trials of every figure (MRP); the trials themselves are kept."""
    first = trials[0]
    n = len(trials)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    names = list(first["domains"])
    out = {k: first[k] for k in ("data", "budget", "seed")}
    out.update(
        method=method,
        domains={
            d: {
                "top1": round(mean([t["domains"][d]["top1"] for t in trials]), 3),
                "params": round(mean([t["domains"][d]["params"] for t in trials])),
                "macs": round(mean([t["domains"][d]["macs"] for t in trials])),
                "num_classes": first["domains"][d]["num_classes"],
                "eval_split": first["domains"][d]["eval_split"],
            }
            for d in names
        },
        mean_top1=round(mean([t["mean_top1"] for t in trials]), 3),
        params_total=round(mean([t["params_total"] for t in trials])),
        macs_total=round(mean([t["macs_total"] for t in trials])),
        jaccard={a: {b: round(mean([t["jaccard"][a][b] for t in trials]), 4) for b in names} for a in names},
        shared_nodes={},
        num_nodes=round(mean([t.get("num_nodes", 0) for t in trials]), 2),
        decathlon_score=None if first.get("decathlon_score") is None else mean([t["decathlon_score"] for t in trials]),
        trials=[{"mean_top1": t["mean_top1"], "params_total": t["params_total"], "macs_total": t["macs_total"],
                 "top1": {d: t["domains"][d]["top1"] for d in names}} for t in trials],
        num_trials=n,
    )
    return out


def retrain_with_loss(cfg: RunConfig, arch_dir: Path, run_dir: Path, domains: DomainSet, loss_kind: str, method: str,
                      weights: dict[str, float] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train an existing architecture again from scratch with another loss combination (loss ablations)."""
    arch = Architecture.load(arch_dir / ARCH)
    loss = replace(cfg.loss, kind=loss_kind, weights=dict(weights or {}))
    return train_and_evaluate(replace(cfg, loss=loss), run_dir, domains, arch, method, progress, report=False)


__all__ = ["METHODS", "NEEDS", "fix_steps", "matched_random_architecture", "run_method", "train_and_evaluate",
           "random_architecture", "average_results", "retrain_with_loss"]
