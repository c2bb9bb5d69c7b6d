"""The merged architecture as a table of candidate nodes: who uses each node and at which widths.

The architecture figure draws this table and the report counts from it, so both say the same thing, and the
table can be checked without rendering anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mpnas.space.arch import Architecture
from mpnas.space.geometry import node_id
from mpnas.space.space import Path, SearchSpace, iter_layers


@dataclass(frozen=True)
class NodeUse:
    """One candidate node (a layer's kernel and SE choice) and the domains routed through it."""

    node: str
    block: int
    layer: int
    kernel: int
    se: bool
    domains: tuple[str, ...]  # users in domain order; empty: the node is dropped from the merged model
    widths: Mapping[str, tuple[int, int]]  # user -> (expanded, output) filters it uses inside the node

    @property
    def used(self) -> bool:
        return bool(self.domains)

    @property
    def shared(self) -> bool:
        return len(self.domains) > 1


def node_table(arch: Architecture) -> dict[str, NodeUse]:
    """Every candidate node of the space in network order (layer, kernel, SE), used or not."""
    widths: dict[str, dict[str, tuple[int, int]]] = {}
    for domain in arch.domains:
        for g in arch.space.geometry(arch.paths[domain]).layers:
            widths.setdefault(g.node, {})[domain] = (g.exp_ch, g.out_ch)
    table = {}
    for b, l, layer in iter_layers(arch.space):
        for kernel in sorted(layer.kernels):
            for se in sorted(layer.se):
                node = node_id(b, l, kernel, se)
                users = widths.get(node, {})
                table[node] = NodeUse(node, b, l, kernel, se, tuple(users), MappingProxyType(dict(users)))
    return table


def format_path(space: SearchSpace, path: Path) -> list[str]:
    """One line per block: output filters, then each layer as `k5 e4 se` or `skip`; readable in a code block."""
    lines = [f"stem  {path.stem_filters}" + ("" if path.stem_kernel is None else f" k{path.stem_kernel}")]
    for b, block in enumerate(path.blocks):
        layers = ["skip" if lc is None else f"k{lc.kernel} e{lc.expansion:g}" + (" se" if lc.se else "")
                  for lc in block.layers]
        lines.append(f"b{b}  {block.filters:>4}: " + " | ".join(layers))
    lines.append(f"head  {space.head_filters}" + (f" > {space.head_hidden}" if space.head_hidden else ""))
    return lines
