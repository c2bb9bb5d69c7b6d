"""`mpnas bench`: every method on the same data, budget and seeds; Table-2-style comparison and loss ablations.

    DIR/<method>/seed<S>/               one run directory per method and seed (skipped when already finished)
    DIR/mpnas@beta=<B>/seed<S>/         --front: MPNAS searched with cost exponent B, points of its cost front
    DIR/ablate-loss/<variant>/seed<S>/  --ablate loss: MPNAS with each loss variant (retrained on the searched
                                        architecture, or searched again with --ablate-search), and SP-MN, MDSP-NAS
                                        and MRP retrained without ABDP (identity loss)
    DIR/bench.json, DIR/bench.md, DIR/figures/   (written by `mpnas.baselines.tables`)

Several processes (or machines sharing a file system) may run the same bench on one DIR to split the work: each run
directory is claimed with a `.claim` file created exclusively before it starts, others skip it, and every process
tabulates whatever has finished when it stops. A claim left by a process that died on this host is taken over.

By default the loss ablations retrain the searched architecture of the same seed with the other loss (the search
keeps the configured loss), so that only the training objective differs between the rows. The paper uses its
loss in search and training alike; `ablate_search=True` searches again with each loss, so that a row is the whole
method with that loss, at the price of a search per row.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mpnas.baselines.methods import NEEDS, average_results, retrain_with_loss, run_method
from mpnas.baselines.names import METHODS, front_name
from mpnas.baselines.tables import LOSS_VARIANTS, write_bench
from mpnas.config import RunConfig
from mpnas.data import DomainSet
from mpnas.console import log_to
from mpnas.distributed import world
from mpnas.errors import MpnasError
from mpnas.io import make_dir

from mpnas.rundir import finished_results, load_data, write_results
from mpnas.train.optim import apply_threads
from mpnas.search.rewards import DEFAULT_BETA

CLAIM = ".claim"


def _claim_live(lock: Path) -> bool:
    """Whether another process holds this claim: a dead pid on this host releases it; other hosts are trusted."""
    try:
        host, pid = lock.read_text().split()
    except FileNotFoundError:
        return False
    except ValueError:  # being written right now, or garbage: trust it while it is young
        return time.time() - lock.stat().st_mtime < 60
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finished(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's results (None if unfinished), read by rank 0 for every rank under torchrun."""
    return world().decide(lambda: finished_results(run_dir))


def _started(run_dir: Path) -> bool:
    """Whether an unfinished run directory holds anything besides its claim."""
    return world().decide(lambda: any(p.name != CLAIM for p in run_dir.iterdir()) if run_dir.is_dir() else False)


@contextmanager
def claimed(run_dir: Path) -> Iterator[bool]:
    """Yield True when this process owns `run_dir` for the duration of the block, False when another does.
    Under torchrun the ranks are one bench process: rank 0 holds the claim and tells the others."""
    ranks = world()
    if not ranks.active:
        with _claimed_here(run_dir) as mine:
            yield mine
        return
    if ranks.is_main:
        with _claimed_here(run_dir) as mine:
            ranks.decide(lambda: mine)
            yield mine
    else:
        yield ranks.decide(lambda: False)


@contextmanager
def _claimed_here(run_dir: Path) -> Iterator[bool]:
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / CLAIM
    fd = None
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if _claim_live(lock):
                break
            lock.unlink(missing_ok=True)
    if fd is None:
        yield False
        return
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}")
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)


def run_bench(cfg: RunConfig, methods: list[str], seeds: Iterable[int], out: Path, ablate: str | None = None,
              progress: bool = True, say: Callable[[str], None] = print, front: Iterable[float] = (), ablate_search: bool = False,
              poll_s: float = 30.0, resume: bool = False) -> dict[str, Any]:
    """Run every method and seed not yet finished in `out`, then tabulate whatever has finished.

    Methods that build on another method's run (`NEEDS`: mrp-matched on MPNAS, the gradient strategy's
    single-shot model on its search) get that run of the same seed first, whether or not it was asked for;
    `front` adds MPNAS searched with each of these cost exponents (beta). A run directory left
    unfinished by a process that stopped is continued from its checkpoints with `resume`, and refused without."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MpnasError(f"--methods: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if ablate not in (None, "loss"):
        raise MpnasError(f"--ablate: {ablate!r} unknown; the only ablation is 'loss'")
    apply_threads(cfg)
    make_dir(out)
    log_to(out / "log.txt")  # the bench's console, with every run's progress, in its directory
    seeds = list(seeds)
    for m in list(methods):
        if m in NEEDS and NEEDS[m] not in methods:
            methods = [NEEDS[m], *methods]
    methods = sorted(methods, key=lambda m: m in NEEDS)  # a run before what builds on it
    runs: list[tuple[str, str, RunConfig]] = [(m, m, cfg) for m in methods]
    default_beta = DEFAULT_BETA.get(cfg.search.reward) if cfg.search.beta is None else cfg.search.beta
    for beta in front:
        if beta != default_beta:
            runs.append((front_name(beta), "mpnas", replace(cfg, search=replace(cfg.search, beta=beta))))
    domains = None
    for name, method, mcfg in runs:
        for seed in seeds:
            run_dir = out / name / f"seed{seed}"
            if _finished(run_dir):
                say(f"bench: {name} seed {seed} already finished, skipped")
                continue
            needed = NEEDS.get(method, "mpnas")
            mpnas_dir = out / needed / f"seed{seed}"
            if method in NEEDS and not _wait_for(mpnas_dir, f"{name} seed {seed} waits for {needed} seed {seed}", say, poll_s):
                say(f"bench: {name} seed {seed} skipped: the {needed} run of seed {seed} did not finish")
                continue
            with claimed(run_dir) as mine:
                if not mine:
                    say(f"bench: {name} seed {seed} is being run by another process, skipped")
                    continue
                if not resume and _started(run_dir):
                    raise MpnasError(f"bench: {run_dir} holds an unfinished run (its process stopped); continue it with "
                                     "--resume, or delete that directory to start it afresh")
                domains = domains or load_data(cfg, progress)
                say(f"bench: {'resuming' if resume and _started(run_dir) else 'running'} {name} seed {seed} -> {run_dir}")
                run_method(method, replace(mcfg, seed=seed), run_dir, domains, progress, mpnas_dir=mpnas_dir, resume=resume)
    if ablate == "loss":
        for seed in seeds:
            domains = _ablate_loss(cfg, out, seed, domains, progress, say, ablate_search)
    return world().decide(lambda: write_bench(out, cfg))  # rank 0 draws the tables and figures


def _wait_for(run_dir: Path, what: str, say: Callable[[str], None], poll_s: float) -> bool:
    """Wait while another live process holds `run_dir`; True once it has finished."""
    def wait() -> bool:
        if finished_results(run_dir) is None and _claim_live(run_dir / CLAIM):
            say(f"bench: {what} (another process is running it)")
            while finished_results(run_dir) is None and _claim_live(run_dir / CLAIM):
                time.sleep(poll_s)
        return finished_results(run_dir) is not None

    return world().decide(wait)


def _ablate_loss(cfg: RunConfig, out: Path, seed: int, domains: DomainSet | None, progress: bool,
                 say: Callable[[str], None], search: bool = False) -> DomainSet | None:
    """Every loss variant of `seed` not yet finished; returns the domains, loaded when a run needed them."""
    scfg = replace(cfg, seed=seed)
    base = out / "mpnas" / f"seed{seed}"
    if not _finished(base):
        raise MpnasError(f"--ablate loss needs the mpnas run of seed {seed} first (add mpnas to --methods)")
    for kind in ("x",) + tuple(k for k in LOSS_VARIANTS if k not in ("x", "exp_dec")):
        run_dir = out / "ablate-loss" / kind / f"seed{seed}"
        if _finished(run_dir):
            continue
        with claimed(run_dir) as mine:
            if not mine:
                say(f"bench: loss ablation {kind} seed {seed} is being run by another process, skipped")
                continue
            domains = domains or load_data(cfg, progress)
            weights = _empirical_weights(out, seed, say) if kind == "empirical" else None
            say(f"bench: loss ablation {kind} seed {seed} -> {run_dir}{' (searched again)' if search else ''}")
            if search:
                loss = replace(scfg.loss, kind=kind, weights=dict(weights or {}))
                results = run_method("mpnas", replace(scfg, loss=loss), run_dir, domains, progress)
                results["method"] = f"mpnas+{kind}"
                write_results(run_dir, results)
            else:
                retrain_with_loss(scfg, base, run_dir, domains, kind, f"mpnas+{kind}", weights, progress)
    for method in ("sp-mn", "mdsp-nas", "mrp"):
        src = out / method / f"seed{seed}"
        run_dir = out / "ablate-loss" / f"{method}+x" / f"seed{seed}"
        if not _finished(src) or _finished(run_dir):
            continue
        with claimed(run_dir) as mine:
            if not mine:
                say(f"bench: {method} without ABDP seed {seed} is being run by another process, skipped")
                continue
            domains = domains or load_data(cfg, progress)
            say(f"bench: {method} without ABDP seed {seed} -> {run_dir}")
            if method == "mrp":
                trials = []
                for k in range(scfg.baselines.mrp_trials):
                    trials.append(_finished(run_dir / f"trial{k}") or retrain_with_loss(
                        scfg, src / f"trial{k}", run_dir / f"trial{k}", domains, "x", "mrp+x", None, progress))
                write_results(run_dir, average_results("mrp+x", trials))
            else:
                retrain_with_loss(scfg, src, run_dir, domains, "x", f"{method}+x", None, progress)
    return domains


def _empirical_weights(out: Path, seed: int, say: Callable[[str], None] = print, poll_s: float = 30.0) -> dict[str, float]:
    """The paper doubled the weight of its hardest domain; here the hardest is the identity-loss run's lowest
    validation top-1 (never the test split, which would let the test data choose the loss)."""
    x_dir = out / "ablate-loss" / "x" / f"seed{seed}"
    if not _wait_for(x_dir, f"the empirical loss waits for the identity-loss run of seed {seed}", say, poll_s):
        raise MpnasError(f"the empirical loss needs the identity-loss run of seed {seed} first")
    x = _finished(x_dir) or {"domains": {}}
    missing = [d for d, v in x["domains"].items() if v.get("val_top1") is None]
    if missing:
        raise MpnasError(f"the identity-loss run of seed {seed} has no validation top-1 for {', '.join(missing)}; run it again")
    hardest = min(x["domains"], key=lambda d: x["domains"][d]["val_top1"])
    return {hardest: 2.0}
