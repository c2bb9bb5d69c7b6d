"""A run directory as the search, train and evaluate stages write it, from a real architecture and
synthetic metrics, so the report can be tested without searching or training anything."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from mpnas.analysis.metrics import decathlon_score
from mpnas.io import write_json
from mpnas.space.arch import Architecture
from mpnas.space.cost import architecture_cost, domain_costs
from mpnas.space.presets import get_space

DOMAINS = ("cifar100", "dtd", "svhn", "gtsrb", "aircraft", "omniglot", "ucf101", "daimlerpedcls", "vgg-flowers",
           "imagenet12")


def make_arch(num_domains: int = 3, seed: int = 0, preset: str = "default") -> Architecture:
    """Random paths; the second domain copies the first one's kernel and SE at b1.l0, so at least that node
    is shared whatever the seed (its widths still differ when the random expansions do)."""
    space = get_space(preset)
    rng = random.Random(seed)
    names = DOMAINS[:num_domains]
    choices = {d: space.choices_of(space.random_path(rng)) for d in names}
    if num_domains > 1:
        for key in ("b1.l0.kernel", "b1.l0.se"):
            choices[names[1]][key] = choices[names[0]][key]
    paths = {d: space.path_from_choices(c) for d, c in choices.items()}
    return Architecture(space, paths, {d: 10 + 7 * i for i, d in enumerate(names)}, meta={"method": "mpnas"})


def metric_rows(arch: Architecture, search_steps: int = 60, train_steps: int = 100,
                seed: int = 0) -> list[dict[str, Any]]:
    """Rows of every stage in the shapes the search loop and trainer log, plus one row of an unknown stage."""
    rng = random.Random(seed)
    decisions = arch.space.decisions()
    rows: list[dict[str, Any]] = [{"stage": "something_new", "step": 0, "domain": "x", "value": "ignored"}]
    targets = {d: {k.key: rng.randrange(len(k.options)) for k in decisions} for d in arch.domains}
    baseline: dict[str, float | None] = {d: None for d in arch.domains}
    for step in range(search_steps):
        frac = step / max(1, search_steps - 1)
        for i, d in enumerate(arch.domains):
            quality = min(1.0, 0.2 + 0.5 * frac + 0.1 * i + rng.uniform(-0.1, 0.1))
            cost = 1.0 + 0.3 * (1 - frac) * rng.uniform(-1, 1)
            reward = quality * cost**-0.07
            rows.append({"stage": "search", "step": step, "domain": d, "controller": d, "loss": 3.0 - 2 * frac,
                         "quality": quality, "cost": cost, "reward": reward, "baseline": baseline[d],
                         "entropy": 40.0 * (1 - 0.6 * frac), "expected_cost": 1.0 + 0.2 * (1 - frac),
                         "rl_active": step >= search_steps // 4, "lr": 0.05})
            baseline[d] = reward if baseline[d] is None else 0.9 * baseline[d] + 0.1 * reward
            probs = {}
            for k in decisions:
                logits = [4.0 * frac * (j == targets[d][k.key]) + rng.gauss(0, 0.1) for j in range(len(k.options))]
                z = sum(math.exp(v) for v in logits)
                probs[k.key] = [math.exp(v) / z for v in logits]
            rows.append({"stage": "search_probs", "step": step, "domain": d, "probs": probs})
    for step in range(train_steps):
        for i, d in enumerate(arch.domains):
            loss = 3.0 * math.exp(-step / train_steps * (1 + i)) + rng.uniform(0, 0.2)
            rows.append({"stage": "train", "step": step, "domain": d, "loss": loss, "weight": math.exp(loss / 2) / 2,
                         "lr": 0.1})
        if (step + 1) % 20 == 0:
            vals = {d: min(99.0, 20 + 60 * step / train_steps + 5 * i) for i, d in enumerate(arch.domains)}
            rows += [{"stage": "train_eval", "step": step, "domain": d, "val_top1": v} for d, v in vals.items()]
            mean = sum(vals.values()) / len(vals)
            rows.append({"stage": "train_eval", "step": step, "domain": "__mean__", "val_top1": mean})
    return rows


def results(arch: Architecture, data: str = "decathlon:/data/decathlon") -> dict[str, Any]:
    """results.json as `mpnas evaluate` writes it (plus an unknown key, which readers must tolerate)."""
    costs, total = domain_costs(arch), architecture_cost(arch)
    top1 = {d: 40.0 + 5 * i for i, d in enumerate(arch.domains)}
    return {
        "method": "mpnas",
        "data": data,
        "budget": "smoke",
        "seed": 0,
        "domains": {
            d: {"top1": top1[d], "params": costs[d].params, "macs": costs[d].macs,
                "num_classes": arch.num_classes[d], "eval_split": "val" if i == 0 else "test"}
            for i, d in enumerate(arch.domains)
        },
        "mean_top1": sum(top1.values()) / len(top1),
        "params_total": total.params,
        "macs_total": total.macs,
        "jaccard": arch.jaccard(),
        "shared_nodes": arch.shared_nodes(),
        "num_nodes": len(arch.node_users()),
        "decathlon_score": decathlon_score(top1) if data.startswith("decathlon:") else None,
        "wall_time_s": {"search": 12.5, "train": 30.25, "evaluate": 1.5},
        "future_key": {"nested": True},
    }


def write_run(run_dir: Path, arch: Architecture, rows: list[dict[str, Any]] | None = None,
              data: str = "decathlon:/data/decathlon") -> Path:
    """architecture.json, metrics.jsonl, results.json and config.yaml; rows=None writes no metrics at all."""
    run_dir.mkdir(parents=True, exist_ok=True)
    arch.save(run_dir / "architecture.json")
    write_json(run_dir / "results.json", results(arch, data))
    if rows is not None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run_dir / "config.yaml").write_text("seed: 0\nbudget: smoke\nsearch:\n  steps: 60\n", encoding="utf-8")
    return run_dir
