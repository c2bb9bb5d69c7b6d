"""The gradient search strategy (`search.strategy: gradient`), after MTL-NAS (seed 004) and GDAS/FBNetV2.

The controllers' logits are the architecture parameters, as for REINFORCE, so everything downstream (the
derived paths, the end-of-search selection, the report's probabilities and entropy) is shared. What differs
is how they learn. After the supernet's weight step on the training batch, every controller takes one
first-order step on

    CE(validation batch | straight-through sample) + cost_loss(E[T] / T0) + lambda(t) * H(logits)

- the cross-entropy of a straight-through Gumbel sample of its path (`mpnas.search.relax`): hard in the
  forward pass, so only the sampled candidates run and the step costs one path's forward and backward;
- the cost term traded as Eq. 1 trades it (`rewards.cost_loss`: -beta * log(E[T] / T0) for the MnasNet
  reward), on the exact expected cost under the current distribution, so every width and skip decision gets
  a cost gradient at every step, not only the sampled options;
- the minimum-entropy regulariser of MTL-NAS, whose weight ramps linearly from 0 to `search.entropy_weight`
  over the learning steps, so that the task signal orders the options first and the regulariser then drives
  each decision to a near-discrete choice: the supernet's weights for the derived path are then the ones it
  was trained with, which is what lets the single-shot model (`train.from_supernet`) skip training from scratch.

The Gumbel-softmax temperature decays geometrically from `search.tau_start` to `search.tau_end`; it shapes
only the gradient (the hard sample is a categorical draw at any temperature). Weight gradients are not
computed during the architecture step (the supernet's parameters are frozen for it), only those of the inputs.

Issue 16 found this search shrinking to the cheapest path: a gate's first-order gradient `<dL/dy, y>` leans
towards less of any branch that does not help on the batch. Two options change that, both off by default:

- `search.gradient_ops=reinforce`: the op choices (kernel, squeeze-and-excite, skip) leave the gates (held at 1)
  and learn by REINFORCE on the same validation cross-entropy, against a moving-average baseline; only widths
  keep the straight-through gradient. The objective is unchanged (E[CE] + cost + entropy), its estimator for
  ops unbiased. The cost still reaches every decision through the exact expected cost.
- `search.gradient_rl_fraction=f`: the first f of the learning steps are the paper's REINFORCE steps on the
  MnasNet reward (every path scored before the weight step, as `search.strategy=rl`), with this strategy's
  optimiser; the gradient step then starts from the distribution RL reached (a warm start from RL).
"""

from __future__ import annotations

import math

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mpnas.search.controller import Controller, reinforce_scored
from mpnas.search.relax import ExpectedCost, Hard, make_gates, mean_max_probability, probabilities, sample_relaxed
from mpnas.search.rewards import cost_loss, reward
from mpnas.space.geometry import PathGeometry
from mpnas.space.space import SearchSpace
from mpnas.train.optim import autocast


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """The module's parameters need no gradient inside the block (the architecture step only needs inputs')."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class GradientSearch:
    """The gradient strategy (`mpnas.search.loop.Strategy`): the architecture step, its schedules and its
    expected-cost tables. Paths are scored before the weight step only at logging steps of the warm-up (while the
    controllers do not learn); once they learn, the architecture step itself scores the path it samples."""

    betas = (0.5, 0.999)  # DARTS's architecture optimiser (beta1 0.5)

    def __init__(self, space: SearchSpace, names: list[str], cost: Any, targets: dict[str, float], beta: float,
                 sc: Any) -> None:
        self.space = space
        self.sc = sc
        self.beta = beta
        self.targets = targets
        self.cost = cost
        self.lr = sc.arch_lr
        self.expected = {d: ExpectedCost(space, _cost_of(cost, d)) for d in names}

    def rl_until(self, steps: int, first: int) -> int:
        """The first step of the gradient phase: `search.gradient_rl_fraction` of the learning steps are RL's."""
        return first + int(round(self.sc.gradient_rl_fraction * max(0, steps - first)))

    def scores(self, logging: bool, rl_active: bool, step: int, steps: int, first: int) -> bool:
        if rl_active and step < self.rl_until(steps, first):
            return True  # REINFORCE learns from the score of every step's path
        return logging and not rl_active

    def extra_paths(self, state: Any, group: str, members: list[str],
                    val_batch: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
        return []

    def learn(self, state: Any, groups: dict[str, list[str]], results: dict[str, dict[str, Any]],
              val_batch: dict[str, Any], step: int, steps: int, first: int,
              statistics: list[torch.Tensor]) -> dict[str, dict[str, Any]]:
        """The architecture step once the controllers learn (`step`), after the RL steps of a warm start from RL."""
        until = self.rl_until(steps, first)
        if first <= step < until:
            reinforce_scored(state.controllers, state.controller_optimizers, state.baselines, results,
                             self.sc.baseline_momentum)
            return results
        if step >= first:
            if step == until and until > first:  # the REINFORCE ops' baseline is a cross-entropy, not a reward
                for g in state.baselines:
                    state.baselines[g] = None
            results = self.step(state, groups, val_batch, step, steps, first, statistics)
        for r in results.values():
            r.setdefault("baseline", None)
        return results

    def expected_cost(self, c: Any, members: list[str], result: dict[str, Any], step: int) -> float:
        """Exact, and (when learning) before this step's update, as the architecture loss saw it."""
        if result.get("expected_cost"):
            return result["expected_cost"]
        with torch.no_grad():
            return float(self.expected_ratio(probabilities(c), members))

    def own_fields(self, result: dict[str, Any]) -> dict[str, Any]:
        return {k: result[k] for k in ("tau", "entropy_weight", "arch_loss", "max_prob") if k in result}

    def progress(self, step: int, steps: int, first: int) -> float:
        """0 at the first learning step, 1 at the last."""
        return min(1.0, max(0.0, (step - first) / max(1, steps - first - 1)))

    def temperature(self, t: float) -> float:
        return self.sc.tau_start * (self.sc.tau_end / self.sc.tau_start) ** t

    def expected_ratio(self, probs: dict[str, torch.Tensor], members: list[str]) -> torch.Tensor:
        """E[T / T0] averaged over the member domains, differentiable in `probs`."""
        first, *rest = members
        total = self.expected[first](probs) / self.targets[first]
        for d in rest:
            total = total + self.expected[d](probs) / self.targets[d]
        return total / len(members)

    def step(self, state: Any, groups: dict[str, list[str]], val_batch: dict[str, Any], step: int, steps: int,
             first: int, statistics: list[torch.Tensor]) -> dict[str, dict[str, Any]]:
        """One architecture step of every controller on this step's validation batch; returns, per controller,
        what the search logs (the fields of an RL step's score, plus the gradient strategy's own)."""
        sc, space = self.sc, self.space
        t = self.progress(step, steps, first)
        tau, lam = self.temperature(t), sc.entropy_weight * t
        results = {}
        with frozen(state.supernet):
            for g, members in groups.items():
                ctrl, opt = state.controllers[g], state.controller_optimizers[g]
                choices, hard = sample_relaxed(ctrl, tau, state.generator)
                if sc.gradient_ops == "reinforce":
                    hard = ops_held(ctrl, hard)
                geo = space.geometry(space.path_from_choices(choices))
                gates = make_gates(space, geo, choices, hard)
                losses, sums = [], []
                for d in members:
                    x, y = val_batch[d]
                    with autocast(x.device, state.dtype):
                        logits = state.supernet.forward_geometry(x, geo, d, None, gates)
                    losses.append(F.cross_entropy(logits.float(), y))
                    sums.append(batch_counts(logits.detach(), y, sc.quality))
                ce = state.ranks.global_losses(torch.stack(losses)).mean()
                ratio = self.expected_ratio(probabilities(ctrl), members)
                penalty = cost_loss(sc.reward, ratio.float(), self.beta)
                ent = ctrl.entropy_tensor()
                loss = ce + penalty + lam * ent
                b = state.baselines[g]  # the op choices' cross-entropy baseline (gradient_ops=reinforce)
                if sc.gradient_ops == "reinforce":
                    ce_value = float(ce.detach())
                    if b is not None:  # the first step only sets the baseline
                        loss = loss + (ce_value - b) * ops_log_prob(ctrl, choices)
                    state.baselines[g] = ce_value if b is None else sc.baseline_momentum * b + (1 - sc.baseline_momentum) * ce_value
                opt.zero_grad(set_to_none=True)
                loss.backward()
                state.ranks.average_gradients(list(ctrl.parameters()))
                opt.step()
                counts = state.ranks.sum(torch.stack(sums))
                top1s, qualities = scores_of(counts, sc.quality)
                q = sum(qualities) / len(qualities)
                rel_cost = sum(self.cost(d, geo) / self.targets[d] for d in members) / len(members)
                results[g] = {"quality": q, "reward": reward(sc.reward, q, rel_cost, 1.0, self.beta), "cost": rel_cost,
                              "qualities": dict(zip(members, qualities)), "top1": dict(zip(members, top1s)),
                              "choices": choices, "extra": [], "tau": tau, "entropy_weight": lam,
                              "baseline": b if sc.gradient_ops == "reinforce" else None,
                              "arch_loss": float(loss.detach()), "expected_cost": float(ratio.detach()),
                              "max_prob": mean_max_probability(ctrl)}
        state.ranks.average_gradients([], statistics)  # the validation forwards moved batch norm's running statistics
        return results


OP_KINDS = ("kernel", "se", "skip")  # the op choices; widths are "filters" and "expansion"


def ops_held(controller: Controller, hard: Hard) -> Hard:
    """`hard` with the op choices' vectors detached: their gates are exactly 1 on the chosen option and pass no
    gradient to the logits (`search.gradient_ops=reinforce`)."""
    kinds = {d.key: d.kind for d in controller.decisions}
    return {k: h.detach() if kinds[k] in OP_KINDS else h for k, h in hard.items()}


def ops_log_prob(controller: Controller, choices: dict[str, Any]) -> torch.Tensor:
    """The log-probability of the op choices among `choices` that matter (a skipped layer's are left out, as in
    `Controller.log_prob`): the score function of REINFORCE for the op choices."""
    total = torch.zeros((), device=controller.logits[0].device)
    for d, logits in zip(controller.decisions, controller.logits):
        if d.kind in OP_KINDS and (d.skip_key is None or not choices[d.skip_key]):
            total = total + torch.log_softmax(logits, 0)[d.options.index(choices[d.key])]
    return total


def _cost_of(cost: Any, domain: str) -> Callable[[PathGeometry], float]:
    """`cost` of one domain, as `ExpectedCost` takes it."""
    return lambda geo: cost(domain, geo)


def batch_counts(logits: torch.Tensor, y: torch.Tensor, quality: str) -> torch.Tensor:
    """[correct, quality sum, n] of one validation batch: summed over ranks, then divided, as a path's score
    (`scores_of`). The quality sum is the correct count (top1), the true class's probabilities (prob), or the
    cross-entropy (likelihood)."""
    correct = (logits.argmax(1) == y).sum().float()
    if quality == "prob":
        q = torch.softmax(logits.float(), 1).gather(1, y[:, None]).sum()
    elif quality == "likelihood":
        q = F.cross_entropy(logits.float(), y, reduction="sum")
    else:
        q = correct
    return torch.stack([correct, q, torch.tensor(float(len(y)), device=y.device)])


def scores_of(counts: torch.Tensor, quality: str) -> tuple[list[float], list[float]]:
    """Per row of summed `batch_counts`: top-1 and Q. Q `likelihood` is exp(-mean cross-entropy), the geometric
    mean of the true class's probability: in (0, 1] like the others, so the multiplicative MnasNet reward keeps
    its meaning, and it moves with the loss (every logit of every image), not only when an argmax flips."""
    top1s, qualities = (counts[:, :2] / counts[:, 2:]).T.tolist()
    if quality == "likelihood":
        qualities = [math.exp(-q) for q in qualities]
    return top1s, qualities


__all__ = ["GradientSearch", "OP_KINDS", "batch_counts", "frozen", "ops_held", "ops_log_prob", "scores_of"]
