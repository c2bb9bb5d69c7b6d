"""What the cost-model tests measure a module by: its parameters, and multiply-adds by PyTorch's flop counter."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def macs_by_flop_counter(fn: Callable[[], Any]) -> int:
    """Multiply-adds of everything `fn` runs (the flop counter counts 2 per multiply-add)."""
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() // 2
