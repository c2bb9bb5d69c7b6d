"""Measuring a latency table (`mpnas.space.latency`): every candidate shape of a space built as the module a path
is made of (`mpnas.nn.blocks`) and timed in the runtime that will run it (`mpnas.runtime`).

The space says which shapes exist and how a table is read; building modules from them is this layer's job, so
the space never needs the modules, and the timing is the same code `mpnas export` measures whole paths with.
"""

from __future__ import annotations

import platform
from typing import Any, Callable

import torch
from torch import nn

from mpnas.errors import MpnasError
from mpnas.nn.blocks import ConvBNAct, Head, InvertedResidual
from mpnas.runtime import time_module, time_onnxruntime
from mpnas.space.geometry import ConvGeometry, HeadGeometry, LayerGeometry
from mpnas.space.latency import FORMAT, candidate_geometries, head_key, layer_key, stem_key
from mpnas.space.space import SearchSpace

BACKENDS = ("torch", "onnxruntime")


def module_for(g: LayerGeometry | ConvGeometry | HeadGeometry) -> tuple[str, nn.Module, tuple[int, ...]]:
    """A candidate's table key, its module and the shape of its input."""
    if isinstance(g, LayerGeometry):
        return layer_key(g), InvertedResidual(g), (1, g.in_ch, g.in_res, g.in_res)
    if isinstance(g, ConvGeometry):
        return stem_key(g), ConvBNAct(g.in_ch, g.out_ch, g.kernel, g.stride, act=g.act), (1, 3, g.in_res, g.in_res)
    return head_key(g), Head(g), (1, g.in_ch, g.res, g.res)


def measure_table(
    space: SearchSpace, repeats: int = 20, progress: Callable[[int, int], None] | None = None, backend: str = "torch"
) -> dict[str, Any]:
    """Time every candidate of `space` (median of `repeats`, batch 1) with `backend`; the table as JSON data."""
    if backend not in BACKENDS:
        raise MpnasError(f"latency backend {backend!r} unknown; choose from {', '.join(BACKENDS)}")
    geoms = list(candidate_geometries(space))
    entries: dict[str, float] = {}
    for i, g in enumerate(geoms):
        key, module, shape = module_for(g)
        timer = time_module if backend == "torch" else time_onnxruntime
        entries[key] = round(timer(module, shape, repeats), 5)
        if progress is not None:
            progress(i + 1, len(geoms))
    return {
        "format": FORMAT,
        "backend": backend,
        "space": space.name,
        "resolution": space.resolution,
        "unit": "ms",
        "batch": 1,
        "repeats": repeats,
        "statistic": "median",
        "threads": torch.get_num_threads(),
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "entries": entries,
    }


__all__ = ["BACKENDS", "measure_table", "module_for"]
