"""Batches for multi-domain training: one batch per domain per step, endless, exactly resumable.

Each domain's training images form an endless stream: epoch e is a permutation drawn from (seed, domain, e),
and batch k takes the next `batch_size` positions of that stream. No image is dropped: a batch that crosses
an epoch boundary takes the tail of one permutation and the head of the next, so a small domain simply cycles
faster than a large one. Augmentation for batch k of a domain is drawn from (seed, domain, k). The state is
therefore a few counters; saving it mid-epoch and restoring it gives exactly the batches that would have come.
Seeds depend on the domain's name, not its position, so adding or removing a domain leaves the others' batches
unchanged.

Under torchrun every rank walks the same streams and keeps its own slice of each batch (`mpnas.distributed`),
so the state is the same on every rank and a checkpoint written by rank 0 resumes any of them. On CUDA the
batch is copied from pinned memory without blocking, so the copy overlaps the previous step's kernels.
"""

from __future__ import annotations

import math

from collections.abc import Iterator
from typing import Any

import torch

from mpnas.data.augment import augment as augment_batch
from mpnas.data.augment import normalize
from mpnas.data.domain import Domain, DomainSet
from mpnas.data.seeding import generator
from mpnas.distributed import World
from mpnas.errors import MpnasError

STATE_VERSION = 1


class MultiDomainLoader:
    def __init__(self, domains: DomainSet, batch_size: int | dict[str, int], *, split: str = "train", seed: int = 0,
                 augment: bool = True, device: str | torch.device = "cpu", world: World | None = None) -> None:
        self.domains = domains
        self.world = world or World()
        self.split = split
        self.seed = seed
        self.augment = augment
        self.device = torch.device(device)
        self.batch_sizes = _batch_sizes(domains, batch_size)  # the global batch; each rank takes its shard
        self._parts = {n: self.world.shard(b, f"batch size of domain {n!r}") for n, b in self.batch_sizes.items()}
        for d in domains:
            if split not in d.splits or not d.splits[split].labelled:
                raise MpnasError(f"domain {d.name!r}: no labelled {split} split to draw batches from")
        self.step = 0
        self._epoch = {d.name: 0 for d in domains}
        self._position = {d.name: 0 for d in domains}
        self._permutation: dict[str, tuple[int, torch.Tensor]] = {}  # a cache of the current epoch's order

    def _order(self, domain: Domain, epoch: int) -> torch.Tensor:
        cached = self._permutation.get(domain.name)
        if cached is None or cached[0] != epoch:
            n = len(domain.splits[self.split])
            cached = (epoch, torch.randperm(n, generator=generator(self.seed, "epoch", domain.name, epoch)))
            self._permutation[domain.name] = cached
        return cached[1]

    def _take(self, domain: Domain) -> torch.Tensor:
        """The next batch's indices, advancing the domain's (epoch, position)."""
        n = len(domain.splits[self.split])
        need = self.batch_sizes[domain.name]
        parts = []
        while need:
            epoch, pos = self._epoch[domain.name], self._position[domain.name]
            k = min(need, n - pos)
            parts.append(self._order(domain, epoch)[pos : pos + k])
            need -= k
            if pos + k == n:
                self._epoch[domain.name], self._position[domain.name] = epoch + 1, 0
            else:
                self._position[domain.name] = pos + k
        return torch.cat(parts)

    def next(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """One batch per domain: float32 normalised N x 3 x R x R images and int64 labels, on the device (this
        rank's shard of it under torchrun)."""
        out = {}
        pin = self.device.type == "cuda"
        for domain in self.domains:
            data = domain.splits[self.split]
            full = self._take(domain)
            part = self._parts[domain.name]
            idx = full[part]
            images, labels = data.images[idx], data.labels[idx]  # type: ignore[index]
            if pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            images = images.to(self.device, non_blocking=pin)
            labels = labels.to(self.device, non_blocking=pin)
            if self.augment:
                images = augment_batch(images, domain.augment, generator(self.seed, "augment", domain.name, self.step),
                                       part, len(full))
            out[domain.name] = (normalize(images, domain), labels)
        self.step += 1
        return out

    def __iter__(self) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        return self

    def __next__(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return self.next()

    def epochs(self) -> dict[str, float]:
        """How many passes over its split each domain has made (fractional)."""
        return {d.name: self._epoch[d.name] + self._position[d.name] / len(d.splits[self.split]) for d in self.domains}

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "split": self.split,
            "step": self.step,
            "domains": {
                d.name: {"epoch": self._epoch[d.name], "position": self._position[d.name],
                         "size": len(d.splits[self.split])}
                for d in self.domains
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` was saved (the seed comes from the state; batch sizes may differ)."""
        try:
            if state["version"] != STATE_VERSION:
                raise MpnasError(f"loader state: version {state['version']!r}, expected {STATE_VERSION}")
            if state["split"] != self.split:
                raise MpnasError(f"loader state: saved for split {state['split']!r}, this loader draws {self.split!r}")
            saved = state["domains"]
            missing = [n for n in self.domains.names() if n not in saved]
            if missing:
                raise MpnasError(f"loader state: no position for domain(s) {', '.join(missing)} (has: {', '.join(saved)})")
            epochs, positions = {}, {}
            for d in self.domains:
                entry = saved[d.name]
                size = len(d.splits[self.split])
                if entry["size"] != size:
                    raise MpnasError(
                        f"loader state: domain {d.name!r} had {entry['size']} {self.split} images, now {size}: the data changed"
                    )
                if not (0 <= entry["position"] < size and entry["epoch"] >= 0):
                    raise MpnasError(f"loader state: domain {d.name!r} has an invalid epoch/position {entry}")
                epochs[d.name], positions[d.name] = int(entry["epoch"]), int(entry["position"])
            seed, step = int(state["seed"]), int(state["step"])
        except (KeyError, TypeError) as exc:
            raise MpnasError(f"loader state: malformed ({type(exc).__name__}: {exc})") from None
        self.seed, self.step = seed, step
        self._epoch, self._position = epochs, positions
        self._permutation.clear()


MAX_BATCH_MULT = 4  # a per-class batch never exceeds this many times the base batch


def class_batch_sizes(domains: DomainSet, batch_size: int, per_class: float) -> dict[str, int]:
    """Per domain, at least `per_class` images per class in every batch: max(batch_size, per_class x classes),
    rounded up to a multiple of 8 and capped at `MAX_BATCH_MULT` x batch_size; `per_class` 0 gives every domain
    `batch_size`.

    Why: a domain leaves chance after about the same number of images per class, not per step. At 32 images a
    step a 47-class domain sees under one image per class and sat at chance for 150 to 250 steps while 10- to
    17-class domains left it in 50 to 75 (benchmarks/RESULTS.md, issue 24); how late it took off decided its
    accuracy and the seed spread of every bench."""
    if per_class < 0:
        raise MpnasError(f"batch_per_class must be >= 0, got {per_class}")
    sizes = {}
    for d in domains:
        want = math.ceil(per_class * d.num_classes / 8) * 8
        sizes[d.name] = min(max(batch_size, want), max(batch_size, MAX_BATCH_MULT * batch_size))
    return sizes


def _batch_sizes(domains: DomainSet, batch_size: int | dict[str, int]) -> dict[str, int]:
    if isinstance(batch_size, dict):
        unknown = sorted(set(batch_size) - set(domains.names()))
        if unknown:
            raise MpnasError(f"batch size given for unknown domain(s) {', '.join(unknown)} (known: {', '.join(domains.names())})")
        missing = [n for n in domains.names() if n not in batch_size]
        if missing:
            raise MpnasError(f"no batch size for domain(s) {', '.join(missing)}")
        sizes = dict(batch_size)
    else:
        sizes = {n: batch_size for n in domains.names()}
    for name, size in sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise MpnasError(f"domain {name!r}: batch size must be a positive integer, got {size!r}")
    return sizes


def iterate_split(domain: Domain, split: str, batch_size: int,
                  device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Every image of a split once, in order, un-augmented and normalised (the last batch may be smaller)."""
    if split not in domain.splits:
        raise MpnasError(f"domain {domain.name!r}: no {split} split (has: {', '.join(domain.splits)})")
    if batch_size < 1:
        raise MpnasError(f"batch size must be positive, got {batch_size}")
    data = domain.splits[split]
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(device)
        labels = data.labels[start : start + batch_size].to(device) if data.labels is not None else None
        yield normalize(images, domain), labels
