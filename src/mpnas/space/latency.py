"""Latency lookup tables measured on the machine at hand, and path latency as a sum over the table.

Every candidate op of every layer is timed at each input and output width it can meet (median of repeats,
batch 1, eval mode, no autograd) together with the stem and head; a path's latency is the sum of its entries.
As in TuNAS's cost model this is linear in the choices; unlike TuNAS's (fitted on a Pixel 1) it is measured
on the device that will run the model, which is what users of such tools ask for, and by the runtime that will
run it: eager PyTorch (`backend="torch"`), or onnxruntime (`backend="onnxruntime"`), each op exported by the same
exporter as `mpnas export` and timed in a one-thread session unless torch's thread count says otherwise.

This module holds the table: which shapes it has entries for (`candidate_geometries`), its keys, and the lookup.
Measuring one builds each candidate's module, so it is done above the space, by `mpnas.nn.measure`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Iterator

from mpnas.errors import MpnasError
from mpnas.io import read_json, write_json
from mpnas.space.geometry import ConvGeometry, HeadGeometry, LayerGeometry, PathGeometry
from mpnas.space.space import Path, SearchSpace

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
    """Every stem, layer candidate and head shape any path of `space` can contain (each once).

    Each shape is taken from `SearchSpace.geometry` of a path that puts the candidate where it is (its input and
    output widths, its op): the table then times exactly the modules a path is built from, whatever rule the
    geometry uses for widths (an expansion of 1, say, has no expand conv)."""
    reference = {d.key: False if d.kind == "skip" else d.options[0] for d in space.decisions()}

    def geometry(**choices: Any) -> PathGeometry:
        return space.geometry(space.path_from_choices({**reference, **choices}))

    for s in space.stem_filters:
        for k in space.stem_kernels:
            yield geometry(**{"stem.filters": s, "stem.kernel": k}).stem
    seen: set[str] = set()
    for b, block in enumerate(space.blocks):
        given, own = _width_decision(space, b - 1), _width_decision(space, b)
        for l, layer in enumerate(block.layers):
            for in_ch in _width_options(space, b - 1) if l == 0 else block.filters:
                for out_ch in block.filters if l == 0 and not block.keeps_width else (in_ch,):
                    for k in layer.kernels:
                        for e in layer.expansions:
                            for se in layer.se:
                                op = {f"b{b}.l{l}.kernel": k, f"b{b}.l{l}.expansion": e, f"b{b}.l{l}.se": se}
                                widths = {given: in_ch, own: out_ch} if l == 0 else {own: in_ch}
                                geo = geometry(**widths, **op)
                                g = next(g for g in geo.layers if (g.block, g.layer) == (b, l))
                                if layer_key(g) not in seen:  # two expansions can round to one width
                                    seen.add(layer_key(g))
                                    yield g
    for in_ch in _width_options(space, len(space.blocks) - 1):
        yield geometry(**{_width_decision(space, len(space.blocks) - 1): in_ch}).head


def _width_decision(space: SearchSpace, b: int) -> str:
    """The decision that sets block `b`'s output width ("stem.filters" for the stem, b = -1): a block that keeps
    its width passes on the width of the block before it."""
    while b >= 0 and space.blocks[b].keeps_width:
        b -= 1
    return "stem.filters" if b < 0 else f"b{b}.filters"


def _width_options(space: SearchSpace, b: int) -> tuple[int, ...]:
    """Block `b`'s output width options (the stem's for b = -1)."""
    return space.stem_filters if b < 0 else space.blocks[b].filters


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


def save_table(table: dict[str, Any], path: str | FsPath) -> None:
    write_json(path, table)
