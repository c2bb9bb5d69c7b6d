"""Adding domains to a trained architecture: which new paths can reuse its modules as they are, and what they add.

A trained merged model (`mpnas.nn.merged`) holds one module per node, sized to the widest of the node's users, one
stem conv per stem kernel, and one head conv. A new domain may pass through any of them without changing a weight
of the old domains only when its path fits inside them: at a node the trained model has (same layer, kernel and
squeeze-and-excite), its input, expansion, output and squeeze widths are at most the node's, and it expands only if
the node has an expand conv; its stem kernel is one the model has, no wider; its last width is at most the head
conv's input. Every other node of its path (a kernel or SE choice no old domain took at that layer) is new. The
new domain always gets its own batch norm everywhere and its own classifier, so the old domains' outputs stay
bit-identical (`Frozen.fits` is what guarantees it: the merged model sizes every module by its users).

The cost a new domain adds is the merged model's growth in parameters (new nodes, its batch norms and classifier;
reused convolutions add nothing) and the MACs of its own path (`Frozen.added_params`, `ExtensionCost` in the search).
"""

from __future__ import annotations

from dataclasses import dataclass

from mpnas.space.arch import Architecture
from mpnas.space.cost import architecture_cost, layer_params
from mpnas.space.geometry import LayerGeometry, PathGeometry
from mpnas.space.space import Path


@dataclass(frozen=True)
class NodeSize:
    """A trained node's module: the widest of its users' widths, and whether it has an expand conv."""

    in_ch: int
    exp_ch: int
    out_ch: int
    se_ch: int
    expands: bool


@dataclass(frozen=True)
class Frozen:
    """The sizes of a trained architecture's modules, which new paths must fit inside to reuse them."""

    base: Architecture
    nodes: dict[str, NodeSize]
    stems: dict[int, int]  # stem kernel -> conv width
    head_in: int

    @staticmethod
    def of(arch: Architecture) -> Frozen:
        users: dict[str, list[LayerGeometry]] = {}
        stems: dict[int, int] = {}
        head_in = 0
        for d in arch.domains:
            geo = arch.space.geometry(arch.paths[d])
            stems[geo.stem.kernel] = max(stems.get(geo.stem.kernel, 0), geo.stem.out_ch)
            head_in = max(head_in, geo.head.in_ch)
            for g in geo.layers:
                users.setdefault(g.node, []).append(g)
        nodes = {n: NodeSize(max(g.in_ch for g in us), max(g.exp_ch for g in us), max(g.out_ch for g in us),
                             max(g.se_ch for g in us), any(g.has_expand for g in us)) for n, us in users.items()}
        return Frozen(arch, nodes, stems, head_in)

    def misfit(self, geo: PathGeometry) -> str | None:
        """Why a path with this geometry cannot be added without changing a trained module (None: it fits)."""
        if geo.stem.kernel not in self.stems:
            return f"stem kernel {geo.stem.kernel} is not the trained model's ({sorted(self.stems)})"
        if geo.stem.out_ch > self.stems[geo.stem.kernel]:
            return f"stem width {geo.stem.out_ch} > the trained stem's {self.stems[geo.stem.kernel]}"
        for g in geo.layers:
            why = self.node_misfit(g) if g.node in self.nodes else None  # a new node takes any widths
            if why:
                return why
        if geo.head.in_ch > self.head_in:
            return f"last width {geo.head.in_ch} > the trained head conv's input {self.head_in}"
        return None

    def node_misfit(self, g: LayerGeometry) -> str | None:
        """Why the trained module of `g`'s node cannot run `g` unchanged (None: it can; it must be a trained node)."""
        size = self.nodes[g.node]
        for name in ("in_ch", "exp_ch", "out_ch", "se_ch"):
            if getattr(g, name) > getattr(size, name):
                return f"node {g.node}: {name} {getattr(g, name)} > the trained node's {getattr(size, name)}"
        if g.has_expand and not size.expands:
            return f"node {g.node}: expands, and the trained node has no expand conv"
        return None

    def stem_fits(self, kernel: int, width: int) -> bool:
        return kernel in self.stems and width <= self.stems[kernel]

    def fits(self, geo: PathGeometry) -> bool:
        return self.misfit(geo) is None

    def reused(self, geo: PathGeometry) -> list[str]:
        """The trained nodes this path passes through."""
        return [g.node for g in geo.layers if g.node in self.nodes]

    def combined(self, paths: dict[str, Path], num_classes: dict[str, int]) -> Architecture:
        """The trained architecture with the new domains' paths after its own (the merged model NEWRUN trains)."""
        return Architecture(self.base.space, {**self.base.paths, **paths}, {**self.base.num_classes, **num_classes},
                            self.base.routing_ratio)

    def added_params(self, geo: PathGeometry, num_classes: int) -> int:
        """Parameters the merged model gains by adding one domain with this geometry: its batch norms on the trained
        parts it fits, every part it does not fit (counted whole, as a new module), and its classifier. For a path
        that fits this is exactly the growth of `architecture_cost` (a test checks it)."""
        s, h = geo.stem, geo.head
        params = 2 * s.out_ch if self.stem_fits(s.kernel, s.out_ch) else 3 * s.out_ch * s.kernel**2 + 2 * s.out_ch
        for g in geo.layers:
            if g.node in self.nodes and self.node_misfit(g) is None:
                params += 2 * g.exp_ch * (2 if g.has_expand else 1) + 2 * g.out_ch
            else:
                params += layer_params(g)
        if h.in_ch <= self.head_in:
            params += 2 * h.conv_ch
        else:
            params += h.in_ch * h.conv_ch + 2 * h.conv_ch + (h.conv_ch * h.hidden + h.hidden if h.hidden else 0)
        return params + ((h.hidden or h.conv_ch) + 1) * num_classes

    def growth(self, paths: dict[str, Path], num_classes: dict[str, int]) -> int:
        """Parameters the merged model gains with these domains, counted on the combined architecture."""
        return architecture_cost(self.combined(paths, num_classes)).params - architecture_cost(self.base).params


__all__ = ["Frozen", "NodeSize"]
