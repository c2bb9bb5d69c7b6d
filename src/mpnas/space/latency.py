"""Latency lookup tables measured on the machine at hand, and path latency as a sum over the table.

Every candidate op of every layer is timed at each input and output width it can meet (median of repeats,
batch 1, eval mode, no autograd) together with the stem and head; a path's latency is the sum of its entries.
As in TuNAS's cost model this is linear in the choices; unlike TuNAS's (fitted on a Pixel 1) it is measured
on the device that will run the model, which is what users of such tools ask for, and by the runtime that will
run it: eager PyTorch (`backend="torch"`), or onnxruntime (`backend="onnxruntime"`), each op exported by the same
exporter as `mpnas export` and timed in a one-thread session unless torch's thread count says otherwise.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Callable, Iterator

import torch
from torch import nn

from mpnas.errors import MpnasError
from mpnas.io import read_json, write_json
from mpnas.nn.blocks import ConvBNAct, Head, InvertedResidual
from mpnas.space.space import ConvGeometry, HeadGeometry, LayerGeometry, Path, PathGeometry, SearchSpace, make_divisible

FORMAT = "mpnas.latency/1"


def layer_key(g: LayerGeometry) -> str:
    return f"b{g.block}.l{g.layer}:in{g.in_ch}:exp{g.exp_ch}:out{g.out_ch}:k{g.kernel}:se{int(g.se_ch > 0)}"


def stem_key(g: ConvGeometry) -> str:
    return f"stem:out{g.out_ch}:k{g.kernel}"


def _old_stem_key(g: ConvGeometry) -> str:
    """The stem's key in tables measured before the stem kernel could be searched: their spaces had one stem
    kernel, so such an entry is that kernel's, and those tables stay usable."""
    return f"stem:out{g.out_ch}"


def head_key(g: HeadGeometry) -> str:
    return f"head:in{g.in_ch}"


def candidate_geometries(space: SearchSpace) -> Iterator[LayerGeometry | ConvGeometry | HeadGeometry]:
    """Every stem, layer candidate and head shape any path of `space` can contain (each once)."""
    res = (space.resolution - 1) // space.stem_stride + 1
    for s in space.stem_filters:
        for k in space.stem_kernels:
            yield ConvGeometry(3, s, k, space.stem_stride, space.resolution, res, space.stem_act)
    in_choices = space.stem_filters
    seen: set[str] = set()
    for b, block in enumerate(space.blocks):
        for l, layer in enumerate(block.layers):
            out_res = (res - 1) // layer.stride + 1
            for in_ch in in_choices if l == 0 else block.filters:
                for out_ch in block.filters if l == 0 and not block.keeps_width else (in_ch,):
                    for k in layer.kernels:
                        for e in layer.expansions:
                            for se in layer.se:
                                exp_ch = make_divisible(in_ch * e)
                                se_ch = make_divisible(exp_ch * space.se_ratio) if se else 0
                                g = LayerGeometry(b, l, in_ch, exp_ch, out_ch, k, se_ch, layer.stride, layer.act, res, out_res)
                                if layer_key(g) not in seen:  # two expansions can round to one width
                                    seen.add(layer_key(g))
                                    yield g
            res = out_res
        in_choices = block.filters
    for in_ch in in_choices:
        yield HeadGeometry(in_ch, space.head_filters, space.head_hidden, res, space.head_act)


def _module_for(g: LayerGeometry | ConvGeometry | HeadGeometry) -> tuple[str, nn.Module, tuple[int, ...]]:
    if isinstance(g, LayerGeometry):
        return layer_key(g), InvertedResidual(g), (1, g.in_ch, g.in_res, g.in_res)
    if isinstance(g, ConvGeometry):
        return stem_key(g), ConvBNAct(g.in_ch, g.out_ch, g.kernel, g.stride, act=g.act), (1, 3, g.in_res, g.in_res)
    return head_key(g), Head(g), (1, g.in_ch, g.res, g.res)


def time_module(module: nn.Module, shape: tuple[int, ...], repeats: int, warmup: int = 3) -> float:
    """Median wall time of one forward pass in milliseconds."""
    module.eval()
    x = torch.randn(shape)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_onnxruntime(module: nn.Module, shape: tuple[int, ...], repeats: int, warmup: int = 3) -> float:
    """Median wall time (ms) of one run of the module exported to ONNX, in an onnxruntime session."""
    import tempfile

    from mpnas.deploy.export import export_onnx, session

    module.eval()
    x = torch.randn(shape).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = FsPath(tmp) / "op.onnx"
        export_onnx(module, path, shape[-1], channels=shape[1])
        sess = session(path, torch.get_num_threads())
        times = []
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            sess.run(["logits"], {"image": x})
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


BACKENDS = ("torch", "onnxruntime")


def measure_table(
    space: SearchSpace, repeats: int = 20, progress: Callable[[int, int], None] | None = None, backend: str = "torch"
) -> dict:
    if backend not in BACKENDS:
        raise MpnasError(f"latency backend {backend!r} unknown; choose from {', '.join(BACKENDS)}")
    geoms = list(candidate_geometries(space))
    entries: dict[str, float] = {}
    for i, g in enumerate(geoms):
        key, module, shape = _module_for(g)
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


@dataclass
class LatencyTable:
    entries: dict[str, float]
    space: str
    resolution: int
    source: str = "table"

    @staticmethod
    def load(path: str | FsPath) -> LatencyTable:
        data = read_json(path, "latency table")
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
            raise MpnasError(f"latency table {path}: not an mpnas latency table (format {FORMAT!r} with 'entries')")
        for k, v in data["entries"].items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise MpnasError(f"latency table {path}: entry {k!r} must be a non-negative number of ms, got {v!r}")
        return LatencyTable(dict(data["entries"]), str(data.get("space")), int(data.get("resolution", 0)), str(path))

    def check(self, space: SearchSpace) -> None:
        if self.resolution != space.resolution:
            raise MpnasError(
                f"latency table {self.source}: measured at {self.resolution} px, the space runs at {space.resolution} px"
            )

    def _get(self, key: str) -> float:
        if key not in self.entries:
            raise MpnasError(f"latency table {self.source}: no entry {key!r} (measured for another space?)")
        return float(self.entries[key])

    def _stem(self, g: ConvGeometry) -> float:
        if stem_key(g) not in self.entries and _old_stem_key(g) in self.entries:
            return float(self.entries[_old_stem_key(g)])
        return self._get(stem_key(g))

    def geometry_latency(self, geo: PathGeometry) -> float:
        return self._stem(geo.stem) + sum(self._get(layer_key(g)) for g in geo.layers) + self._get(head_key(geo.head))

    def path_latency(self, space: SearchSpace, path: Path) -> float:
        return self.geometry_latency(space.geometry(path))


def save_table(table: dict, path: str | FsPath) -> None:
    write_json(path, table)
