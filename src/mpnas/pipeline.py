"""The stages of a run on a run directory (its files: `mpnas.rundir`): search, train, evaluate, report.

Each stage can run alone (`mpnas search`, `mpnas train`, ...) on the directory the previous one wrote. With
`resume=True` a finished stage is skipped and an unfinished one continues from its checkpoint, bit for bit.

A command decides what to do with its directory before it computes anything (`open_run`): a finished run or
stage is never overwritten unless asked (`overwrite`, which removes the old outputs first, so that metrics of
two runs never mix), an unfinished one is continued only with the same config, and a directory holding no
checkpoint holds no run. Then every check that can fail (config, device, data, the stages' own checks) runs
(`check_run`) before the first file is written (`prepare_run_dir`).

Under torchrun only rank 0 writes these files; what the stages decide from them (is a stage finished, is a run
unfinished) is decided by rank 0 for all (`World.decide`), and each stage ends at a barrier.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from mpnas.analysis.metrics import decathlon_score
from mpnas.analysis.report import write_report
from mpnas.analysis.supernet import supernet_quality
from mpnas.config import RunConfig, to_dict
from mpnas.console import log_to
from mpnas.data import DomainSet, MultiDomainLoader
from mpnas.data.info import DomainInfo
from mpnas.distributed import world
from mpnas.errors import MpnasError
from mpnas.io import read_json, read_jsonl, write_json
from mpnas.nn.merged import MultiPathModel
from mpnas.rundir import (ARCH, CONFIG, DOMAINS, LOG, METRICS, REPORT, RESULTS, SEARCH_STATE, STAGES, TRAIN_ROWS,
                          TRAIN_STATE, WEIGHTS, drop_metrics, finished_checkpoint, load_data, mark_stage,
                          read_architecture, read_config, remove_outputs, run_status, stage_finished,
                          stage_finished_here, stage_times, write_config, write_domain_info, write_results)
from mpnas.search.loop import SearchState, check_search, run_search, time_search_steps
from mpnas.space.arch import Architecture
from mpnas.space.configure import add_measured
from mpnas.space.cost import architecture_cost, domain_costs
from mpnas.space.presets import build_space
from mpnas.space.widths import read_config_widths, slim_architecture
from mpnas.train.checkpoint import Checkpointer, fingerprint
from mpnas.train.evaluate import evaluate, load_trained_model
from mpnas.train.optim import apply_threads, compute_dtype, resolve_device, steps_for
from mpnas.train.slimmable import apply_widths, profile
from mpnas.train.trainer import time_train_steps, train_architecture


def say(message: str) -> None:
    """A line for the user on stderr, from rank 0 only (the console, and so log.txt, shows it once)."""
    if world().is_main:
        print(f"mpnas: {message}", file=sys.stderr, flush=True)


def unfinished_run(run_dir: Path, stage: str = "evaluate") -> str | None:
    """Why `run_dir` holds a run that started and has not finished `stage` (None: nothing started, or it finished)."""
    if run_status(run_dir, "run" if stage == "evaluate" else stage) != "unfinished":
        return None
    done = [k for k in ("search", "train") if stage_finished_here(run_dir, k)]
    return f"run directory {run_dir} holds an unfinished run (finished stages: {', '.join(done) or 'none'})"


def refuse_unfinished(run_dir: Path, resume: bool, stage: str = "evaluate") -> None:
    """A new run must not overwrite an unfinished one: the user continues it with --resume or moves it away."""
    why = world().decide(lambda: unfinished_run(run_dir, stage))
    if why and not resume:
        raise MpnasError(f"{why}; continue it with --resume, start it afresh with --overwrite, or choose another directory")


CHANGEABLE = ("threads", "device")  # what a resumed run may change: speed, never the result


def config_differences(saved: RunConfig, given: RunConfig) -> list[str]:
    """Each field (dotted) whose value differs between two configs, with both values, `CHANGEABLE` left out."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and v and k != "weights":
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(to_dict(saved)), flat(to_dict(given))
    return [f"{k} (run: {a.get(k)!r}, given: {b.get(k)!r})" for k in sorted(set(a) | set(b))
            if k not in CHANGEABLE and a.get(k) != b.get(k)]


def open_run(run_dir: Path, stage: str, cfg: RunConfig, *, explicit: bool, resume: bool = False,
             overwrite: bool = False, threads: int | None = None, device: str | None = None) -> tuple[RunConfig, bool]:
    """The config `stage` ("run", "search" or "train") runs with in `run_dir`, and whether it continues the run
    there (True) or starts one (False). Reads files only; refuses with the directory named:

    - a finished run or stage, unless `overwrite` (its outputs are then removed by `prepare_run_dir`);
    - an unfinished one, unless `resume` or `overwrite`;
    - with `resume`, options (`explicit`: the user gave some) that differ from the saved config, field by field.

    `resume` on a directory that holds no run starts one with `cfg`, so one command both starts and continues a
    run (a requeued job, `torchrun --max-restarts`). `threads` and `device` (flags, None when not given) may
    change on a resume: they change the speed, not the result."""
    if resume and overwrite:
        raise MpnasError("--resume continues the run in the directory and --overwrite replaces it: give one of them")
    if run_dir.exists() and not run_dir.is_dir():
        raise MpnasError(f"run directory {run_dir}: exists and is not a directory")
    status = world().decide(lambda: run_status(run_dir, stage))
    what = "run" if stage == "run" else f"{stage} stage"
    if overwrite or status == "none":
        return cfg, False
    if not resume:
        if status == "finished":
            raise MpnasError(f"run directory {run_dir} holds a finished {what}; pass --overwrite to replace it (its "
                             "outputs are removed first), or choose another directory")
        raise MpnasError(f"run directory {run_dir} holds an unfinished {what}; continue it with --resume, start it "
                         "afresh with --overwrite, or choose another directory")
    saved = read_config(run_dir)
    if explicit:
        diff = config_differences(saved, cfg)
        if diff:
            raise MpnasError(f"--resume: the options differ from {run_dir / CONFIG} in {', '.join(diff)}; give the "
                             "run's own options (or none), or start afresh with --overwrite")
    return replace(saved, threads=saved.threads if threads is None else threads, device=device or saved.device), True


def check_run(cfg: RunConfig, stages: tuple[str, ...], run_dir: Path | None = None, progress: bool = True,
              arch: Architecture | None = None) -> DomainSet:
    """Every check of `stages` that can fail, before anything is written: threads, device and precision, the
    space, a writable location, the data (loaded, so decoded into the cache), and each stage's own checks.
    Returns the loaded domains, so that the stages do not load them again."""
    apply_threads(cfg)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise MpnasError(f"config device: {cfg.device!r} asked for, but this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    compute_dtype(cfg.precision, device)
    space = build_space(cfg)
    if run_dir is not None:
        existing = run_dir
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
            raise MpnasError(f"cannot write {run_dir}: {existing} is not writable")
    domains = load_data(cfg, progress)
    if "search" in stages:
        check_search(cfg, domains, space)
    if "train" in stages:
        tc = cfg.train
        if not (tc.from_supernet and tc.finetune_steps == 0):
            steps_for(tc.finetune_steps if tc.from_supernet else tc.steps, None if tc.from_supernet else tc.epochs,
                      domains, tc.batch_size, "train")
        MultiDomainLoader(domains, tc.batch_size, split="train", world=world())
        if arch is not None and tc.from_supernet and run_dir is not None and not (run_dir / SEARCH_STATE).is_file():
            raise MpnasError(f"train.from_supernet: {run_dir / SEARCH_STATE} not found (the search's final state); "
                             f"run `mpnas search` into {run_dir} first")
    if arch is not None:
        check_architecture(arch, domains)
    return domains


def check_architecture(arch: Architecture, domains: DomainSet) -> None:
    """The architecture must be the data's: the same domains in the same order, with the same class counts."""
    names = domains.names()
    if list(arch.domains) != names:
        raise MpnasError(f"architecture domains {arch.domains} differ from the data's {names}; train with the same "
                         "--data/--domains as search")
    for d in domains:
        if arch.num_classes[d.name] != d.num_classes:
            raise MpnasError(f"domain {d.name}: the architecture has {arch.num_classes[d.name]} classes, the data {d.num_classes}")


def prepare_run_dir(run_dir: Path, stage: str, cfg: RunConfig, overwrite: bool = False) -> None:
    """After `open_run` and `check_run`: remove the old outputs if overwriting, write config.yaml, and start
    log.txt (the console's lines so far, then the rest as they come: `mpnas.console`)."""
    if overwrite:
        remove_outputs(run_dir, stage)
    write_config(run_dir, cfg)
    world().barrier()
    log_to(run_dir / LOG)


def _search_checkpointer(cfg: RunConfig, run_dir: Path, groups: dict[str, list[str]] | None, method: str,
                         domains: DomainSet) -> Checkpointer:
    key = fingerprint(to_dict(cfg), groups=groups, method=method, domains=domains.names())
    return Checkpointer(run_dir / SEARCH_STATE, "search", cfg.checkpoint_every, key, run_dir / METRICS)


def _train_checkpointer(cfg: RunConfig, run_dir: Path, arch: Architecture, method: str | None = None) -> Checkpointer:
    """The training stage's checkpointer; `method` (add-domain's) joins the fingerprint so that a checkpoint of
    training from scratch is never resumed as training around frozen nodes, and the other way round."""
    paths = {k: v for k, v in arch.to_dict().items() if k != "meta"}
    key = fingerprint(to_dict(cfg), arch=paths, method=method) if method else fingerprint(to_dict(cfg), arch=paths)
    return Checkpointer(run_dir / TRAIN_STATE, "train", cfg.checkpoint_every, key, run_dir / METRICS)


def _finished_checkpoint(ckpt: Checkpointer) -> dict[str, Any] | None:
    """What a stage's checkpoint records when it holds this run's finished stage (its final state was written, and
    the process was killed before the stage was marked finished), else None. Decided by rank 0."""
    return world().decide(lambda: finished_checkpoint(ckpt.path, ckpt.fingerprint))


# ---------------------------------------------------------------------------------------------------------


def stage_search(cfg: RunConfig, run_dir: Path, domains: DomainSet | None = None, progress: bool = True,
                 groups: dict[str, list[str]] | None = None, method: str = "mpnas", resume: bool = False) -> Architecture:
    """Search and write architecture.json; `groups` maps controllers to domains (default: one per domain)."""
    if resume and stage_finished(run_dir, "search"):
        say(f"search: finished earlier in {run_dir}, kept ({ARCH})")
        return read_architecture(run_dir)
    apply_threads(cfg)
    write_config(run_dir, cfg)
    domains = domains or load_data(cfg, progress)
    ckpt = _search_checkpointer(cfg, run_dir, groups, method, domains)
    return searched(run_dir, ckpt, resume, method, lambda: run_search(
        cfg, domains, build_space(cfg), run_dir, groups=groups, progress=progress, checkpointer=ckpt, resume=resume))


def searched(run_dir: Path, ckpt: Checkpointer, resume: bool, method: str,
             search: Callable[[], tuple[Architecture, SearchState]]) -> Architecture:
    """The search stage around `search` (which runs the loop and returns the architecture and the final state): a
    run killed after its final state was written, before the stage was marked, is kept as it is; otherwise the
    rows an attempt logged before its first checkpoint are dropped, `search` runs, and the architecture (its meta
    naming `method` and the supernet's quality) is written, the final state saved and the stage marked. Shared by
    `stage_search` and `mpnas add-domain`, whose searches differ only in `search`."""
    done = resume and (run_dir / ARCH).is_file() and _finished_checkpoint(ckpt)
    if done:
        mark_stage(run_dir, "search", done["elapsed_s"])
        say(f"search: finished earlier in {run_dir}, kept ({ARCH})")
        world().barrier()
        return read_architecture(run_dir)
    if not (resume and ckpt.path.is_file()):
        drop_metrics(run_dir, None)
    arch, state = search()
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
                arch: Architecture | None = None, resume: bool = False, supernet_from: Path | None = None,
                frozen: Mapping[str, torch.Tensor] | None = None, before: dict[str, DomainInfo] | None = None,
                method: str | None = None) -> MultiPathModel:
    """Train the merged model (from scratch, or with `train.from_supernet` from the supernet of the search in
    `supernet_from`, default `run_dir`) and mark the stage. Add-domain passes the trained run's tensors as
    `frozen` (kept as they are, see `train_architecture`), its domains' info as `before` (domains.json lists them
    first) and its `method`, which joins the checkpoint's fingerprint."""
    apply_threads(cfg)
    arch = arch or read_architecture(run_dir)
    if resume and stage_finished(run_dir, "train"):
        say(f"train: finished earlier in {run_dir}, kept ({WEIGHTS})")
        return load_trained_model(cfg, run_dir, arch)
    domains = domains or load_data(cfg, progress)
    ckpt = _train_checkpointer(cfg, run_dir, arch, method)
    done = resume and (run_dir / DOMAINS).is_file() and _finished_checkpoint(ckpt)
    if done:  # killed after its final state was written, before the stage was marked (e.g. while profiling)
        say(f"train: finished earlier in {run_dir}, kept ({WEIGHTS})")
        model = load_trained_model(cfg, run_dir, arch)
        best_step, best_score, elapsed = done["best_step"], done["best_score"], done["elapsed_s"]
    else:
        if not (resume and ckpt.path.is_file()):
            drop_metrics(run_dir, TRAIN_ROWS)  # rows an attempt logged before its first checkpoint
        model, state = train_architecture(cfg, domains, arch, run_dir / WEIGHTS, progress=progress, checkpointer=ckpt,
                                          resume=resume, supernet_from=supernet_from, frozen=frozen)
        if world().is_main:
            write_domain_info(run_dir, domains, before=before)
        ckpt.save(state.step, state.state_dict(), finished=True)
        best_step, best_score, elapsed = state.best_step, state.best_score, None
    info: dict[str, Any] = {}
    if cfg.train.slimmable:
        t0 = time.perf_counter()
        profile(model, domains, cfg, run_dir)
        info["profile_s"] = round(time.perf_counter() - t0, 1)
    mark_stage(run_dir, "train", ckpt.elapsed() if elapsed is None else elapsed, best_step=best_step,
               best_val_mean_top1=best_score, **info)
    world().barrier()
    return model


def stage_evaluate(cfg: RunConfig, run_dir: Path, domains: DomainSet | None = None, model: MultiPathModel | None = None,
                   method: str | None = None) -> dict[str, Any]:
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
        write_results(run_dir, results)
    world().barrier()
    return results


def evaluate_widths(cfg: RunConfig, run_dir: Path, config_path: Path) -> dict[str, Any]:
    """`mpnas evaluate --config`: the run's model at a width configuration, its batch norm recalibrated; the test
    (and validation) top-1 are added to the configuration file as its measured figures. results.json is untouched."""
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
    if not world().is_main:  # the figures are drawn by rank 0 alone
        return run_dir / REPORT
    t0 = time.perf_counter()
    path = write_report(run_dir)
    if (run_dir / STAGES).is_file():
        mark_stage(run_dir, "report", time.perf_counter() - t0)
    return path


def plan_run(cfg: RunConfig, repeats: int = 3) -> dict[str, Any]:
    """`mpnas run --dry-run`: time a few steps of each stage on this device and extrapolate to the budget's step
    counts, writing nothing. Training is timed on the merged model of the space's reference path for every
    domain (the searched paths are not known yet; the reference is the middle option of every decision)."""
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


def run_all(cfg: RunConfig, run_dir: Path, progress: bool = True, resume: bool = False, overwrite: bool = False,
            domains: DomainSet | None = None) -> dict[str, Any]:
    """Search, train, evaluate and report; with `resume`, finished stages are kept and the others continue.
    `overwrite` removes a previous run's outputs first. Whether to start, continue or refuse is `open_run`'s
    decision (the CLI's); called directly, this refuses an unfinished run without `resume` or `overwrite`."""
    if not resume and not overwrite:
        refuse_unfinished(run_dir, resume)
    domains = domains or check_run(cfg, ("search", "train"), run_dir, progress)
    prepare_run_dir(run_dir, "run", cfg, overwrite)
    if resume and stage_finished(run_dir, "evaluate") and (run_dir / RESULTS).is_file():
        say(f"run: finished earlier in {run_dir}; nothing to continue")
        results = read_json(run_dir / RESULTS, "results file")
    else:
        stage_search(cfg, run_dir, domains, progress, resume=resume)
        model = stage_train(cfg, run_dir, domains, progress, resume=resume)
        results = stage_evaluate(cfg, run_dir, domains, model)
    if world().is_main and not (resume and (run_dir / REPORT).is_file() and stage_finished_here(run_dir, "report")):
        stage_report(run_dir)
    return results
