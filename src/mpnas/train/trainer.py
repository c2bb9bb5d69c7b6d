"""From-scratch training of a merged multi-path model (its evaluation: `mpnas.train.evaluate`).

Each step takes one batch from every domain, runs each through its own path, combines the domains' losses
with the loss component (ABDP by default) and takes one optimiser step; gradients of a shared node add up
from every domain that uses it. Per-domain validation runs every `eval_every` steps; the best weights by mean
validation top-1 are kept (in memory and, atomically, on disk).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from mpnas.config import RunConfig
from mpnas.data import DomainSet, MultiDomainLoader, class_batch_sizes
from mpnas.distributed import World, bn_statistics, world
from mpnas.errors import MpnasError
from mpnas.io import append_jsonl
from mpnas.nn.dynamic import use_sync_bn
from mpnas.nn.extend import load_frozen
from mpnas.nn.init import initialise
from mpnas.nn.merged import MultiPathModel
from mpnas.nn.supernet import Supernet
from mpnas.rundir import METRICS, SEARCH_STATE, TRAIN_STATE, read_state, save_weights
from mpnas.space.arch import Architecture
from mpnas.train.checkpoint import Checkpointer
from mpnas.train.evaluate import evaluate, recalibrate_batch_norm
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
from mpnas.train.slimmable import sandwich, slim_losses


@dataclass
class TrainState:
    """Everything training needs to continue: weights, optimiser, schedule, loss state, data position, best."""

    model: MultiPathModel
    combiner: LossCombiner
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: MultiDomainLoader
    step: int = 0
    best_score: float = -1.0
    best_step: int = -1
    best_weights: dict[str, torch.Tensor] | None = None  # the model's weights at best_step
    # How the steps run (not saved: they come from the config and the launch).
    ranks: World = World()
    dtype: torch.dtype | None = None  # autocast dtype of the forward passes
    channels_last: bool = False
    seed: int = 0  # draws slimmable training's width configurations (with the step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_weights": self.best_weights,
            "step": self.step,
            "model": self.model.state_dict(),
            "combiner": self.combiner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.loader.state_dict(),
            "best_score": self.best_score,
            "best_step": self.best_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.combiner.load_state_dict(state["combiner"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        self.best_score, self.best_step = float(state["best_score"]), int(state["best_step"])
        self.best_weights = state.get("best_weights")


def train_architecture(
    cfg: RunConfig,
    domains: DomainSet,
    arch: Architecture,
    weights_path: Path,
    progress: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
    routing_seed: int = 0,
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
    supernet_from: Path | None = None,
    probe: Callable[[int, MultiPathModel], None] | None = None,
    frozen: Mapping[str, torch.Tensor] | None = None,
) -> tuple[MultiPathModel, TrainState]:
    """Train the merged model of `arch` from scratch; the best weights by mean validation top-1 are returned and
    written to `weights_path`. `checkpointer` and `resume` work as in `run_search`.

    `probe(step, model)` is called after every step (benchmarks measure learning curves with it). It must leave
    the model and the random generators as it found them (an `evaluate` does), so that a probed run trains
    exactly as an unprobed one.

    With `train.from_supernet`, the model starts instead from the supernet of the search in `supernet_from`
    (default: the run directory), its batch norm recalibrated, and is fine-tuned (`single_shot_config`); that
    starting point is validated first, so fine-tuning can only keep or improve it on validation.

    `frozen` (adding domains, `mpnas add-domain`) holds a trained model's tensors: they are loaded into the merged
    model after its initialisation and take no gradient, and `domains` are only the new domains (a subset of the
    architecture's), the only ones that are trained, validated and selected on."""
    if cfg.train.from_supernet:
        cfg = single_shot_config(cfg)
    tc = cfg.train
    names = domains.names()
    if frozen is not None:
        if tc.from_supernet or tc.slimmable or not tc.bn_per_domain:
            raise MpnasError("adding a domain trains from scratch with per-domain batch norm (train.from_supernet, "
                             "train.slimmable and train.bn_per_domain=false are not supported)")
        if not set(names) <= set(arch.domains):
            raise MpnasError(f"domains {names} are not all in the architecture's {arch.domains}")
    elif list(arch.domains) != names:
        raise MpnasError(
            f"architecture domains {arch.domains} differ from the data's {names}; train with the same --data/--domains as search"
        )
    for d in domains:
        if arch.num_classes[d.name] != d.num_classes:
            raise MpnasError(f"domain {d.name}: the architecture has {arch.num_classes[d.name]} classes, the data {d.num_classes}")
    device = resolve_device(cfg.device)
    steps = tc.steps if tc.from_supernet and tc.steps == 0 else steps_for(tc.steps, tc.epochs, domains, tc.batch_size, "train")
    ranks = world()
    if log is None:
        log = (lambda row: append_jsonl(weights_path.parent / METRICS, row)) if ranks.is_main else (lambda row: None)

    state = _new_state(cfg, domains, arch, max(steps, 1), device, routing_seed, frozen)
    model = state.model
    checkpointer = checkpointer or Checkpointer(weights_path.parent / TRAIN_STATE, "train", 0, "", None)
    resumed = resume and checkpointer.resume(state.load_state_dict) is not None
    if tc.from_supernet and not resumed:
        start_from_supernet(cfg, state, domains, arch, supernet_from or weights_path.parent, weights_path, log)
    if state.best_weights is None:
        state.best_weights = copy.deepcopy(model.state_dict())
    bar = progress_bar(steps, "train", progress and ranks.is_main)
    bar.update(state.step)
    with checkpointer:
        _train_steps(state, domains, arch, weights_path, steps, tc, log, bar, checkpointer, probe=probe)
    bar.close()
    ranks.check_in_sync([*model.parameters(), *bn_statistics(model)], "train")
    model.load_state_dict(state.best_weights)
    return model, state


def single_shot_config(cfg: RunConfig) -> RunConfig:
    """The training config of a single-shot model: `finetune_steps` at `finetune_lr_mult` times the rate."""
    tc = cfg.train
    optim = replace(tc.optim, lr=tc.optim.lr * tc.finetune_lr_mult)
    return replace(cfg, train=replace(tc, steps=tc.finetune_steps, epochs=None, optim=optim))


def start_from_supernet(cfg: RunConfig, state: TrainState, domains: DomainSet, arch: Architecture, search_dir: Path,
                        weights_path: Path, log: Callable[[dict[str, Any]], None]) -> None:
    """Load the search's supernet weights into the merged model, recalibrate its batch norm, validate it and save
    it as the best so far (step -1)."""
    ckpt = search_dir / SEARCH_STATE
    if not ckpt.is_file():
        raise MpnasError(f"train.from_supernet: {ckpt} not found (the search's final state); run `mpnas search` into "
                         f"{search_dir} first")
    # Only the supernet's weights are needed, not the search that trained them: the search's state file holds
    # them under "supernet" (`mpnas.search.loop.SearchState`), and the supernet is built here from the space.
    supernet = Supernet(arch.space, arch.num_classes, dropout=0.0)
    supernet.load_state_dict(read_state(ckpt)["supernet"])
    try:
        state.model.copy_from_supernet(supernet)
    except KeyError as exc:
        raise MpnasError(f"train.from_supernet: the supernet in {ckpt} has no tensor {exc} for this architecture "
                         "(searched in another space?)") from None
    del supernet
    recalibrate_batch_norm(state.model, MultiDomainLoader(domains, cfg.train.batch_size, split="train", seed=cfg.seed + 2,
                                                          device=next(state.model.parameters()).device, world=state.ranks),
                           cfg.train.recalibrate_batches, state.ranks, state.dtype)
    val = evaluate(state.model, domains, "val", cfg.train.eval_batch_size, dtype=state.dtype)
    mean = sum(val.values()) / len(val)
    for d, v in val.items():
        log({"stage": "train_eval", "step": -1, "domain": d, "val_top1": v, "from_supernet": True})
    log({"stage": "train_eval", "step": -1, "domain": "__mean__", "val_top1": mean, "from_supernet": True})
    state.best_score, state.best_step = mean, -1
    state.best_weights = copy.deepcopy(state.model.state_dict())
    if state.ranks.is_main:
        save_weights(state.model, weights_path, arch, {"step": -1, "val_mean_top1": mean, "val_top1": val,
                                                       "from_supernet": True})


def _new_state(cfg: RunConfig, domains: DomainSet, arch: Architecture, steps: int, device: torch.device,
               routing_seed: int = 0, frozen: Mapping[str, torch.Tensor] | None = None) -> TrainState:
    """A fresh training state: the merged model initialised from the config's seed, optimiser, schedule, loader."""
    tc = cfg.train
    ranks = world()
    torch.manual_seed(cfg.seed)
    model = MultiPathModel(arch, dropout=tc.dropout, bn_momentum=cfg.model.bn_momentum, routing_seed=routing_seed,
                           bn_per_domain=tc.bn_per_domain)
    initialise(model, cfg.model.init, cfg.model.zero_init_residual)
    if frozen is not None:
        try:
            load_frozen(model, frozen)
        except ValueError as exc:
            raise MpnasError(f"adding domains: {exc}") from None
    model = model.to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    if cfg.sync_bn and ranks.active:
        use_sync_bn(model)
    combiner = LossCombiner(cfg.loss, domains.names()).to(device)
    optimizer = make_optimizer(tc.optim, list(model.parameters()) + list(combiner.parameters()))
    return TrainState(
        model=model,
        combiner=combiner,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, steps, tc.optim.warmup_frac),
        loader=MultiDomainLoader(domains, class_batch_sizes(domains, tc.batch_size, tc.batch_per_class), split="train",
                                 seed=cfg.seed, device=device, world=ranks),
        ranks=ranks,
        dtype=compute_dtype(cfg.precision, device),
        channels_last=channels_last,
        seed=cfg.seed,
    )


def time_train_steps(cfg: RunConfig, domains: DomainSet, arch: Architecture, repeats: int = 3) -> dict[str, Any]:
    """Seconds per training step and per validation pass of `arch`'s merged model on this device (`--dry-run`);
    the first step is not counted."""
    tc = cfg.train
    device = resolve_device(cfg.device)
    steps = steps_for(tc.steps, tc.epochs, domains, tc.batch_size, "train")
    state = _new_state(cfg, domains, arch, steps, device)
    quiet = Checkpointer(Path("unused"), "train", 0, "", None)
    bar = progress_bar(1, "", False)
    only_steps = replace(tc, eval_every=steps + 1, log_every=steps + 1)  # only training steps are timed here
    times = []
    for i in range(repeats + 1):
        t0 = synced_clock(device)
        _train_steps(state, domains, arch, Path("unused"), steps, only_steps, lambda row: None, bar, quiet,
                     until=state.step + 1)
        if i:
            times.append(synced_clock(device) - t0)
    t0 = synced_clock(device)
    evaluate(state.model, domains, "val", tc.eval_batch_size, dtype=state.dtype)
    evals = steps // tc.eval_every + (0 if steps % tc.eval_every == 0 else 1)
    return {"steps": steps, "s_per_step": sorted(times)[len(times) // 2], "evals": evals,
            "s_per_eval": synced_clock(device) - t0}


def _train_steps(state: TrainState, domains: DomainSet, arch: Architecture, weights_path: Path, steps: int, tc: Any,
                 log: Callable[[dict[str, Any]], None], bar: Any, checkpointer: Checkpointer, until: int | None = None,
                 probe: Callable[[int, MultiPathModel], None] | None = None) -> None:
    """Training from `state.step` to `steps` (or `until`); a checkpoint may be written after any step.

    On the CPU the losses are checked for NaN at every step. On CUDA that check would wait for the GPU at every
    step, so it runs at logging steps, before validations and before checkpoints: a NaN stops the run within
    `log_every` steps, before any weights it touched are saved."""
    model, combiner, optimizer = state.model, state.combiner, state.optimizer
    statistics = bn_statistics(model) if state.ranks.active else []
    check_every_step = next(model.parameters()).device.type != "cuda"
    model.train()
    for step in range(state.step, min(steps, until or steps)):
        frac = step / steps
        batch = state.loader.next()
        losses, teacher = [], {}
        if state.channels_last:
            batch = {d: (x.contiguous(memory_format=torch.channels_last), y) for d, (x, y) in batch.items()}
        for d, (x, y) in batch.items():
            with autocast(x.device, state.dtype):
                logits = model(x, d)
            teacher[d] = logits
            losses.append(F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing))
        loss_vec = state.ranks.global_losses(torch.stack(losses))
        extra = slim_vec = None
        if tc.slimmable and frac >= tc.slim_start:
            configs = sandwich(model, tc.slim_multipliers, state.seed, step, tc.slim_random)

            def slim_forward(x: torch.Tensor, d: str, geo: Any) -> torch.Tensor:
                with autocast(x.device, state.dtype):
                    return model(x, d, geo)

            slim_vec = state.ranks.global_losses(slim_losses(model, batch, teacher, configs, tc.slim_distill,
                                                             tc.label_smoothing, slim_forward))
            w = combiner.weights(loss_vec, frac)
            extra = (w / w.mean() * slim_vec).sum()
        logging = step % tc.log_every == 0 or step == steps - 1
        evaluating = (step + 1) % tc.eval_every == 0 or step == steps - 1
        if check_every_step or logging or evaluating or checkpointer.due(step + 1):
            check_finite(loss_vec, list(batch), step, "train")
            if slim_vec is not None:
                check_finite(slim_vec, [f"{d} (at slimmed widths)" for d in batch], step, "train")
        joint_step(combiner, loss_vec, frac, optimizer, state.scheduler, model.parameters(), tc.optim.grad_clip,
                   state.ranks, statistics, extra)
        state.step = step + 1

        if logging:
            weights = combiner.weights(loss_vec, frac).tolist()
            lr = state.scheduler.get_last_lr()[0]
            slim = slim_vec.tolist() if slim_vec is not None else [None] * len(batch)
            for (d, loss), w, sl in zip(zip(batch, loss_vec.tolist()), weights, slim):
                log({"stage": "train", "step": step, "domain": d, "loss": loss, "weight": w, "lr": lr,
                     **({} if sl is None else {"slim_loss": sl})})
            bar.set_postfix(loss=f"{loss_vec.mean().item():.3f}")
        if evaluating:
            val = evaluate(model, domains, "val", tc.eval_batch_size, dtype=state.dtype)
            mean = sum(val.values()) / len(val)
            for d, v in val.items():
                log({"stage": "train_eval", "step": step, "domain": d, "val_top1": v})
            log({"stage": "train_eval", "step": step, "domain": "__mean__", "val_top1": mean})
            if mean > state.best_score:
                state.best_score, state.best_step = mean, step
                state.best_weights = copy.deepcopy(model.state_dict())
                if state.ranks.is_main:
                    save_weights(model, weights_path, arch, {"step": step, "val_mean_top1": mean, "val_top1": val})
            bar.set_postfix(val=f"{mean:.1f}", best=f"{state.best_score:.1f}")
        bar.update(1)
        if probe is not None:
            probe(state.step, model)
        checkpointer.step_done(state.step, state.state_dict)
