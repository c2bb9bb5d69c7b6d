"""`mpnas add-domain`: new domains added to a trained run, the trained domains untouched (seed 002's scalability).

The trained run (RUN) is only read. The new run directory (NEWRUN) is a normal run of every domain, old and new:
its `architecture.json` holds the trained domains' paths as they were and each new domain's searched path (its
meta's `added` says which nodes came from RUN), its weights hold RUN's tensors unchanged beside the new ones, and
`evaluate`, `report`, `export`, `predict` and `mpnas.load` read it like any other.

- Search: each new domain has its own controller, in `mpnas.nn.extend.ExtensionSupernet`, where every layer offers
  RUN's trained nodes as they are beside new ones; only paths that fit inside RUN's modules, and add at most
  `add_domain.params_budget` times RUN's parameters per domain, are drawn or chosen: the controller samples through
  an exact mask (`mpnas.search.extend`, `mpnas.space.extension.Admissible`).
  The cost is what the domain adds: the mean of its path's MACs and of the parameters it adds, each relative to
  what RUN spends per domain (T0 = 1).
- Train: the merged model of all domains takes RUN's tensors, which take no gradient; the new nodes, the new
  domains' batch norms (on shared convolutions too) and their classifiers learn on the new domains' loss alone.
- The old domains' outputs are bit-identical: every module they run has the same size and the same tensors
  (a test, and the bench, check it).

What is not supported, each refused with its reason: a RUN that has not finished, a slimmable RUN (its width
configurations would have to be profiled again for every domain), task routing, batch norm shared across
domains, another data source, resolution, data seed or space than RUN's, and the gradient strategy.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mpnas.config import RunConfig, to_dict
from mpnas.data import DomainSet
from mpnas.distributed import world
from mpnas.errors import MpnasError
from mpnas.io import read_json
from mpnas.nn.merged import MultiPathModel
from mpnas.pipeline import (check_run, open_run, prepare_run_dir, say, searched, stage_evaluate, stage_report,
                            stage_train)
from mpnas.rundir import (ARCH, METRICS, REPORT, RESULTS, SEARCH_STATE, WEIGHTS, read_architecture, read_config,
                          read_domain_info, run_status, stage_finished, stage_finished_here)
from mpnas.search.extend import Extension, ExtensionCost
from mpnas.search.loop import SearchState, run_search
from mpnas.space.arch import Architecture
from mpnas.space.extension import Frozen
from mpnas.space.presets import build_space
from mpnas.train.checkpoint import Checkpointer, fingerprint
from mpnas.train.evaluate import load_trained_model

METHOD = "add-domain"


def open_base(base_dir: Path) -> tuple[RunConfig, Architecture]:
    """RUN's config and architecture, refusing a RUN that cannot take new domains (the reason named)."""
    if not base_dir.is_dir():
        raise MpnasError(f"--run {base_dir}: not a directory")
    cfg, arch = read_config(base_dir), read_architecture(base_dir)
    if run_status(base_dir, "run") != "finished" or not (base_dir / WEIGHTS).is_file():
        raise MpnasError(f"--run {base_dir}: the run has not finished (no evaluated {WEIGHTS}); finish it first with "
                         f"`mpnas run --resume --out {base_dir}`")
    if cfg.train.slimmable:
        raise MpnasError(f"--run {base_dir}: a slimmable run (train.slimmable=true) cannot take new domains yet: its "
                         "width configurations would have to be trained and profiled again for every domain")
    if arch.routing_ratio is not None:
        raise MpnasError(f"--run {base_dir}: a task-routing (TRL) model cannot take new domains")
    if not cfg.train.bn_per_domain:
        raise MpnasError(f"--run {base_dir}: its batch norm is shared by the domains (train.bn_per_domain=false), so "
                         "a new domain would change the old ones' statistics")
    read_domain_info(base_dir)  # the old domains' class names and statistics go into NEWRUN: a broken file stops here
    return cfg, arch


def configs(base_cfg: RunConfig, base_arch: Architecture, given: RunConfig, new: list[str], base_dir: Path
            ) -> tuple[RunConfig, RunConfig]:
    """The new run's config (every domain: what `evaluate` and `export` read) and the one its search and training
    run with (the new domains only), from the options given; the data and space must be RUN's."""
    if not new:
        raise MpnasError("--domains: name the new domain(s)")
    for name in new:
        if name in base_arch.domains:
            raise MpnasError(f"--domains: domain {name!r} already exists in {base_dir} (its domains: "
                             f"{', '.join(base_arch.domains)}); give the new domain another name")
    b, g = base_cfg.data, given.data
    for field, what in (("spec", "--data"), ("resolution", "--resolution"), ("seed", "data.seed"),
                        ("skip_bad_images", "--skip-bad-images")):
        if getattr(b, field) != getattr(g, field):
            raise MpnasError(f"{what}: {getattr(g, field)!r} differs from {base_dir}'s {getattr(b, field)!r}; the new "
                             "domain must come from RUN's data source, at its resolution and data seed")
    space = build_space(given)
    if space.to_dict() != base_arch.space.to_dict():
        raise MpnasError(f"the search space of these options differs from {base_dir}'s (space.*): a new domain is "
                         "searched in RUN's own space")
    sc, tc = given.search, given.train
    for bad, field in ((sc.strategy != "rl", "search.strategy (must be rl)"),
                       (bool(sc.latency_table), "search.latency_table (the cost is MACs and added parameters)"),
                       (sc.fair_sampling, "search.fair_sampling"), (sc.sandwich, "search.sandwich"),
                       (tc.from_supernet, "train.from_supernet"), (tc.slimmable, "train.slimmable"),
                       (not tc.bn_per_domain, "train.bn_per_domain=false")):
        if bad:
            raise MpnasError(f"config {field}: not supported when adding a domain, whose search samples only paths "
                             "that fit the trained modules and whose training starts from scratch with batch norm "
                             "per domain")
    full = replace(given, data=replace(g, domains=[*base_arch.domains, *new]))
    return full, replace(full, data=replace(g, domains=list(new)))


def added_meta(frozen: Frozen, arch: Architecture, new: list[str], base_dir: Path, cost: ExtensionCost) -> dict[str, Any]:
    """What `architecture.json` records about the added domains: where the trained part came from, which nodes
    each new domain reuses and which are new, and what it adds."""
    space = arch.space
    per_domain = {}
    for d in new:
        geo = space.geometry(arch.paths[d])
        reused = frozen.reused(geo)
        per_domain[d] = {"reused_nodes": reused, "new_nodes": [n for n in geo.nodes() if n not in reused],
                         "added_params": frozen.added_params(geo, arch.num_classes[d]),
                         "cost": round(cost(d, geo), 5)}
    return {"from_run": str(base_dir), "frozen_domains": list(frozen.base.domains), "new_domains": list(new),
            "frozen_nodes": sorted(frozen.nodes), "domains": per_domain,
            "added_params": frozen.growth({d: arch.paths[d] for d in new}, {d: arch.num_classes[d] for d in new}),
            "cost": cost.describe()}


def _search(cfg: RunConfig, out: Path, domains: DomainSet, base: MultiPathModel, frozen: Frozen, base_dir: Path,
            progress: bool, resume: bool) -> Architecture:
    if resume and stage_finished(out, "search"):
        say(f"search: finished earlier in {out}, kept ({ARCH})")
        return read_architecture(out)
    key = fingerprint(to_dict(cfg), method=METHOD, base=frozen.base.to_dict(), domains=domains.names())
    ckpt = Checkpointer(out / SEARCH_STATE, "search", cfg.checkpoint_every, key, out / METRICS)
    extension = Extension(frozen, base, {d.name: d.num_classes for d in domains}, cfg.add_domain.params_budget)

    def search() -> tuple[Architecture, SearchState]:
        found, state = run_search(cfg, domains, frozen.base.space, out, progress=progress, checkpointer=ckpt,
                                  resume=resume, extension=extension)
        arch = frozen.combined(found.paths, found.num_classes)
        arch.meta = {**found.meta, "added": added_meta(frozen, arch, domains.names(), base_dir, extension.costs)}
        return arch, state

    return searched(out, ckpt, resume, METHOD, search)


def add_domain(base_dir: Path, given: RunConfig, new: list[str], out: Path, *, explicit: bool, resume: bool = False,
               overwrite: bool = False, threads: int | None = None, device: str | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Search and train `new` domains around the trained run in `base_dir` into the run directory `out`, then
    evaluate every domain and write the report; returns the results. RUN is never written to."""
    base_dir, out = Path(base_dir), Path(out)
    if out.resolve() == base_dir.resolve():
        raise MpnasError(f"--out {out}: is RUN itself; the new run is written beside RUN, in a directory of its own")
    base_cfg, base_arch = open_base(base_dir)
    full, _ = configs(base_cfg, base_arch, given, new, base_dir)
    full, resuming = open_run(out, "run", full, explicit=explicit, resume=resume, overwrite=overwrite, threads=threads,
                              device=device)
    if resuming:  # the saved config names every domain; its new ones are those RUN lacks
        saved_new = [d for d in full.data.domains or [] if d not in base_arch.domains]
        if set(saved_new) != set(new):
            raise MpnasError(f"--resume: {out} adds {', '.join(saved_new)}, not {', '.join(new)}; give its own "
                             "--domains, or start afresh with --overwrite")
        new = saved_new
    full, cfg = configs(base_cfg, base_arch, full, new, base_dir)
    domains = check_run(cfg, ("search", "train"), out, progress)
    prepare_run_dir(out, "run", full, overwrite)
    t0 = time.perf_counter()
    if resuming and stage_finished_here(out, "evaluate") and (out / RESULTS).is_file():
        say(f"add-domain: evaluated earlier in {out}")
        results = dict(read_json(out / RESULTS, "results file"))
    else:
        base = load_trained_model(replace(base_cfg, device=cfg.device), base_dir, base_arch).eval()
        trained = {k: v.detach().clone() for k, v in base.state_dict().items()}
        frozen = Frozen.of(base_arch)
        arch = _search(cfg, out, domains, base, frozen, base_dir, progress, resuming)
        stage_train(cfg, out, domains, progress, arch=arch, resume=resuming, frozen=trained,
                    before=read_domain_info(base_dir), method=METHOD)
        results = stage_evaluate(full, out, method=METHOD)
    if world().is_main and not (resuming and (out / REPORT).is_file() and stage_finished_here(out, "report")):
        stage_report(out)
    say(f"add-domain: {', '.join(new)} added to {base_dir} in {time.perf_counter() - t0:.0f} s")
    return results


__all__ = ["METHOD", "add_domain", "configs", "open_base"]
