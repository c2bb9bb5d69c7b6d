"""What search and training share: optimisers, schedules, the joint step, step counts, devices, progress bars.

(Checkpoint files are read and written by `mpnas.rundir`; `mpnas.train.checkpoint` decides when.)"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, ContextManager, Iterable

import torch
from torch import nn

from mpnas.config import OPTIMIZERS, PRECISIONS, OptimConfig, RunConfig
from mpnas.console import progress
from mpnas.data import DomainSet
from mpnas.distributed import World, world
from mpnas.errors import MpnasError


def make_optimizer(cfg: OptimConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.lr <= 0:
        raise MpnasError(f"config optim.lr must be positive, got {cfg.lr}")
    if cfg.name == "rmsprop":
        # TuNAS's RMSProp: decay 0.9, momentum 0.9, epsilon from the config (TuNAS uses 1.0).
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=cfg.eps, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise MpnasError(f"config optim.name: {cfg.name!r} is not one of {', '.join(OPTIMIZERS)}")


def warmup_cosine(total_steps: int, warmup_frac: float) -> Any:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to 0 (TuNAS, seed 002)."""
    warm = max(0, int(round(total_steps * warmup_frac)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def make_scheduler(opt: torch.optim.Optimizer, total_steps: int, warmup_frac: float) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, warmup_frac))


def joint_step(
    combiner: nn.Module,
    losses: torch.Tensor,
    progress: float,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: Iterable[nn.Parameter],
    grad_clip: float | None,
    ranks: World | None = None,
    statistics: Iterable[torch.Tensor] = (),
    extra: torch.Tensor | None = None,
) -> None:
    """One optimiser step on the domains' losses combined by `combiner` (search and training alike), plus `extra`
    (slimmable training's slimmed passes, already weighted).

    Under torchrun, `losses` hold the ranks' average (`World.global_losses`) and the gradients are averaged
    before clipping (with batch norm's running `statistics`), so every rank takes the same step."""
    params = list(params)
    joint = combiner(losses, progress)
    if extra is not None:
        joint = joint + extra
    optimizer.zero_grad(set_to_none=True)
    joint.backward()
    if ranks is not None:
        ranks.average_gradients(params + [p for p in combiner.parameters() if p.requires_grad], statistics)
    if grad_clip:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    scheduler.step()


def apply_threads(cfg: RunConfig) -> None:
    """torch's thread count from the config (None: torch's own); it changes the speed, never the result."""
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise MpnasError(f"config threads must be >= 1, got {cfg.threads}")
        torch.set_num_threads(cfg.threads)


def resolve_device(name: str) -> torch.device:
    """The config's device; under torchrun, "auto" and "cuda" mean this rank's GPU (LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MpnasError(f"config device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MpnasError(f"config device: {name!r} asked for, but no CUDA device is available")
    ranks = world()
    if device.type == "cuda" and device.index is None and ranks.active:
        device = torch.device("cuda", ranks.local_rank)
    return device


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the forward passes: bf16 on CUDA under "auto", else none (float32)."""
    if precision not in PRECISIONS:
        raise MpnasError(f"config precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager[Any]:
    """Mixed precision for the forward passes (`dtype` from `compute_dtype`); losses are taken in float32 after it."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def synced_clock(device: torch.device) -> float:
    """`time.perf_counter()` after the device's queued work has finished (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def steps_for(steps: int | None, epochs: float | None, domains: DomainSet, batch_size: int, what: str) -> int:
    """Steps are given directly, or as epochs of the largest domain's training split (the paper's unit)."""
    if epochs is not None:
        largest = max(len(d.splits["train"].images) for d in domains)
        steps = int(round(epochs * largest / batch_size))
    if steps is None or steps < 1:
        raise MpnasError(f"config {what}: needs steps >= 1 (or epochs > 0)")
    return steps


def check_finite(losses: torch.Tensor, names: list[str], step: int, stage: str) -> None:
    """A NaN or infinite loss ends the run with the domain named, before it poisons the weights."""
    bad = [n for n, v in zip(names, losses.detach().tolist()) if v != v or v in (float("inf"), float("-inf"))]
    if bad:
        raise MpnasError(
            f"{stage}: loss of domain(s) {', '.join(bad)} is not finite at step {step}; lower the learning rate "
            f"(config {stage}.optim.lr) or check that domain's labels"
        )


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr with rate and ETA, or plain lines when stderr is not a terminal (`mpnas.console`)."""
    return progress(total, desc, enabled)
