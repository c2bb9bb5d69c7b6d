"""Slimmable training of the merged model and the measurements `mpnas configure` works from (seed 003).

Training (`train.slimmable`) follows the sandwich rule of universally slimmable networks: every step trains
each domain's path at its full widths on the labels, and also at its smallest widths and at `slim_random`
random width configurations (`mpnas.space.widths`). The full widths are the upper bound of every configuration
and the smallest the lower bound, so training both every step keeps the whole range in reach; the random ones
cover the middle. The slimmed passes learn mostly from the full widths' predictions (configuration-invariant,
in-place distillation): the teacher is free, since its forward pass has just been run, and it asks every
configuration to give the same answer rather than to refit the labels alone.

Batch norm: only the full-width passes update the running statistics, so a model evaluated at its full widths
has exactly the statistics a plain model would have. A slimmed configuration's channels see other inputs (its
narrower layers before them), so its statistics are recalibrated once it is chosen (`measure_widths`): a
plain average over `recalibrate_batches` training batches per domain, as Once-for-All does for its sub-networks.
Private batch norm per width (switchable batch norm) was not used: here a layer's statistics depend on the
widths of every unit before it, not on a width of its own, so no finite set of private statistics is exact.
`profile` measures both (statistics sliced from the full widths, and recalibrated) so the choice is a figure.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from mpnas.config import RunConfig
from mpnas.data import DomainSet, MultiDomainLoader
from mpnas.distributed import World, bn_statistics, world
from mpnas.io import write_json
from mpnas.nn.dynamic import DynamicBatchNorm2d
from mpnas.nn.merged import MultiPathModel
from mpnas.rundir import SLIM_TABLE
from mpnas.runtime import time_module
from mpnas.space.arch import Architecture
from mpnas.space.configure import TABLE_FORMAT, Table, configure, preference_weights
from mpnas.space.geometry import PathGeometry
from mpnas.space.widths import Widths, width_units, widths_cost
from mpnas.train.evaluate import evaluate, recalibrate_batch_norm


def sandwich(model: MultiPathModel, options: list[float], seed: int, step: int, n_random: int) -> list[dict[str, PathGeometry]]:
    """The slimmed configurations one training step adds to the full widths: the smallest, then `n_random`
    random ones. They are drawn from (seed, step) alone, so a resumed run draws the same ones."""
    rng = random.Random(f"sandwich:{seed}:{step}")
    arch = model.arch
    configs = [Widths.uniform(arch, min(options))] + [Widths.sample(arch, options, rng) for _ in range(n_random)]
    return [model.slimmed(w) for w in configs]


@contextmanager
def frozen_statistics(model: torch.nn.Module) -> Iterator[None]:
    """Forward passes inside normalise with their batch's statistics (in training mode) but leave batch norm's
    running statistics as they were."""
    norms = [m for m in model.modules() if isinstance(m, DynamicBatchNorm2d)]
    for m in norms:
        m.frozen = True
    try:
        yield
    finally:
        for m in norms:
            m.frozen = False


def distill_loss(logits: Tensor, teacher: Tensor, labels: Tensor, weight: float, label_smoothing: float) -> Tensor:
    """`weight` x KL(teacher || student) + (1 - weight) x cross-entropy on the labels; the teacher is detached."""
    student = F.log_softmax(logits.float(), 1)
    kd = F.kl_div(student, F.softmax(teacher.detach().float(), 1), reduction="batchmean")
    if weight >= 1:
        return kd
    return weight * kd + (1 - weight) * F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def slim_losses(model: MultiPathModel, batch: Mapping[str, tuple[Tensor, Tensor]], teacher: Mapping[str, Tensor],
                configs: list[dict[str, PathGeometry]], weight: float, label_smoothing: float,
                forward: Any = None) -> Tensor:
    """Per domain, the sum over `configs` of its slimmed pass's loss (running statistics left unchanged)."""
    forward = forward or (lambda x, d, geo: model(x, d, geo))
    per_domain = []
    with frozen_statistics(model):
        for d, (x, y) in batch.items():
            total = x.new_zeros((), dtype=torch.float32)
            for geos in configs:
                total = total + distill_loss(forward(x, d, geos[d]), teacher[d], y, weight, label_smoothing)
            per_domain.append(total)
    return torch.stack(per_domain)


# ---------------------------------------------------------------------------------------------------------
# Measuring configurations after training.


@torch.no_grad()
def measure_widths(model: MultiPathModel, widths: Widths | None, domains: DomainSet, cfg: RunConfig, split: str = "val",
                   recalibrate: bool = True, ranks: World | None = None) -> dict[str, float]:
    """Per-domain top-1 of `model` at `widths` on `split`, its batch norm recalibrated for them (unless the widths are
    full or `recalibrate` is off); the model's weights, statistics and active widths are restored afterwards."""
    ranks = ranks or world()
    stats = bn_statistics(model)
    saved = [t.clone() for t in stats]
    previous = model.active
    try:
        if recalibrate and widths is not None:
            apply_widths(model, widths, domains, cfg, ranks)
        else:
            model.set_widths(widths)
        return evaluate(model, domains, split, cfg.train.eval_batch_size)
    finally:
        model.active = previous
        for t, s in zip(stats, saved):
            t.copy_(s)


def apply_widths(model: MultiPathModel, widths: Widths, domains: DomainSet, cfg: RunConfig,
                 ranks: World | None = None) -> None:
    """Set `widths` and recalibrate batch norm for them (full widths keep their exact statistics)."""
    model.set_widths(widths)
    if not widths.is_full():
        ranks = ranks or world()
        loader = MultiDomainLoader(domains, cfg.train.batch_size, split="train", seed=cfg.seed + 3,
                                   device=next(model.parameters()).device, world=ranks)
        recalibrate_batch_norm(model, loader, cfg.train.recalibrate_batches, ranks)


def _row(kind: str, arch: Architecture, widths: Widths, top1: dict[str, float], bn_per_domain: bool,
         recalibrated: bool = True) -> dict[str, Any]:
    total, per_domain = widths_cost(arch, widths, bn_per_domain)
    return {
        "kind": kind,
        "recalibrated": recalibrated,
        "widths": widths.to_dict(),
        "val_top1": {d: round(v, 3) for d, v in top1.items()},
        "mean_val_top1": round(sum(top1.values()) / len(top1), 3),
        "macs": {d: c.macs for d, c in per_domain.items()},
        "macs_total": total.macs,
        "params_total": total.params,
    }


def _latency_points(model: MultiPathModel, arch: Architecture, options: list[float], resolution: int,
                    repeats: int = 20) -> dict[str, list[tuple[int, float]]]:
    """Batch-1 latency (ms, this machine, eager PyTorch) of each domain's extracted path at every uniform width."""
    points: dict[str, list[tuple[int, float]]] = {d: [] for d in arch.domains}
    previous = model.active
    try:
        for m in sorted(options):
            widths = Widths.uniform(arch, m)
            model.set_widths(widths)
            _, per_domain = widths_cost(arch, widths)
            for d in arch.domains:
                net = model.extract(d).eval()
                points[d].append((per_domain[d].macs, round(time_module(net, (1, 3, resolution, resolution), repeats), 4)))
    finally:
        model.active = previous
    return points


def profile(model: MultiPathModel, domains: DomainSet, cfg: RunConfig, run_dir: Path,
            say: Any = None) -> dict[str, Any]:
    """Measure width configurations on validation data and write `slim_table.json` for `mpnas configure`.

    Rows: the full widths; every uniform multiplier with sliced statistics and recalibrated (the batch-norm
    measurement); `slim_profile` random configurations, recalibrated. Then, from the predictor fitted on those
    rows, `configure` at five MACs budgets (the controllability curve) and, at 70% of the full MACs, once with
    each domain preferred (the preference table), each measured."""
    say = say or (lambda msg: None)
    t0 = time.perf_counter()
    tc = cfg.train
    arch = model.arch
    options = sorted(tc.slim_multipliers)
    bn = tc.bn_per_domain
    rows = []
    full = Widths.uniform(arch, 1.0)
    rows.append(_row("full", arch, full, measure_widths(model, full, domains, cfg), bn))
    for m in options[:-1]:
        w = Widths.uniform(arch, m)
        rows.append(_row("uniform", arch, w, measure_widths(model, w, domains, cfg, recalibrate=False), bn, False))
        rows.append(_row("uniform", arch, w, measure_widths(model, w, domains, cfg), bn))
    rng = random.Random(f"profile:{cfg.seed}")
    for i in range(tc.slim_profile):
        w = Widths.sample(arch, options, rng)
        rows.append(_row("random", arch, w, measure_widths(model, w, domains, cfg), bn))
        say(f"profiled {i + 1}/{tc.slim_profile} random width configurations")
    table = {
        "format": TABLE_FORMAT,
        "multipliers": options,
        "units": width_units(arch.space),
        "bn_per_domain": bn,
        "recalibrate_batches": tc.recalibrate_batches,
        "rows": rows,
        "latency_ms": _latency_points(model, arch, options, cfg.data.resolution),
    }
    # The curve and the preference table: configure's choices, measured.
    fitted = Table.from_dict(table, arch, "profile")
    full_macs = rows[0]["macs_total"]
    smallest = widths_cost(arch, Widths.uniform(arch, options[0]), bn)[0].macs
    curve = []
    for frac in (1.0, 0.85, 0.7, 0.5, smallest / full_macs):
        limit = max(frac * full_macs, smallest)
        chosen = configure(arch, fitted, "macs", limit, {}, bn)
        w = Widths.from_dict(chosen["widths"], arch, options, "configure")
        row = _row("curve", arch, w, measure_widths(model, w, domains, cfg), bn)
        row.update(budget_frac=round(frac, 4), predicted_mean_top1=chosen["mean_top1_predicted"])
        curve.append(row)
    prefs = []
    limit = 0.7 * full_macs
    for d in [None, *arch.domains]:
        weights = preference_weights(arch.domains, {d: 4.0} if d else {})
        chosen = configure(arch, fitted, "macs", limit, {d: 4.0} if d else {}, bn)
        w = Widths.from_dict(chosen["widths"], arch, options, "configure")
        row = _row("preference", arch, w, measure_widths(model, w, domains, cfg), bn)
        row.update(preferred=d, weights=weights, budget_frac=0.7)
        prefs.append(row)
    table.update(curve=curve, preferences=prefs, seconds=round(time.perf_counter() - t0, 1))
    if world().is_main:
        write_json(run_dir / SLIM_TABLE, table)
    return table
