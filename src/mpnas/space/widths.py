"""Width configurations: how far each domain's path is slimmed at deploy time (seed 003), as plain JSON data.

A trained slimmable model (`train.slimmable`) can run every domain's path at a fraction of its searched widths:
each *width unit* of a path (the stem's filters, and each block's output filters) is multiplied by one of the
trained multipliers and rounded to a multiple of 4. The expansion widths follow, since a layer's expanded width
is its input width times the path's expansion ratio, so slimming a block also slims the layers after it.

Everything else reads widths from geometry, so a configuration becomes an ordinary architecture whose filter
counts are the slimmed ones (`slim_architecture`): the cost model, the merged model built from scratch at those
widths, and the geometry a trained model runs for that configuration all come from it. Slicing gives channel
prefixes, so a slimmed domain runs the first channels of every weight it used at full width.

Each domain has its own multipliers. In a node two domains share, each runs its own prefix (as they already do
with different searched widths), so a domain's compute follows its own widths, while the node's stored weights
follow its widest user.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path as FsPath
from typing import Any, Mapping, Sequence

from mpnas.errors import MpnasError
from mpnas.io import read_json
from mpnas.space.arch import Architecture
from mpnas.space.cost import Cost, architecture_cost, domain_costs
from mpnas.space.space import BlockChoice, Path, SearchSpace

WIDTHS_FORMAT = "mpnas.widths/1"
STEM = "stem"


def width_units(space: SearchSpace) -> list[str]:
    """The width units of a path in `space`: the stem, then every block that sets its own output width."""
    return [STEM] + [f"b{b}" for b, block in enumerate(space.blocks) if not block.keeps_width]


def slim_width(filters: int, multiplier: float) -> int:
    """`filters x multiplier`, rounded to the nearest multiple of 4 (at least 4).

    MobileNet rounds to 8, but the built-in space's widths are 16 to 128, where 8 is too coarse: 0.75 x 16 would
    round back to 16."""
    return max(4, int(filters * multiplier / 4 + 0.5) * 4)


def slim_path(space: SearchSpace, path: Path, multipliers: Mapping[str, float]) -> Path:
    """`path` with its stem and block filters multiplied (a block that keeps its width follows its input)."""
    stem = width = slim_width(path.stem_filters, multipliers[STEM])
    blocks = []
    for b, (block, bc) in enumerate(zip(space.blocks, path.blocks)):
        width = width if block.keeps_width else slim_width(bc.filters, multipliers[f"b{b}"])
        blocks.append(BlockChoice(width, bc.layers))
    return Path(stem, tuple(blocks), path.stem_kernel)


@dataclass(frozen=True)
class Widths:
    """Per domain, the multiplier of each width unit."""

    multipliers: dict[str, dict[str, float]]

    @staticmethod
    def uniform(arch: Architecture, multiplier: float) -> Widths:
        units = width_units(arch.space)
        return Widths({d: {u: multiplier for u in units} for d in arch.domains})

    @staticmethod
    def sample(arch: Architecture, options: Sequence[float], rng: random.Random) -> Widths:
        """Every unit of every domain drawn uniformly and independently from `options`."""
        units = width_units(arch.space)
        return Widths({d: {u: rng.choice(list(options)) for u in units} for d in arch.domains})

    def is_full(self) -> bool:
        return all(m == 1.0 for ms in self.multipliers.values() for m in ms.values())

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {d: dict(ms) for d, ms in self.multipliers.items()}

    @staticmethod
    def from_dict(data: Any, arch: Architecture, options: Sequence[float], where: str) -> Widths:
        """Parse a `widths` object and check it against the architecture and the trained multipliers; every
        error names the domain and unit."""
        if not isinstance(data, dict):
            raise MpnasError(f"{where}: 'widths' must be an object of domain -> {{unit: multiplier}}")
        unknown = sorted(set(data) - set(arch.domains))
        if unknown:
            raise MpnasError(f"{where}: unknown domain(s) {', '.join(unknown)} (the run has {', '.join(arch.domains)})")
        missing = [d for d in arch.domains if d not in data]
        if missing:
            raise MpnasError(f"{where}: no widths for domain(s) {', '.join(missing)}")
        units = width_units(arch.space)
        out: dict[str, dict[str, float]] = {}
        for d in arch.domains:
            entry = data[d]
            if not isinstance(entry, dict) or set(entry) != set(units):
                raise MpnasError(f"{where} domain {d!r}: needs exactly the units {', '.join(units)}")
            out[d] = {}
            for u in units:
                m = entry[u]
                match = [o for o in options if isinstance(m, (int, float)) and not isinstance(m, bool) and math.isclose(m, o)]
                if not match:
                    raise MpnasError(f"{where} domain {d!r} unit {u!r}: multiplier {m!r} was not trained "
                                     f"(train.slim_multipliers: {list(options)})")
                out[d][u] = match[0]
        return Widths(out)


def slim_architecture(arch: Architecture, widths: Widths) -> Architecture:
    """The architecture whose paths have the slimmed widths: a plain architecture that can be built, costed and
    trained like any other. Its space lists the slimmed filter counts among each block's options."""
    space = arch.space
    paths = {d: slim_path(space, p, widths.multipliers[d]) for d, p in arch.paths.items()}
    stem = tuple(sorted(set(space.stem_filters) | {p.stem_filters for p in paths.values()}))
    blocks, given = [], stem
    for b, block in enumerate(space.blocks):
        filters = given if block.keeps_width else tuple(sorted(set(block.filters) | {p.blocks[b].filters for p in paths.values()}))
        blocks.append(replace(block, filters=filters))
        given = filters
    slim_space = replace(space, stem_filters=stem, blocks=tuple(blocks))
    meta = {**arch.meta, "widths": widths.to_dict()}
    return Architecture(slim_space, paths, dict(arch.num_classes), arch.routing_ratio, meta)


def read_config_widths(path: str | FsPath, arch: Architecture, options: Sequence[float]) -> Widths:
    """The widths of a CONFIG.json written by `mpnas configure` (or by hand: only `widths` is read)."""
    data = read_json(path, "width configuration")
    if not isinstance(data, dict) or "widths" not in data:
        raise MpnasError(f"width configuration {path}: needs a 'widths' object (write one with `mpnas configure`)")
    return Widths.from_dict(data["widths"], arch, options, f"width configuration {path}")


def widths_cost(arch: Architecture, widths: Widths, bn_per_domain: bool = True) -> tuple[Cost, dict[str, Cost]]:
    """The merged model's cost at `widths` (parameters counted once per module, at its widest user; MACs summed
    over one image per domain), and each domain's own path's cost."""
    slim = slim_architecture(arch, widths)
    return architecture_cost(slim, bn_per_domain), domain_costs(slim)
