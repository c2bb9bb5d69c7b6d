"""One reinforcement-learning controller per domain: independent categorical choices, REINFORCE updates.

As in TuNAS: one categorical distribution per decision of the space, logits starting at 0 (uniform), and
hierarchical sampling: a decision inside a layer the sample skips has no effect, so it is left out of the
log-probability and the entropy. Updates are REINFORCE with a moving-average reward baseline, or, when several
paths are scored per step on the same validation batch, with a leave-one-out baseline (`reinforce_loo_step`).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from mpnas.space.space import Decision, Path, SearchSpace


class Constraint(Protocol):
    """Which options of a decision a controller may take, given the values of the decisions before it."""

    def allowed(self, index: int, prefix: dict[str, Any]) -> list[bool]: ...


class Controller(nn.Module):
    """With a `constraint` (adding a domain to a trained model, `mpnas.space.extension.Admissible`), decisions are
    drawn in order, each from its softmax over the options the constraint allows given the earlier values. That is
    still a distribution over paths with an exact log-probability (the sum of the masked log-softmaxes), so
    REINFORCE learns the constrained policy directly; entropy and probabilities are reported unmasked."""

    def __init__(self, space: SearchSpace, constraint: Constraint | None = None) -> None:
        super().__init__()
        self.space = space
        self.decisions: list[Decision] = space.decisions()
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(len(d.options))) for d in self.decisions])
        self._index = {d.key: i for i, d in enumerate(self.decisions)}
        self.constraint = constraint

    def _masked(self, i: int, prefix: dict[str, Any]) -> Tensor:
        """Decision i's logits with the options the constraint forbids at -inf."""
        logits = self.logits[i]
        if self.constraint is None:
            return logits
        ok = torch.tensor(self.constraint.allowed(i, prefix), device=logits.device)
        return logits.masked_fill(~ok, float("-inf"))

    def sample(self, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Draw one value per decision (also those a skip will make irrelevant)."""
        out: dict[str, Any] = {}
        with torch.no_grad():
            for i, d in enumerate(self.decisions):
                k = int(torch.multinomial(torch.softmax(self._masked(i, out), 0), 1, generator=generator))
                out[d.key] = d.options[k]
        return out

    def _active(self, choices: dict[str, Any]) -> list[int]:
        """Indices of the decisions that matter for `choices` (gated ones of skipped layers excluded)."""
        return [i for i, d in enumerate(self.decisions) if d.skip_key is None or not choices[d.skip_key]]

    def log_prob(self, choices: dict[str, Any]) -> Tensor:
        """Log-probability of a draw. `choices` may lack the decisions of skipped layers (`SearchSpace.choices_of`)."""
        total = torch.zeros(())
        prefix = self._complete(choices) if self.constraint is not None else choices
        for i in self._active(choices):
            d = self.decisions[i]
            total = total + torch.log_softmax(self._masked(i, prefix), 0)[d.options.index(choices[d.key])]
        return total

    def _complete(self, choices: dict[str, Any]) -> dict[str, Any]:
        """`choices` with a value for each decision of a skipped layer (which no mask reads: it has no effect)."""
        return {d.key: choices[d.key] if d.key in choices else d.options[0] for d in self.decisions}

    @torch.no_grad()
    def entropy(self) -> Tensor:
        """Sum of the decisions' entropies, each gated decision weighted by the chance its layer is kept."""
        return self.entropy_tensor()

    def entropy_tensor(self) -> Tensor:
        """`entropy`, differentiable in the logits (the gradient strategy's minimum-entropy regulariser)."""
        total = torch.zeros((), device=self.logits[0].device) if len(self.logits) else torch.zeros(())
        for d, logits in zip(self.decisions, self.logits):
            h = -(torch.softmax(logits, 0) * torch.log_softmax(logits, 0)).sum()
            if d.skip_key is not None:
                keep = torch.softmax(self.logits[self._index[d.skip_key]], 0)[0]  # options are (False, True)
                h = h * keep
            total = total + h
        return total

    def probabilities(self) -> dict[str, list[float]]:
        with torch.no_grad():
            return {d.key: torch.softmax(l, 0).tolist() for d, l in zip(self.decisions, self.logits)}

    def most_likely(self) -> dict[str, Any]:
        """Each decision's most likely option; with a constraint, in order among the allowed ones (so the result
        is a path the constraint admits)."""
        out: dict[str, Any] = {}
        with torch.no_grad():
            for i, d in enumerate(self.decisions):
                out[d.key] = d.options[int(self._masked(i, out).argmax())]
        return out

    def most_likely_path(self) -> Path:
        return self.space.path_from_choices(self.most_likely())


def reinforce_step(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    choices: dict[str, Any],
    reward: float,
    baseline: float | None,
    momentum: float,
    learn: bool = True,
) -> float:
    """One REINFORCE update (advantage = reward - baseline) and the new moving-average baseline.

    The baseline is tracked from the first step, also while `learn` is False (before RL starts), so that the
    first updates already have a sensible advantage.
    """
    if learn and baseline is not None:
        loss = -(reward - baseline) * controller.log_prob(choices)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return reward if baseline is None else momentum * baseline + (1 - momentum) * reward


def reinforce_scored(controllers: dict[str, Controller], optimizers: dict[str, torch.optim.Optimizer],
                     baselines: dict[str, float | None], results: dict[str, dict[str, Any]], momentum: float,
                     learn: bool = True) -> None:
    """`reinforce_step` for every controller on the one path it drew and scored this step (`results[g]`'s
    choices and reward); each result records the baseline its advantage was measured against, and `baselines`
    is updated in place. The RL strategy's plain step, and the gradient strategy's warm start from RL."""
    for g, r in results.items():
        r["baseline"] = baselines[g]
        baselines[g] = reinforce_step(controllers[g], optimizers[g], r["choices"], r["reward"], baselines[g],
                                      momentum, learn=learn)


def reinforce_loo_step(controller: Controller, optimizer: torch.optim.Optimizer, samples: list[tuple[dict[str, Any], float]]) -> Tensor:
    """One REINFORCE update from K >= 2 paths scored on the same validation batch, each measured against the mean
    reward of the other K - 1 (leave-one-out; Kool et al., 2019). Returns the K advantages.

    Scoring every path on the same images pairs them: how hard this batch happens to be moves all K rewards
    together and cancels in the advantages, which a moving average over earlier batches cannot do. The estimate
    stays unbiased because each baseline is independent of its own sample."""
    k = len(samples)
    if k < 2:
        raise ValueError("reinforce_loo_step needs at least two samples")
    rewards = torch.tensor([r for _, r in samples], dtype=torch.float32)
    advantages = rewards - (rewards.sum() - rewards) / (k - 1)
    loss = -sum(a * controller.log_prob(c) for a, (c, _) in zip(advantages.tolist(), samples)) / k
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return advantages
