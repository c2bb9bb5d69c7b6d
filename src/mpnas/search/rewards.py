"""Rewards that trade a sampled path's quality Q against its cost T (TuNAS; seed 002, Eq. 1).

    mnas       Q * (T / T0)^beta                 (MnasNet's soft reward; the paper's, beta = -0.07)
    mnas_hard  Q * min((T / T0)^beta, 1)          (no bonus for being cheaper than the target)
    abs        Q + beta * |T / T0 - 1|            (TuNAS's absolute reward, beta = -0.10)

Q is top-1 on a validation batch (0..1), T the path's cost (latency from a table, or MACs), T0 the target.
"""

from __future__ import annotations

import torch

from mpnas.config import REWARDS
from mpnas.errors import MpnasError

DEFAULT_BETA = {"mnas": -0.07, "mnas_hard": -0.07, "abs": -0.10}


def reward(kind: str, quality: float, cost: float, target: float, beta: float) -> float:
    if target <= 0 or cost <= 0:
        raise MpnasError(f"reward: cost {cost} and target T0 {target} must be positive")
    ratio = cost / target
    if kind == "mnas":
        return quality * ratio**beta
    if kind == "mnas_hard":
        return quality * min(ratio**beta, 1.0)
    if kind == "abs":
        return quality + beta * abs(ratio - 1.0)
    raise MpnasError(f"config search.reward: {kind!r} is not one of {', '.join(REWARDS)}")


def cost_loss(kind: str, ratio: torch.Tensor, beta: float) -> torch.Tensor:
    """The reward's cost trade as a term of the gradient strategy's loss, `ratio` being E[T] / T0.

    With the cross-entropy standing for -log Q, minimising CE + this term maximises the reward: -beta * log(ratio)
    is -log of MnasNet's factor (ratio^beta), clipped at 0 for `mnas_hard`; `abs` subtracts its penalty directly."""
    if kind == "mnas":
        return -beta * torch.log(ratio)
    if kind == "mnas_hard":
        return -beta * torch.log(ratio).clamp(min=0.0)
    if kind == "abs":
        return -beta * (ratio - 1.0).abs()
    raise MpnasError(f"config search.reward: {kind!r} is not one of {', '.join(REWARDS)}")
