"""Initialisation of the networks every stage builds (`mpnas.config.ModelConfig`), applied after construction.

Construction draws PyTorch's default initialisation (Kaiming-normal, fan out, for the blocks' convs, set in
`mpnas.nn.dynamic`). The options here change it without touching the order of those draws, so a model built with
the defaults is the same, tensor for tensor, as before the options existed.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from mpnas.nn.dynamic import DynamicBatchNorm2d, DynamicSqueezeExcite


def initialise(model: nn.Module, scheme: str, zero_residual: bool) -> None:
    """Re-initialise `model` (a `Supernet` or `MultiPathModel`) in place.

    `scheme` "torchvision" draws linear layers from N(0, 0.01) with zero bias and the squeeze-and-excite convs
    Kaiming-normal (fan out), as torchvision's MobileNetV3 does; PyTorch's default gives a 512-wide linear layer
    weights up to 1/sqrt(fan in). `zero_residual` sets the scale of the last batch norm of every residual branch to
    zero (Goyal et al., "Accurate, Large Minibatch SGD"), so every residual block starts as the identity."""
    with torch.no_grad():
        if scheme == "torchvision":
            for m in model.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, DynamicSqueezeExcite):
                    for w, b in ((m.fc1_weight, m.fc1_bias), (m.fc2_weight, m.fc2_bias)):
                        nn.init.kaiming_normal_(w, mode="fan_out")
                        nn.init.zeros_(b)
        elif scheme != "pytorch":
            raise ValueError(f"unknown init scheme {scheme!r}")
        if zero_residual:
            norms: Iterable[DynamicBatchNorm2d] = model.residual_norms()  # type: ignore[operator]
            for bn in norms:
                bn.weight.zero_()
