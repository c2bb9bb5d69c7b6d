"""How large is each term's gradient on the gradient strategy's logits? (issue 16)

Trains the `default` search's supernet for WARMUP weight steps (uniform paths, TuNAS's warm-ups, no
architecture step), then, for two domains, draws three straight-through samples from uniform logits and
prints the mean |gradient| over all logits of the validation cross-entropy and of the cost term
(`-beta * log(E[T] / T0)`). Under Adam a consistent gradient moves the logits at about the learning rate per
step whatever its size, so a cost gradient as large as the cross-entropy's noisy one steers the search.

    python benchmarks/gradient_signal.py 150
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from mpnas.config import resolve_config
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.search import loop
from mpnas.search.gradient import GradientSearch, frozen
from mpnas.search.relax import make_gates, probabilities, sample_relaxed
from mpnas.search.rewards import cost_loss
from mpnas.train.checkpoint import Checkpointer
from mpnas.train.optim import progress_bar


def main() -> None:
    warmup = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    cfg = resolve_config("default", overrides=["search.strategy=gradient", f"search.steps={warmup}"])
    torch.set_num_threads(2)
    domains = load_data(cfg, False)
    space = build_space(cfg)
    groups = {d: [d] for d in domains.names()}
    state = loop._new_state(cfg, domains, space, groups, warmup, torch.device("cpu"))
    cost = loop.CostModel(space, {d.name: d.num_classes for d in domains}, None)
    targets = loop._targets(None, space, domains.names(), cost)
    quiet = Checkpointer(Path("unused"), "search", 0, "", None)
    loop._search_steps(state, space, groups, warmup, 10**9, space.decisions(), cfg.search, cost, targets, -0.07,
                       lambda row: None, progress_bar(1, "", False), quiet)  # weight steps only (learning never starts)
    search = GradientSearch(space, domains.names(), cost, targets, -0.07, cfg.search)
    val = state.val_loader.next()
    mean_abs = lambda grads: torch.cat([g.flatten() for g in grads if g is not None]).abs().mean().item()  # noqa: E731
    for d in ("digits", "glyphs"):
        ctrl = state.controllers[d]
        for _ in range(3):
            choices, hard = sample_relaxed(ctrl, cfg.search.tau_start, state.generator)
            geo = space.geometry(space.path_from_choices(choices))
            with frozen(state.supernet):
                x, y = val[d]
                ce = F.cross_entropy(state.supernet.forward_geometry(x, geo, d, None, make_gates(space, geo, choices, hard)), y)
                g_ce = torch.autograd.grad(ce, list(ctrl.logits), allow_unused=True)
            ratio = search.expected_ratio(probabilities(ctrl), [d])
            g_cost = torch.autograd.grad(cost_loss("mnas", ratio, -0.07), list(ctrl.logits), allow_unused=True)
            print(f"{d}: CE {ce.item():.3f}  mean |dCE/dlogit| {mean_abs(g_ce):.5f}  mean |dcost/dlogit| {mean_abs(g_cost):.5f}")


if __name__ == "__main__":
    main()
