"""Many processes (`torchrun --nproc_per_node N -m mpnas ...`): how the ranks split the work and stay in step.

The ranks split every domain's batch, not the domains. Every step of search and of training needs every
domain's loss (ABDP weighs them against each other) and, in search, every controller's reward; giving whole
domains to ranks would leave ranks idle whenever the domains' paths differ in cost, and stop scaling at N
domains. With batch shards, each rank computes each domain's loss on its `batch / world` images, and:

- the per-domain losses are averaged across ranks, and the combiner sees those global values (so ABDP's
  weights, and any state it keeps, are the same on every rank), while each rank's gradient still comes from
  its own shard: `local + (global - local).detach()`. After the gradients are averaged, the update equals a
  single process's on the same global batch, except for batch norm, which normalises each shard by its own
  statistics, as DistributedDataParallel does (the running statistics are averaged at every step, with the
  gradients, so every rank holds the same state);
- gradients are averaged with one all-reduce of all of them per step (DDP cannot be used as is: the supernet
  runs a different sub-network every step, through `forward_geometry`, not `forward`);
- every rank draws the same paths (the generators are seeded alike) and a path's reward comes from the
  correct counts summed over all ranks' validation shards, so every controller takes the same update on every
  rank without being synchronised itself;
- only rank 0 writes files; decisions that read files (is a stage finished, is a directory claimed) are made
  by rank 0 and broadcast, so that no rank sees a file another is halfway through writing.

A single process is a world of size 1, in which every operation here is free and does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from mpnas.errors import MpnasError

T = TypeVar("T")


def bn_statistics(module: nn.Module) -> list[torch.Tensor]:
    """Batch norm's running means and variances in `module` (what `World.average_gradients` keeps equal)."""
    return [b for name, b in module.named_buffers() if name.endswith(("running_mean", "running_var"))]


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: `rank` of `size` (1 when not launched by torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, n: int, what: str) -> slice:
        """This rank's part of a batch of `n`; `n` must divide evenly, so every rank does the same work."""
        if n % self.size:
            raise MpnasError(f"config {what}: {n} does not divide into {self.size} processes; use a multiple of {self.size}")
        part = n // self.size
        return slice(self.rank * part, (self.rank + 1) * part)

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The average of `t` over the ranks (a new tensor; `t` itself is left alone)."""
        if not self.active:
            return t
        out = t.detach().clone()
        dist.all_reduce(out)
        return out / self.size

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return t
        out = t.detach().clone()
        dist.all_reduce(out)
        return out

    def global_losses(self, local: torch.Tensor) -> torch.Tensor:
        """Per-domain losses whose values are the average over the ranks and whose gradient is this rank's own."""
        if not self.active:
            return local
        return local + (self.mean(local) - local).detach()

    def average_gradients(self, params: Iterable[nn.Parameter], statistics: Iterable[torch.Tensor] = ()) -> None:
        """Average the gradients, and batch norm's running `statistics`, over the ranks: one all-reduce of them
        all, flattened. Averaging the running statistics at every step (they are a small fraction of the
        weights) keeps the whole state identical on every rank, so rank 0's checkpoint is everyone's."""
        if not self.active:
            return
        tensors = [p.grad for p in params if p.grad is not None] + list(statistics)
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank (on the CPU control group: no device synchronisation)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control_group())
        return bool(t.item())

    def decide(self, fn: Callable[[], T]) -> T:
        """`fn()` run on rank 0 and its result (or its MpnasError) handed to every rank."""
        if not self.active:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except MpnasError as exc:
                box[0] = ("error", (type(exc), str(exc)))
        dist.broadcast_object_list(box, src=0, group=_control_group())
        kind, value = box[0]
        if kind == "error":
            cls, message = value
            raise cls(message)
        return value

    def barrier(self) -> None:
        if self.active:
            dist.barrier(group=_control_group())

    def check_in_sync(self, tensors: Iterable[torch.Tensor], what: str) -> None:
        """Raise if `tensors` differ between the ranks (a cheap checksum, compared once per stage)."""
        if not self.active:
            return
        total = torch.zeros(2, dtype=torch.float64)
        for t in tensors:
            t = t.detach().to("cpu", torch.float64)
            total += torch.stack([t.sum(), (t * t).sum()])
        lo, hi = total.clone(), total.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=_control_group())
        dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=_control_group())
        if not torch.equal(lo, hi):
            raise RuntimeError(f"{what}: the {self.size} processes are out of step (checksums {lo.tolist()} vs {hi.tolist()})")


_CONTROL: dict[str, Any] = {}  # the gloo group for small CPU messages, created once with the process group


def _control_group() -> Any:
    return _CONTROL.get("group")


def world() -> World:
    """This process's world, read from torch.distributed (size 1 when no process group is set up)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str | None) -> World:
    """Set up the process group torchrun asked for: NCCL when the run uses CUDA, gloo otherwise.

    `device` is the run's device setting (None or "auto": CUDA when available). A gloo group for small
    control messages (stop signals, decisions) is added under NCCL so that they never wait on the GPU."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_available():
        raise MpnasError("torchrun: this build of torch has no torch.distributed")
    wants_cuda = (device in (None, "auto") and torch.cuda.is_available()) or (device or "").startswith("cuda")
    backend = "nccl" if wants_cuda else "gloo"
    if wants_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        # torchrun --max-restarts keeps one store for every attempt, and the first attempt's addresses stay in it:
        # a restarted rank read a dead rank's address there and hung connecting to it (torch 2.13, gloo). Keys under
        # a prefix of their own per attempt start every attempt clean.
        store, rank, size = next(dist.rendezvous("env://"))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend, store=dist.PrefixStore(f"/mpnas/attempt_{attempt}", store), rank=rank,
                                world_size=size, timeout=timedelta(minutes=30))
    _CONTROL["group"] = dist.new_group(backend="gloo") if backend == "nccl" else None
    return world()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTROL.clear()


__all__ = ["World", "world", "init", "shutdown", "launched_by_torchrun"]
