"""Evaluating a merged model: top-1 per domain, batch norm recalibrated for a model's current widths, and the
trained model of a run directory.

Training validates with these, slimmable training measures its width configurations with them
(`mpnas.train.slimmable`), and evaluation, export and the baselines score finished runs with them; they need
nothing of the training loop, so every user calls them here rather than through the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mpnas.config import RunConfig
from mpnas.data import DomainSet, MultiDomainLoader, iterate_split
from mpnas.distributed import World, bn_statistics, world
from mpnas.errors import MpnasError
from mpnas.nn.dynamic import DynamicBatchNorm2d
from mpnas.nn.merged import MultiPathModel
from mpnas.rundir import WEIGHTS, load_weights, read_architecture
from mpnas.space.arch import Architecture
from mpnas.train.optim import autocast, resolve_device


@torch.no_grad()
def evaluate(model: nn.Module, domains: DomainSet, split: str | None = None, batch_size: int = 256,
             forward: Callable[[nn.Module, torch.Tensor, str], torch.Tensor] | None = None,
             dtype: torch.dtype | None = None) -> dict[str, float]:
    """Top-1 (percent) per domain on `split` (default: test where labelled, else val).

    Under torchrun the ranks take turns over the batches and their counts are summed, so every rank returns the
    same figures; the counts stay on the device until the end (one transfer)."""
    forward = forward or (lambda m, x, d: m(x, d))
    device = next(model.parameters()).device
    ranks = world()
    was_training = model.training
    model.eval()
    counts, totals = [], []
    for dom in domains:
        s = split or dom.eval_split()
        correct = torch.zeros((), dtype=torch.int64, device=device)
        total = 0
        for i, (x, y) in enumerate(iterate_split(dom, s, batch_size, device=device)):
            if y is None:
                raise MpnasError(f"domain {dom.name}: split {s!r} has no labels to evaluate against")
            total += len(y)
            if i % ranks.size == ranks.rank:
                with autocast(device, dtype):
                    correct += (forward(model, x, dom.name).argmax(1) == y).sum()
        if total == 0:
            raise MpnasError(f"domain {dom.name}: split {s!r} is empty")
        counts.append(correct)
        totals.append(total)
    model.train(was_training)
    summed = ranks.sum(torch.stack(counts)).tolist()
    return {dom.name: 100.0 * c / n for dom, c, n in zip(domains, summed, totals)}


@torch.no_grad()
def recalibrate_batch_norm(model: MultiPathModel, loader: MultiDomainLoader, batches: int, ranks: World,
                           dtype: torch.dtype | None = None) -> None:
    """Running statistics as the plain average over `batches` training batches per domain (Once-for-All's
    recalibration): the supernet's statistics were averaged over many sampled paths and describe none of them."""
    if batches == 0:
        return
    norms = [m for m in model.modules() if isinstance(m, DynamicBatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
    was_training = model.training
    model.train()
    for i in range(batches):
        for m in norms:
            m.momentum = 1.0 / (i + 1)  # a cumulative mean over the batches seen
        for d, (x, _) in loader.next().items():
            with autocast(x.device, dtype):
                model(x, d)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    ranks.average_gradients([], bn_statistics(model))


def load_trained_model(cfg: RunConfig, run_dir: Path, arch: Architecture | None = None) -> MultiPathModel:
    """The merged model of a trained run directory, with its weights, on the configured device."""
    model = MultiPathModel(arch or read_architecture(run_dir), dropout=cfg.train.dropout,
                           bn_per_domain=cfg.train.bn_per_domain)
    load_weights(model, run_dir / WEIGHTS)
    return model.to(resolve_device(cfg.device))


__all__ = ["evaluate", "load_trained_model", "recalibrate_batch_norm"]
