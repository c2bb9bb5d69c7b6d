"""One reinforcement-learning controller per domain: independent categorical choices, REINFORCE updates.

As in TuNAS: one categorical distribution per decision of the space, logits starting at 0 (uniform), and
hierarchical sampling: a decision inside a layer the sample skips has no effect, so it is left out of the
log-probability and the entropy. Updates are REINFORCE with a moving-average reward baseline, or, when several
paths are scored per step on the same validation batch, with a leave-one-out baseline (`reinforce_loo_step`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mpnas.space.space import Decision, Path, SearchSpace


class Controller(nn.Module):
    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.decisions: list[Decision] = space.decisions()
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(len(d.options))) for d in self.decisions])
        self._index = {d.key: i for i, d in enumerate(self.decisions)}

    def sample(self, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Draw one value per decision (also those a skip will make irrelevant)."""
        out = {}
        with torch.no_grad():
            for d, logits in zip(self.decisions, self.logits):
                i = int(torch.multinomial(torch.softmax(logits, 0), 1, generator=generator))
                out[d.key] = d.options[i]
        return out

    def _active(self, choices: dict[str, Any]) -> list[int]:
        """Indices of the decisions that matter for `choices` (gated ones of skipped layers excluded)."""
        return [i for i, d in enumerate(self.decisions) if d.skip_key is None or not choices[d.skip_key]]

    def log_prob(self, choices: dict[str, Any]) -> Tensor:
        total = torch.zeros(())
        for i in self._active(choices):
            d = self.decisions[i]
            total = total + torch.log_softmax(self.logits[i], 0)[d.options.index(choices[d.key])]
        return total

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
        with torch.no_grad():
            return {d.key: d.options[int(l.argmax())] for d, l in zip(self.decisions, self.logits)}

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
