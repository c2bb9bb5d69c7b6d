"""Combining the domains' losses into one: ABDP (seed 002, Eq. 2-3) and the variants of its Table 5.

ABDP minimises sum_i h(L_i) with a monotone boosting function h; the gradient reaching domain i's loss is
h'(L_i), so harder domains (larger losses) get larger weights. Variants:

    x          h = L                    identity: no boosting (weight 1)
    x2         h = L^2                  weight 2L
    exp        h = exp(L / w), w fixed  weight exp(L/w) / w
    exp_dec    w falls linearly w_max -> w_min over the run (the paper's default: hard domains matter more late)
    exp_inc    w rises linearly w_min -> w_max
    uwl        Kendall et al.'s uncertainty weighting: exp(-s_i) L_i + s_i / 2 with learnable s_i = log sigma_i^2
    empirical  fixed per-domain weights given in the config (1 where absent)

Losses are combined in float32 so that exp() cannot overflow in a half-precision autocast region.

The weight h'(L) scales the gradient. Adam and RMSProp with a small epsilon divide that scale out over time
(only the relative weights between domains remain), SGD does not: a weight of 10 is a 10x learning rate.
RMSProp with TuNAS's epsilon of 1.0 behaves much like SGD here. `normalize=True` rescales the weights to mean 1
at every step, which keeps the prioritisation between domains and removes the change of overall scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mpnas.config import LOSS_KINDS, LossConfig
from mpnas.errors import MpnasError

KINDS = LOSS_KINDS


class LossCombiner(nn.Module):
    fixed: Tensor  # a buffer: the per-domain weights of the fixed kinds

    def __init__(self, cfg: LossConfig, domains: list[str]) -> None:
        super().__init__()
        if cfg.kind not in KINDS:
            raise MpnasError(f"config loss.kind: {cfg.kind!r} is not one of {', '.join(KINDS)}")
        if cfg.kind.startswith("exp") and min(cfg.w, cfg.w_min, cfg.w_max) <= 0:
            raise MpnasError("config loss: w, w_min and w_max must be positive")
        unknown = sorted(set(cfg.weights) - set(domains))
        if unknown:
            raise MpnasError(f"config loss.weights: unknown domain(s) {', '.join(unknown)} (domains: {', '.join(domains)})")
        self.cfg = cfg
        self.domains = list(domains)
        self.register_buffer("fixed", torch.tensor([float(cfg.weights.get(d, 1.0)) for d in domains]))
        self.log_vars = nn.Parameter(torch.zeros(len(domains))) if cfg.kind == "uwl" else None

    def w(self, progress: float) -> float:
        """The prioritisation coefficient of the exp variants at `progress` in [0, 1] of the run."""
        c, p = self.cfg, min(max(progress, 0.0), 1.0)
        if c.kind == "exp_dec":
            return c.w_max - (c.w_max - c.w_min) * p
        if c.kind == "exp_inc":
            return c.w_min + (c.w_max - c.w_min) * p
        return c.w

    def boost(self, losses: Tensor, progress: float) -> Tensor:
        """h(L_i) for each domain (for uwl, the per-domain terms of its objective)."""
        L = losses.float()
        kind = self.cfg.kind
        if kind == "x":
            return L
        if kind == "x2":
            return L * L
        if kind.startswith("exp"):
            return torch.exp(L / self.w(progress))
        if kind == "uwl":
            assert self.log_vars is not None  # made for the uwl kind
            return torch.exp(-self.log_vars) * L + 0.5 * self.log_vars
        return self.fixed * L

    def weights(self, losses: Tensor, progress: float) -> Tensor:
        """h'(L_i): the factor by which domain i's gradient is scaled (no autograd needed)."""
        L = losses.detach().float()
        kind = self.cfg.kind
        if kind == "x":
            return torch.ones_like(L)
        if kind == "x2":
            return 2 * L
        if kind.startswith("exp"):
            w = self.w(progress)
            return torch.exp(L / w) / w
        if kind == "uwl":
            assert self.log_vars is not None  # made for the uwl kind
            return torch.exp(-self.log_vars.detach())
        return self.fixed.clone()

    def forward(self, losses: Tensor, progress: float) -> Tensor:
        """The joint loss whose gradient trains the shared weights; `losses` holds one scalar per domain."""
        if not self.cfg.normalize:
            return self.boost(losses, progress).sum()
        L = losses.float()
        c = self.weights(L, progress)
        total = (c / c.mean() * L).sum()
        if self.log_vars is not None:  # keep learning the log-variances from their own objective
            total = total + (torch.exp(-self.log_vars) * L.detach() + 0.5 * self.log_vars).sum()
        return total
