"""The stages of a run and the run directory they share.

    DIR/config.yaml          the resolved configuration (written by the first stage, read by the others)
    DIR/architecture.json    search: each domain's path and which domains use each node
    DIR/search_state.pt      search: its checkpoint while it runs (`mpnas.train.checkpoint`), then its final state
                             (supernet, controllers, optimisers, data position)
    DIR/model.safetensors    train: the best weights of the merged model, architecture in the metadata
    DIR/domains.json         train: class names, resolution and normalisation per domain (for predict, export)
    DIR/train_state.pt       train: its checkpoint while it runs, then the final training state
    DIR/metrics.jsonl        every stage: one JSON row per logged event
    DIR/stages.json          which stages finished and their wall times
    DIR/results.json         evaluate: per-domain top-1, parameters, MACs, Jaccard, decathlon score
    DIR/report.md, figures/  report

Each stage can run alone (`mpnas search`, `mpnas train`, ...) on the directory the previous one wrote. With
`resume=True` a finished stage is skipped and an unfinished one continues from its checkpoint, bit for bit.

Under torchrun only rank 0 writes these files; what the stages decide from them (is a stage finished, is a run
unfinished) is decided by rank 0 for all (`World.decide`), and each stage ends at a barrier.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from mpnas.analysis.supernet import supernet_quality
from mpnas.config import RunConfig, dump_yaml, load_yaml, to_dict
from mpnas.data import DomainSet, load_domains_from_config
from mpnas.distributed import world
from mpnas.errors import MpnasError
from mpnas.io import atomic_write_text, read_json, read_jsonl, write_json
from mpnas.nn.merged import MultiPathModel
from mpnas.space.arch import Architecture
from mpnas.space.cost import architecture_cost, domain_costs
from mpnas.space.presets import get_space
from mpnas.space.space import SearchSpace

CONFIG, ARCH, WEIGHTS, RESULTS, STAGES = "config.yaml", "architecture.json", "model.safetensors", "results.json", "stages.json"
SEARCH_STATE, TRAIN_STATE, METRICS = "search_state.pt", "train_state.pt", "metrics.jsonl"


def build_space(cfg: RunConfig) -> SearchSpace:
    return get_space(cfg.space.preset, cfg.data.resolution, cfg.space.width_mult, cfg.space.layers_per_block)


def load_data(cfg: RunConfig, progress: bool = True) -> DomainSet:
    """The run's domains; under torchrun rank 0 loads first, so that it alone fills the decoded-data cache."""
    ranks = world()
    if not ranks.active:
        return load_domains_from_config(cfg.data, progress=progress)
    domains = load_domains_from_config(cfg.data, progress=progress) if ranks.is_main else None
    ranks.barrier()
    return domains or load_domains_from_config(cfg.data, progress=False)


def apply_threads(cfg: RunConfig) -> None:
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise MpnasError(f"config threads must be >= 1, got {cfg.threads}")
        torch.set_num_threads(cfg.threads)


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    if world().is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG, dump_yaml(cfg))


def read_config(run_dir: Path) -> RunConfig:
    if not (run_dir / CONFIG).is_file():
        raise MpnasError(f"run directory {run_dir}: no {CONFIG} (is this a directory written by `mpnas search` or `mpnas run`?)")
    return load_yaml(run_dir / CONFIG)


def read_architecture(run_dir: Path) -> Architecture:
    if not (run_dir / ARCH).is_file():
        raise MpnasError(f"run directory {run_dir}: no {ARCH}; run `mpnas search --out {run_dir}` first")
    return Architecture.load(run_dir / ARCH)


def mark_stage(run_dir: Path, stage: str, seconds: float, **info: Any) -> None:
    if not world().is_main:
        return
    stages = read_json(run_dir / STAGES, "stages file") if (run_dir / STAGES).is_file() else {}
    stages[stage] = {"finished": True, "wall_time_s": round(seconds, 2), **info}
    write_json(run_dir / STAGES, stages)


def stage_finished(run_dir: Path, stage: str) -> bool:
    """Whether `stage` finished in `run_dir` (decided by rank 0 under torchrun)."""
    return world().decide(lambda: _stage_finished_here(run_dir, stage))


def _stage_finished_here(run_dir: Path, stage: str) -> bool:
    if not (run_dir / STAGES).is_file():
        return False
    return bool(read_json(run_dir / STAGES, "stages file").get(stage, {}).get("finished"))


def unfinished_run(run_dir: Path, stage: str = "evaluate") -> str | None:
    """Why `run_dir` holds a run that started and has not finished `stage` (None: nothing started, or it finished)."""
    if not run_dir.is_dir() or _stage_finished_here(run_dir, stage):
        return None
    started = {"evaluate": (CONFIG, SEARCH_STATE, TRAIN_STATE), "search": (CONFIG, SEARCH_STATE), "train": (TRAIN_STATE,)}
    if any((run_dir / f).is_file() for f in started[stage]):
        done = [k for k in ("search", "train") if _stage_finished_here(run_dir, k)]
        return f"run directory {run_dir} holds an unfinished run (finished stages: {', '.join(done) or 'none'})"
    return None


def refuse_unfinished(run_dir: Path, resume: bool, stage: str = "evaluate") -> None:
    """A new run must not overwrite an unfinished one: the user continues it with --resume or moves it away."""
    why = world().decide(lambda: unfinished_run(run_dir, stage))
    if why and not resume:
        raise MpnasError(f"{why}; continue it with --resume, or choose another directory")


def resume_config(run_dir: Path, threads: int | None = None, device: str | None = None) -> RunConfig:
    """The config a resumed run continues with: its own, with only the thread count and device changeable."""
    from dataclasses import replace

    cfg = read_config(run_dir)
    return replace(cfg, threads=cfg.threads if threads is None else threads, device=device or cfg.device)


def _search_checkpointer(cfg: RunConfig, run_dir: Path, groups: dict[str, list[str]] | None, method: str,
                         domains: DomainSet) -> Any:
    from mpnas.train.checkpoint import Checkpointer, fingerprint

    key = fingerprint(to_dict(cfg), groups=groups, method=method, domains=domains.names())
    return Checkpointer(run_dir / SEARCH_STATE, "search", cfg.checkpoint_every, key, run_dir / METRICS)


def _train_checkpointer(cfg: RunConfig, run_dir: Path, arch: Architecture) -> Any:
    from mpnas.train.checkpoint import Checkpointer, fingerprint

    paths = {k: v for k, v in arch.to_dict().items() if k != "meta"}
    return Checkpointer(run_dir / TRAIN_STATE, "train", cfg.checkpoint_every, fingerprint(to_dict(cfg), arch=paths),
                        run_dir / METRICS)


def stage_times(run_dir: Path) -> dict[str, float]:
    if not (run_dir / STAGES).is_file():
        return {}
    return {k: v.get("wall_time_s", 0.0) for k, v in read_json(run_dir / STAGES, "stages file").items()}


# ---------------------------------------------------------------------------------------------------------


def stage_search(cfg: RunConfig, run_dir: Path, domains: DomainSet | None = None, progress: bool = True,
                 groups: dict[str, list[str]] | None = None, method: str = "mpnas", resume: bool = False) -> Architecture:
    """Search and write architecture.json; `groups` maps controllers to domains (default: one per domain)."""
    from mpnas.search.loop import run_search

    if resume and stage_finished(run_dir, "search"):
        return read_architecture(run_dir)
    apply_threads(cfg)
    write_config(run_dir, cfg)
    domains = domains or load_data(cfg, progress)
    ckpt = _search_checkpointer(cfg, run_dir, groups, method, domains)
    arch, state = run_search(cfg, domains, build_space(cfg), run_dir, groups=groups, progress=progress,
                             checkpointer=ckpt, resume=resume)
    arch.meta["method"] = method
    if world().is_main:
        # The reward's Q per domain at the end of the warm-up and of the search (mpnas.analysis.supernet).
        arch.meta["supernet_top1"] = supernet_quality(read_jsonl(run_dir / METRICS))
        arch.save(run_dir / ARCH)
    ckpt.save(state.step, state.state_dict(), finished=True)
    mark_stage(run_dir, "search", ckpt.elapsed())
    world().barrier()
    return arch


def stage_train(cfg: RunConfig, run_dir: Path, domains: DomainSet | None = None, progress: bool = True,
                arch: Architecture | None = None, resume: bool = False, supernet_from: Path | None = None) -> MultiPathModel:
    """Train the merged model (from scratch, or with `train.from_supernet` from the supernet of the search in
    `supernet_from`, default `run_dir`) and mark the stage."""
    from mpnas.deploy.info import write_domain_info
    from mpnas.train.trainer import train_architecture

    apply_threads(cfg)
    arch = arch or read_architecture(run_dir)
    if resume and stage_finished(run_dir, "train"):
        return load_trained_model(cfg, run_dir, arch)
    domains = domains or load_data(cfg, progress)
    ckpt = _train_checkpointer(cfg, run_dir, arch)
    model, state = train_architecture(cfg, domains, arch, run_dir / WEIGHTS, progress=progress, checkpointer=ckpt,
                                      resume=resume, supernet_from=supernet_from)
    if world().is_main:
        write_domain_info(run_dir, domains)
    ckpt.save(state.step, state.state_dict(), finished=True)
    info: dict[str, Any] = {}
    if cfg.train.slimmable:
        from mpnas.train.slimmable import profile

        t0 = time.perf_counter()
        profile(model, domains, cfg, run_dir)
        info["profile_s"] = round(time.perf_counter() - t0, 1)
    mark_stage(run_dir, "train", ckpt.elapsed(), best_step=state.best_step, best_val_mean_top1=state.best_score, **info)
    world().barrier()
    return model


def load_trained_model(cfg: RunConfig, run_dir: Path, arch: Architecture | None = None) -> MultiPathModel:
    """The merged model of a trained run directory, with its weights, on the configured device."""
    from mpnas.train.optim import resolve_device
    from mpnas.train.trainer import load_weights

    model = MultiPathModel(arch or read_architecture(run_dir), dropout=cfg.train.dropout,
                           bn_per_domain=cfg.train.bn_per_domain)
    load_weights(model, run_dir / WEIGHTS)
    return model.to(resolve_device(cfg.device))


def stage_evaluate(cfg: RunConfig, run_dir: Path, domains: DomainSet | None = None, model: MultiPathModel | None = None,
                   method: str | None = None) -> dict[str, Any]:
    from mpnas.train.trainer import evaluate

    t0 = time.perf_counter()
    apply_threads(cfg)
    arch = read_architecture(run_dir)
    domains = domains or load_data(cfg, progress=False)
    if model is None:
        model = load_trained_model(cfg, run_dir, arch)
    top1 = evaluate(model, domains, None, cfg.train.eval_batch_size)
    val = evaluate(model, domains, "val", cfg.train.eval_batch_size)  # for choices that must not see the test split
    results = results_dict(method or arch.meta.get("method", "mpnas"), cfg, arch, domains, top1, val)
    mark_stage(run_dir, "evaluate", time.perf_counter() - t0)
    if world().is_main:
        results["wall_time_s"] = stage_times(run_dir)
        write_json(run_dir / RESULTS, results)
    world().barrier()
    return results


def evaluate_widths(cfg: RunConfig, run_dir: Path, config_path: Path) -> dict[str, Any]:
    """`mpnas evaluate --config`: the run's model at a width configuration, its batch norm recalibrated; the test
    (and validation) top-1 are added to the configuration file as its measured figures. results.json is untouched."""
    from mpnas.deploy.configure import add_measured
    from mpnas.space.widths import read_config_widths, slim_architecture
    from mpnas.train.slimmable import apply_widths
    from mpnas.train.trainer import evaluate

    apply_threads(cfg)
    arch = read_architecture(run_dir)
    if not cfg.train.slimmable:
        raise MpnasError(f"run {run_dir}: was not trained with train.slimmable=true, so it has no width configurations")
    widths = read_config_widths(config_path, arch, cfg.train.slim_multipliers)
    domains = load_data(cfg, progress=False)
    model = load_trained_model(cfg, run_dir, arch)
    apply_widths(model, widths, domains, cfg)
    top1 = evaluate(model, domains, None, cfg.train.eval_batch_size)
    val = evaluate(model, domains, "val", cfg.train.eval_batch_size)
    results = results_dict(method=arch.meta.get("method", "mpnas"), cfg=cfg, arch=slim_architecture(arch, widths),
                           domains=domains, top1=top1, val_top1=val)
    if world().is_main:
        config = read_json(config_path, "width configuration")
        if isinstance(config.get("domains"), dict) and set(config["domains"]) == set(arch.domains):
            split = "test" if all(d.eval_split() == "test" for d in domains) else "eval"
            add_measured(config, top1, split)
            add_measured(config, val, "val")
            config["mean_top1"] = results["mean_top1"]
            write_json(config_path, config)
    return results


def results_dict(method: str, cfg: RunConfig, arch: Architecture, domains: DomainSet, top1: dict[str, float],
                 val_top1: dict[str, float] | None = None) -> dict[str, Any]:
    from mpnas.analysis.metrics import decathlon_score

    costs = domain_costs(arch)
    total = architecture_cost(arch, cfg.train.bn_per_domain)
    return {
        "method": method,
        "data": cfg.data.spec,
        "budget": cfg.budget,
        "seed": cfg.seed,
        "world_size": world().size,
        "domains": {
            d.name: {
                "top1": round(top1[d.name], 3),
                "val_top1": None if val_top1 is None else round(val_top1[d.name], 3),
                "params": costs[d.name].params,
                "macs": costs[d.name].macs,
                "num_classes": d.num_classes,
                "eval_split": d.eval_split(),
            }
            for d in domains
        },
        "mean_top1": round(sum(top1.values()) / len(top1), 3),
        "params_total": total.params,
        "macs_total": total.macs,
        "jaccard": arch.jaccard(),
        "shared_nodes": arch.shared_nodes(),
        "num_nodes": len(arch.node_users()),
        "decathlon_score": decathlon_score(top1) if cfg.data.spec.startswith("decathlon:") else None,
    }


def stage_report(run_dir: Path) -> Path:
    from mpnas.analysis.report import REPORT, write_report

    if not world().is_main:  # the figures are drawn by rank 0 alone
        return run_dir / REPORT
    return write_report(run_dir)


def plan_run(cfg: RunConfig, repeats: int = 3) -> dict[str, Any]:
    """`mpnas run --dry-run`: time a few steps of each stage on this device and extrapolate to the budget's step
    counts, writing nothing. Training is timed on the merged model of the space's reference path for every
    domain (the searched paths are not known yet; the reference is the middle option of every decision)."""
    from mpnas.search.loop import time_search_steps
    from mpnas.train.optim import resolve_device
    from mpnas.train.trainer import time_train_steps

    apply_threads(cfg)
    domains = load_data(cfg, progress=False)
    space = build_space(cfg)
    search = time_search_steps(cfg, domains, space, repeats)
    ref = space.reference_path()
    arch = Architecture(space, {d.name: ref for d in domains}, {d.name: d.num_classes for d in domains})
    train = time_train_steps(cfg, domains, arch, repeats)
    rows = []
    if search["warmup_steps"]:
        rows.append(("search, warm-up", search["warmup_steps"], search["warmup_s_per_step"]))
    rows.append(("search, RL", search["steps"] - search["warmup_steps"], search["rl_s_per_step"]))
    rows.append(("train", train["steps"], train["s_per_step"]))
    rows.append(("validation passes", train["evals"], train["s_per_eval"]))
    return {"budget": cfg.budget, "device": str(resolve_device(cfg.device)), "threads": torch.get_num_threads(),
            "domains": len(domains), "resolution": cfg.data.resolution,
            "rows": [{"stage": n, "count": c, "seconds_each": t, "seconds": c * t} for n, c, t in rows],
            "total_s": sum(c * t for _, c, t in rows),
            "not_included": ("the final path selection (search.final_candidates > 1), evaluation and report"
                             if cfg.search.final_candidates > 1 else "evaluation and report (seconds)")}


def run_all(cfg: RunConfig, run_dir: Path, progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Search, train, evaluate and report; with `resume`, finished stages are kept and the others continue."""
    refuse_unfinished(run_dir, resume)
    apply_threads(cfg)
    write_config(run_dir, cfg)
    domains = load_data(cfg, progress)
    stage_search(cfg, run_dir, domains, progress, resume=resume)
    model = stage_train(cfg, run_dir, domains, progress, resume=resume)
    results = stage_evaluate(cfg, run_dir, domains, model)
    if world().is_main:
        stage_report(run_dir)
    return results
