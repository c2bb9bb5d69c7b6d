"""Multi-path search (seed 002, Algorithm 1): N domains, N controllers, one weight-sharing supernet.

Every step, each controller samples a path for its domain; the path's reward is its top-1 on a validation
batch of that domain (taken before the weight update, as in Algorithm 1) traded against its cost; the supernet
takes one optimiser step on the domains' training losses combined by the loss component (ABDP by default);
then, once RL has started, each controller takes one REINFORCE step on its reward.

Controllers are organised in groups: MPNAS gives every domain its own controller; MDSP-NAS (a baseline) has
one controller shared by all domains whose reward is their mean accuracy; SD-NAS and SP-MN run this loop on
one domain. That is one code path for all of them.

Before RL starts (the first `rl_start` fraction of steps, 1/8 in the paper) the controllers sample uniformly
and two warm-ups from TuNAS train the shared weights evenly: with a probability that decays from 1 to 0,
each width choice takes its largest option (filter warm-up) and each op choice (kernel, squeeze-and-excite,
skip) runs as the average of all its options (op warm-up); see `warm_up`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from mpnas.config import RunConfig
from mpnas.data import DomainSet, MultiDomainLoader, class_batch_sizes
from mpnas.distributed import World, bn_statistics, world
from mpnas.errors import MpnasError
from mpnas.io import append_jsonl
from mpnas.rundir import METRICS, SEARCH_STATE, read_state
from mpnas.nn.dynamic import OpMix, use_sync_bn
from mpnas.nn.init import initialise
from mpnas.nn.supernet import Supernet
from mpnas.search.controller import Controller, reinforce_loo_step, reinforce_scored
from mpnas.search.cost import CostModel
from mpnas.search.extend import Extension
from mpnas.search.gradient import GradientSearch, batch_counts, scores_of
from mpnas.search.relax import mean_max_probability
from mpnas.config import REWARDS
from mpnas.search.rewards import DEFAULT_BETA, reward
from mpnas.search.shortlist import Pick, shortlist_pick
from mpnas.space.arch import Architecture
from mpnas.space.geometry import PathGeometry
from mpnas.space.sampling import fair_choices, sandwich_choices
from mpnas.space.space import Decision, Path, SearchSpace
from mpnas.train.checkpoint import Checkpointer
from mpnas.train.losses import LossCombiner
from mpnas.train.optim import (
    autocast,
    check_finite,
    compute_dtype,
    joint_step,
    make_optimizer,
    make_scheduler,
    progress_bar,
    resolve_device,
    steps_for,
    synced_clock,
)


@dataclass
class SearchState:
    """Everything a search needs to continue where it stopped: weights, optimisers, controllers, baselines,
    loss state, random generators and data positions (a checkpoint is `state_dict()`)."""

    supernet: Supernet
    combiner: LossCombiner
    optimizer: torch.optim.Optimizer
    scheduler: Any
    controllers: dict[str, Controller]
    controller_optimizers: dict[str, torch.optim.Optimizer]
    baselines: dict[str, float | None]
    train_loader: MultiDomainLoader
    val_loader: MultiDomainLoader
    generator: torch.Generator
    warm_rng: random.Random  # the filter and op warm-up draws
    step: int = 0
    # How the steps run (not saved: they come from the config and the launch, not from the search's history).
    ranks: World = World()
    dtype: torch.dtype | None = None  # autocast dtype of the forward passes
    channels_last: bool = False
    extension: Extension | None = None  # adding domains to a trained model (`mpnas.search.extend`)

    def draw(self, group: str) -> dict[str, Any]:
        """A sample of `group`'s controller (one that fits the trained model, when adding domains: its controller
        is masked, `mpnas.search.extend.Extension.controller`)."""
        return self.controllers[group].sample(self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "supernet": self.supernet.state_dict(),
            "combiner": self.combiner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "controllers": {g: c.state_dict() for g, c in self.controllers.items()},
            "controller_optimizers": {g: o.state_dict() for g, o in self.controller_optimizers.items()},
            "baselines": dict(self.baselines),
            "train_loader": self.train_loader.state_dict(),
            "val_loader": self.val_loader.state_dict(),
            "generator": self.generator.get_state(),
            "warm_rng": self.warm_rng.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.supernet.load_state_dict(state["supernet"])
        self.combiner.load_state_dict(state["combiner"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for g, c in self.controllers.items():
            c.load_state_dict(state["controllers"][g])
            self.controller_optimizers[g].load_state_dict(state["controller_optimizers"][g])
        self.baselines = dict(state["baselines"])
        self.train_loader.load_state_dict(state["train_loader"])
        self.val_loader.load_state_dict(state["val_loader"])
        self.generator.set_state(state["generator"])
        version, internal, gauss = state["warm_rng"]  # a checkpoint may hand back lists for tuples
        self.warm_rng.setstate((version, tuple(internal), gauss))


class Strategy(Protocol):
    """How the controllers learn: what `_search_steps` asks of a search strategy (`search.strategy`).

    Sampling, the warm-ups, the weight step, the derived paths and the logs are shared; a strategy decides which
    sampled paths are scored before the weight step, which extra paths are drawn, how the controllers update
    after it, and what it adds to the logged rows."""

    lr: float  # the controllers' learning rate before TuNAS's end-of-search ramp
    betas: tuple[float, float]  # the controllers' Adam betas

    def scores(self, logging: bool, rl_active: bool, step: int, steps: int, first: int) -> bool:
        """Whether this step's sampled path is scored on the validation batch before the weight step."""
        ...

    def extra_paths(self, state: SearchState, group: str, members: list[str],
                    val_batch: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
        """More paths (choices, reward) of a learning step, drawn after the sampled one."""
        ...

    def learn(self, state: SearchState, groups: dict[str, list[str]], results: dict[str, dict[str, Any]],
              val_batch: dict[str, Any], step: int, steps: int, first: int,
              statistics: list[torch.Tensor]) -> dict[str, dict[str, Any]]:
        """The controllers' update after the weight step; returns each controller's logged result."""
        ...

    def expected_cost(self, c: Controller, members: list[str], result: dict[str, Any], step: int) -> float:
        """E[T / T0] under the controller's distribution, as logged."""
        ...

    def own_fields(self, result: dict[str, Any]) -> dict[str, Any]:
        """The strategy's own fields of a logged search row."""
        ...


class Reinforce:
    """The paper's strategy: every sampled path is scored before the weight step, and each controller takes a
    REINFORCE step on its reward against a moving-average baseline (or, with `search.samples_per_step` > 1, a
    leave-one-out step over that many paths scored on the same validation batch)."""

    betas = (0.0, 0.999)  # no momentum (TuNAS)

    def __init__(self, space: SearchSpace, names: list[str], cost: CostModel, targets: dict[str, float], beta: float,
                 sc: Any) -> None:
        self.space, self.cost, self.targets, self.beta, self.sc = space, cost, targets, beta, sc
        self.lr = sc.controller_lr

    def scores(self, logging: bool, rl_active: bool, step: int, steps: int, first: int) -> bool:
        return True

    def extra_paths(self, state: SearchState, group: str, members: list[str],
                    val_batch: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
        extra = []
        for _ in range(self.sc.samples_per_step - 1):
            choices = state.draw(group)
            scored = _score(state.supernet, self.space.geometry(self.space.path_from_choices(choices)), members, val_batch,
                            {}, self.sc, self.cost, self.targets, self.beta, state)
            extra.append((choices, scored["reward"]))
        return extra

    def learn(self, state: SearchState, groups: dict[str, list[str]], results: dict[str, dict[str, Any]],
              val_batch: dict[str, Any], step: int, steps: int, first: int,
              statistics: list[torch.Tensor]) -> dict[str, dict[str, Any]]:
        m = self.sc.baseline_momentum
        plain = {g: r for g, r in results.items() if not r["extra"]}
        reinforce_scored(state.controllers, state.controller_optimizers, state.baselines, plain, m, learn=step >= first)
        for g, r in results.items():
            if r["extra"]:
                r["baseline"] = state.baselines[g]  # the baseline this step's advantage is measured against
                samples = [(r["choices"], r["reward"]), *r["extra"]]
                reinforce_loo_step(state.controllers[g], state.controller_optimizers[g], samples)
                mean_r = sum(x for _, x in samples) / len(samples)
                b = state.baselines[g]
                state.baselines[g] = mean_r if b is None else m * b + (1 - m) * mean_r
        return results

    def expected_cost(self, c: Controller, members: list[str], result: dict[str, Any], step: int) -> float:
        return _expected_cost(c, self.space, members, self.cost, self.targets, step)

    def own_fields(self, result: dict[str, Any]) -> dict[str, Any]:
        return {}


STRATEGIES: dict[str, type[Reinforce] | type[GradientSearch]] = {"rl": Reinforce, "gradient": GradientSearch}


def make_strategy(sc: Any, space: SearchSpace, names: list[str], cost: CostModel, targets: dict[str, float],
                  beta: float) -> Strategy:
    """The configured `search.strategy` ("rl" or "gradient") for this search."""
    return STRATEGIES[sc.strategy](space, names, cost, targets, beta, sc)


def run_search(
    cfg: RunConfig,
    domains: DomainSet,
    space: SearchSpace,
    run_dir: FsPath,
    groups: dict[str, list[str]] | None = None,
    progress: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
    extension: Extension | None = None,
) -> tuple[Architecture, SearchState]:
    """Search; return the derived architecture (each domain's most likely path) and the final state.

    `groups` maps a controller name to the domains it chooses for; default: one controller per domain.
    `checkpointer` saves the state every so many steps and on SIGTERM/SIGINT; with `resume`, the search
    continues from its checkpoint when there is one. `extension` searches new domains around a trained model
    (`mpnas add-domain`): its supernet, its cost (T0 = 1) and only paths that fit the trained modules.
    """
    sc = cfg.search
    names = domains.names()
    groups = groups or {d: [d] for d in names}
    if sc.reward not in REWARDS:
        raise MpnasError(f"config search.reward: {sc.reward!r} is not one of {', '.join(REWARDS)}")
    if not 0 <= sc.rl_start < 1:
        raise MpnasError(f"config search.rl_start must be in [0, 1), got {sc.rl_start}")
    beta = DEFAULT_BETA[sc.reward] if sc.beta is None else sc.beta
    device = resolve_device(cfg.device)
    steps = steps_for(sc.steps, sc.epochs, domains, sc.batch_size, "search")
    num_classes = {d.name: d.num_classes for d in domains}
    if extension is not None:
        if sc.strategy != "rl" or sc.latency_table or sc.fair_sampling or sc.sandwich:
            raise MpnasError("adding a domain searches with search.strategy=rl and MACs and parameters as the cost "
                             "(no search.latency_table), without search.fair_sampling and search.sandwich (their "
                             "extra paths need not fit the trained modules)")
        cost_model: CostModel = extension.costs
        targets = {d: 1.0 for d in names}
    else:
        cost_model = CostModel(space, num_classes, sc.latency_table)
        targets = _targets(sc.t0, space, names, cost_model)
    ranks = world()
    if log is None:
        log = (lambda row: append_jsonl(run_dir / METRICS, row)) if ranks.is_main else (lambda row: None)

    strategy = make_strategy(sc, space, names, cost_model, targets, beta)
    state = _new_state(cfg, domains, space, groups, steps, device, strategy, extension)
    rl_first = int(round(sc.rl_start * steps))
    decisions = space.decisions()
    checkpointer = checkpointer or Checkpointer(run_dir / SEARCH_STATE, "search", 0, "", None)
    if resume:
        checkpointer.resume(state.load_state_dict)

    bar = progress_bar(steps, "search", progress and ranks.is_main)
    bar.update(state.step)
    with checkpointer:
        _search_steps(state, space, groups, steps, rl_first, decisions, sc, cost_model, targets, beta, log, bar, checkpointer,
                      strategy)
    bar.close()
    ranks.check_in_sync([*state.supernet.parameters(), *bn_statistics(state.supernet),
                         *(p for c in state.controllers.values() for p in c.parameters())], "search")

    pick = shortlist_pick(cfg, domains, space, run_dir, cost_model, targets, beta) if sc.shortlist else None
    paths, selection = derive_paths(state, space, groups, sc, cost_model, targets, beta, log, pick)
    arch = Architecture(
        space,
        {d: paths[d] for d in names},
        num_classes,
        meta={"search_steps": steps, "seed": cfg.seed, "reward": sc.reward, "beta": beta, "cost_unit": cost_model.unit,
              "quality": sc.quality, "samples_per_step": sc.samples_per_step, "selection": selection,
              "targets": targets, "groups": groups, "wall_time_s": round(checkpointer.elapsed(), 2),
              "world_size": ranks.size, "strategy": sc.strategy,
              "mean_max_prob": {g: round(mean_max_probability(c), 4) for g, c in state.controllers.items()}},
    )
    return arch, state


def check_search(cfg: RunConfig, domains: DomainSet, space: SearchSpace) -> None:
    """What `run_search` would refuse about its config and data, checked before a run directory is written:
    step counts, the latency table, the cost targets, batch sizes that must divide among the processes."""
    sc = cfg.search
    steps_for(sc.steps, sc.epochs, domains, sc.batch_size, "search")
    _targets(sc.t0, space, domains.names(), CostModel(space, {d.name: d.num_classes for d in domains}, sc.latency_table))
    MultiDomainLoader(domains, sc.batch_size, split="train", world=world())
    MultiDomainLoader(domains, sc.val_batch_size or 4 * sc.batch_size, split="val", augment=False, world=world())


def _new_state(cfg: RunConfig, domains: DomainSet, space: SearchSpace, groups: dict[str, list[str]], steps: int,
               device: torch.device, strategy: Strategy, extension: Extension | None = None) -> SearchState:
    """A fresh search state: supernet, optimisers, controllers, loaders and generators, all seeded from the config."""
    sc = cfg.search
    ranks = world()
    torch.manual_seed(cfg.seed)
    num_classes = {d.name: d.num_classes for d in domains}
    supernet: Supernet
    if extension is not None:
        supernet = extension.supernet(space, num_classes, cfg.model.init, cfg.model.zero_init_residual,
                                      cfg.model.bn_momentum)
    else:
        supernet = Supernet(space, num_classes, dropout=0.0, bn_momentum=cfg.model.bn_momentum)
        initialise(supernet, cfg.model.init, cfg.model.zero_init_residual)
    supernet = supernet.to(device)
    if cfg.channels_last and device.type == "cuda":
        supernet = supernet.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    if cfg.sync_bn and ranks.active:
        use_sync_bn(supernet)
    combiner = LossCombiner(cfg.loss, domains.names()).to(device)
    optimizer = make_optimizer(sc.optim, list(supernet.parameters()) + list(combiner.parameters()))
    controllers = {g: (Controller(space) if extension is None else extension.controller(space, g)).to(device)
                   for g in groups}
    return SearchState(
        supernet=supernet,
        combiner=combiner,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, steps, sc.optim.warmup_frac),
        controllers=controllers,
        controller_optimizers={g: torch.optim.Adam(c.parameters(), lr=strategy.lr, betas=strategy.betas)
                               for g, c in controllers.items()},
        baselines={g: None for g in groups},
        train_loader=MultiDomainLoader(domains, class_batch_sizes(domains, sc.batch_size, sc.batch_per_class), split="train",
                                       seed=cfg.seed, device=device, world=ranks),
        val_loader=MultiDomainLoader(domains, sc.val_batch_size or 4 * sc.batch_size, split="val", seed=cfg.seed + 1,
                                     augment=False, device=device, world=ranks),
        generator=torch.Generator().manual_seed(cfg.seed),
        warm_rng=random.Random(cfg.seed),
        ranks=ranks,
        dtype=compute_dtype(cfg.precision, device),
        channels_last=cfg.channels_last and device.type == "cuda",
        extension=extension,
    )


def time_search_steps(cfg: RunConfig, domains: DomainSet, space: SearchSpace, repeats: int = 3,
                      groups: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Seconds per search step, measured on this device (`mpnas run --dry-run`): in the middle of the warm-up
    (where about half the decisions run as averages of their options) and once RL is on. The first step of each
    phase is not counted (allocation, kernel selection)."""
    sc = cfg.search
    groups = groups or {d: [d] for d in domains.names()}
    device = resolve_device(cfg.device)
    steps = steps_for(sc.steps, sc.epochs, domains, sc.batch_size, "search")
    num_classes = {d.name: d.num_classes for d in domains}
    cost_model = CostModel(space, num_classes, sc.latency_table)
    targets = _targets(sc.t0, space, domains.names(), cost_model)
    beta = DEFAULT_BETA[sc.reward] if sc.beta is None else sc.beta
    strategy = make_strategy(sc, space, domains.names(), cost_model, targets, beta)
    state = _new_state(cfg, domains, space, groups, steps, device, strategy)
    rl_first = int(round(sc.rl_start * steps))
    quiet = Checkpointer(FsPath("unused"), "search", 0, "", None)
    bar = progress_bar(1, "", False)
    out: dict[str, Any] = {"steps": steps, "warmup_steps": rl_first}
    for phase, start in (("warmup", rl_first // 2), ("rl", rl_first)):
        if phase == "warmup" and rl_first == 0:
            continue
        state.step = start
        times = []
        for i in range(repeats + 1):
            t0 = synced_clock(device)
            _search_steps(state, space, groups, steps, rl_first, space.decisions(), sc, cost_model, targets, beta,
                          lambda row: None, bar, quiet, strategy, until=state.step + 1)
            if i:
                times.append(synced_clock(device) - t0)
        out[f"{phase}_s_per_step"] = sorted(times)[len(times) // 2]
    return out


def _search_steps(state: SearchState, space: SearchSpace, groups: dict[str, list[str]], steps: int, rl_first: int,
                  decisions: list[Decision], sc: Any, cost_model: CostModel, targets: dict[str, float], beta: float,
                  log: Callable[[dict[str, Any]], None], bar: Any, checkpointer: Checkpointer, strategy: Strategy,
                  until: int | None = None) -> None:
    """Algorithm 1's loop from `state.step` to `steps` (or `until`); a checkpoint may be written after any step.

    Sampling, the warm-ups and the supernet's weight step are the same for every strategy; how the controllers
    learn (and which paths are scored for it) is `strategy`'s: REINFORCE on the rewards of paths scored before
    the weight step (`Reinforce`), or the gradient strategy's architecture step after it (`GradientSearch`)."""
    supernet, optimizer, combiner = state.supernet, state.optimizer, state.combiner
    statistics = bn_statistics(supernet) if state.ranks.active else []
    for step in range(state.step, min(steps, until or steps)):
        frac = step / steps
        rl_active = step >= rl_first
        warm_p = 0.0 if rl_active or rl_first == 0 else 1.0 - step / rl_first
        for opt in state.controller_optimizers.values():  # TuNAS raises the RL rate towards the end
            for pg in opt.param_groups:
                pg["lr"] = strategy.lr * (1 + (sc.controller_lr_end_mult - 1) * frac)
        train_batch, val_batch = _layout(state.train_loader.next(), state), _layout(state.val_loader.next(), state)

        logging = step % sc.log_every == 0 or step == steps - 1
        losses, results = [], {}
        for g, members in groups.items():
            choices = state.draw(g)
            mix: dict[tuple[int, int], OpMix] = {}
            if warm_p > 0 and not sc.fair_sampling:
                choices, mix = warm_up(decisions, choices, warm_p, state.warm_rng, sc.filter_warmup, sc.op_warmup)
            geo = space.geometry(space.path_from_choices(choices))
            if strategy.scores(logging, rl_active, step, steps, rl_first):
                r = _score(supernet, geo, members, val_batch, mix, sc, cost_model, targets, beta, state)
            else:
                r = {}
            trained = [(geo, mix)]
            if sc.fair_sampling:  # the weights learn on a fair set of paths; the controller's sample is only scored
                trained = [(space.geometry(space.path_from_choices(c)), {}) for c in fair_choices(decisions, state.warm_rng)]
            elif sc.sandwich:  # and the sample at its largest and smallest widths
                trained += [(space.geometry(space.path_from_choices(c)), mix) for c in sandwich_choices(decisions, choices)]
            for d in members:
                x, y = train_batch[d]
                per_path = []
                for path_geo, path_mix in trained:
                    with autocast(x.device, state.dtype):
                        logits = supernet.forward_geometry(x, path_geo, d, path_mix)
                    per_path.append(F.cross_entropy(logits.float(), y))
                losses.append(per_path[0] if len(per_path) == 1 else torch.stack(per_path).mean())
            r["choices"] = choices
            # Extra paths, scored on the same validation batch (forward passes only), for a leave-one-out update.
            r["extra"] = strategy.extra_paths(state, g, members, val_batch) if rl_active else []
            results[g] = r

        loss_vec = state.ranks.global_losses(torch.stack(losses))
        check_finite(loss_vec, [d for m in groups.values() for d in m], step, "search")  # search syncs per step anyway
        joint_step(combiner, loss_vec, frac, optimizer, state.scheduler, supernet.parameters(), sc.optim.grad_clip,
                   state.ranks, statistics)
        results = strategy.learn(state, groups, results, val_batch, step, steps, rl_first, statistics)
        state.step = step + 1

        if logging:
            per_domain_loss = dict(zip([d for m in groups.values() for d in m], loss_vec.tolist()))
            for g, members in groups.items():
                c = state.controllers[g]
                r = results[g]
                exp_cost, own = strategy.expected_cost(c, members, r, step), strategy.own_fields(r)
                for d in members:
                    log({"stage": "search", "step": step, "domain": d, "controller": g,
                         "loss": per_domain_loss[d], "quality": r["qualities"][d],
                         "top1": r["top1"][d], "paths_scored": 1 + len(r["extra"]),
                         "cost": r["cost"], "reward": r["reward"],
                         "baseline": r["baseline"], "entropy": c.entropy().item(),
                         "expected_cost": exp_cost, "rl_active": rl_active, "lr": state.scheduler.get_last_lr()[0], **own})
                    log({"stage": "search_probs", "step": step, "domain": d, "probs": c.probabilities()})
            mean_r = sum(r["reward"] for r in results.values()) / len(results)
            bar.set_postfix(reward=f"{mean_r:.3f}", loss=f"{loss_vec.mean().item():.3f}", rl="on" if rl_active else "warm")
        bar.update(1)
        checkpointer.step_done(state.step, state.state_dict)


def _layout(batch: dict[str, Any], state: SearchState) -> dict[str, Any]:
    """The batch in the supernet's memory layout (channels-last on CUDA when configured)."""
    if not state.channels_last:
        return batch
    return {d: (x.contiguous(memory_format=torch.channels_last), y) for d, (x, y) in batch.items()}


def load_final_search(run_dir: FsPath, space: SearchSpace, num_classes: dict[str, int]
                      ) -> tuple[Supernet, dict[str, Controller], dict[str, Any]]:
    """A finished search's supernet (in training mode: paths are scored with batch statistics, as during search),
    its controllers, and the whole checkpoint (`search_state.pt`), for probes and re-derivation."""
    ckpt = read_state(run_dir / SEARCH_STATE)
    supernet = Supernet(space, num_classes, dropout=0.0)
    if set(ckpt["supernet"]) != set(supernet.state_dict()):  # e.g. an add-domain search, whose supernet holds RUN's nodes
        raise MpnasError(f"{run_dir / SEARCH_STATE}: not the supernet of a plain search of this space and these "
                         f"domains ({', '.join(num_classes)}); an add-domain run's search cannot be probed")
    supernet.load_state_dict(ckpt["supernet"])
    supernet.train()
    controllers = {}
    for g, sd in ckpt["controllers"].items():
        controllers[g] = Controller(space)
        controllers[g].load_state_dict(sd)
    return supernet, controllers, ckpt


def derive_paths(state: SearchState, space: SearchSpace, groups: dict[str, list[str]], sc: Any, cost_model: CostModel,
                 targets: dict[str, float], beta: float,
                 log: Callable[[dict[str, Any]], None] | None = None,
                 pick: Pick | None = None) -> tuple[dict[str, Path], dict[str, Any]]:
    """Each domain's path at the end of search.

    With `search.final_candidates` <= 1, each controller's most likely path (the paper's). Otherwise the most
    likely path and `final_candidates - 1` paths drawn from the controller are all scored by the trained supernet
    on the same `search.final_batches` validation batches, and the one with the best mean reward is kept. At CPU
    budgets the controllers end far from converged, so their argmax is close to a random path on the decisions
    they never learned; one validation batch per RL step is too noisy to fix that, while ranking a few dozen
    paths on several hundred shared images costs a few forward passes (benchmarks/reward_noise.py)."""
    paths: dict[str, Path] = {}
    selection: dict[str, Any] = {}
    batches = [_layout(state.val_loader.next(), state) for _ in range(sc.final_batches)] if sc.final_candidates > 1 else []
    for g, members in groups.items():
        ctrl = state.controllers[g]
        best = ctrl.most_likely_path()  # admitted when adding domains: the controller's mask keeps it so
        ext = state.extension
        if sc.final_candidates > 1:
            candidates = [best]
            for _ in range(sc.final_candidates - 1):
                path = space.path_from_choices(state.draw(g))
                if path not in candidates:
                    candidates.append(path)
            if ext is not None:  # a trained domain's whole path is always a candidate when adding one
                candidates += [p for p in ext.fallbacks() if p not in candidates]
            scores = []
            for path in candidates:
                geo = space.geometry(path)
                rewards = [_score(state.supernet, geo, members, b, {}, sc, cost_model, targets, beta, state)["reward"]
                           for b in batches]
                scores.append(sum(rewards) / len(rewards))
            info: dict[str, Any] = {}
            if pick is None:
                chosen = max(range(len(candidates)), key=lambda i: scores[i])
            else:  # the shortlist step (`mpnas.search.shortlist`): brief stand-alone training decides
                chosen, info = pick(g, members, candidates, scores)
            best = candidates[chosen]
            selection[g] = {"candidates": len(candidates), "chosen": chosen, "reward": round(scores[chosen], 5),
                            "most_likely_reward": round(scores[0], 5), "batches": len(batches), **info}
            if log is not None:
                log({"stage": "search_select", "controller": g, "domains": members, **selection[g]})
        paths.update({d: best for d in members})
    return paths, selection


def _score(supernet: Supernet, geo: PathGeometry, members: list[str], val_batch: dict[str, Any],
           mix: dict[tuple[int, int], OpMix], sc: Any, cost_model: CostModel, targets: dict[str, float],
           beta: float, state: SearchState | None = None) -> dict[str, Any]:
    """A path's quality Q on this step's validation batch of each member domain, its relative cost and reward.

    Q is `search.quality`: top-1 (the paper's), the mean probability of the true class, which moves with every
    improvement of the path rather than only when an argmax flips, and so separates paths that are all near chance,
    or exp(-cross-entropy) (`likelihood`), which moves with the whole loss.
    Batch norm uses batch statistics (training mode), as TuNAS does; no gradients are taken. Under torchrun the
    counts are summed over the ranks' shards of the batch, so every rank computes the same reward; the numbers
    reach the host in one transfer (the controller's next sample needs them)."""
    ranks = state.ranks if state is not None else World()
    dtype = state.dtype if state is not None else None
    sums = []
    with torch.no_grad():
        for d in members:
            xv, yv = val_batch[d]
            with autocast(xv.device, dtype):
                logits = supernet.forward_geometry(xv, geo, d, mix)
            sums.append(batch_counts(logits, yv, sc.quality))
    counts = ranks.sum(torch.stack(sums))
    top1s, qualities = scores_of(counts, sc.quality)  # float32 division, as a mean over the batch
    costs = [cost_model(d, geo) / targets[d] for d in members]
    q = sum(qualities) / len(qualities)
    rel_cost = sum(costs) / len(costs)
    return {"quality": q, "reward": reward(sc.reward, q, rel_cost, 1.0, beta), "cost": rel_cost,
            "qualities": dict(zip(members, qualities)), "top1": dict(zip(members, top1s))}


def warm_up(decisions: list[Decision], choices: dict[str, Any], p: float, rng: random.Random, filters: bool = True,
            ops: bool = True) -> tuple[dict[str, Any], dict[tuple[int, int], OpMix]]:
    """TuNAS's warm-up of the shared weights, decided independently for every decision with probability `p`.

    Filter warm-up: a width choice (a block's output filters, a layer's expansion) takes its largest option, so
    the widest weights are trained. Op warm-up: an op choice (kernel size, squeeze-and-excite, skip) runs as the
    average of all its options (`OpMix`), so that every kernel's depthwise conv learns features the shared 1x1
    convs can use. Returns the choices to build the path from and the layers' op mixes.
    """
    out = dict(choices)
    mixed: dict[tuple[int, int], set[str]] = {}
    for d in decisions:
        if not rng.random() < p:  # one draw per decision whatever the flags, so the stream does not depend on them
            continue
        if d.kind in ("filters", "expansion"):
            if filters:
                out[d.key] = max(d.options)
        elif ops:
            assert d.layer is not None  # kernel, se and skip decisions belong to a layer
            mixed.setdefault(d.layer, set()).add(d.kind)
            if d.kind == "skip":
                out[d.key] = False  # the layer runs, at half weight
            elif d.kind == "se":
                out[d.key] = True  # the geometry then holds the SE width; half of the output skips it
    return out, {layer: OpMix("kernel" in kinds, "se" in kinds, "skip" in kinds) for layer, kinds in mixed.items()}


def _targets(t0: float | dict[str, float] | None, space: SearchSpace, names: list[str], cost: CostModel) -> dict[str, float]:
    """T0 per domain: the config's value, else the cost of the space's reference path (middle options)."""
    ref = space.geometry(space.reference_path())
    out = {}
    for d in names:
        given = t0.get(d) if isinstance(t0, dict) else t0
        if given is not None and given <= 0:
            raise MpnasError(f"config search.t0 for domain {d}: must be positive, got {given}")
        out[d] = float(given) if given is not None else cost(d, ref)
    return out


def _expected_cost(c: Controller, space: SearchSpace, members: list[str], cost: CostModel, targets: dict[str, float],
                   step: int, samples: int = 16) -> float:
    """Monte Carlo estimate of E[T / T0] under the controller's current distribution."""
    gen = torch.Generator().manual_seed(step)
    total = 0.0
    for _ in range(samples):
        geo = space.geometry(space.path_from_choices(c.sample(gen)))
        total += sum(cost(d, geo) / targets[d] for d in members) / len(members)
    return total / samples
