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

import math
from dataclasses import dataclass
from typing import Any

from mpnas.space.arch import Architecture
from mpnas.space.cost import architecture_cost, layer_params
from mpnas.space.geometry import LayerGeometry, PathGeometry, conv_out
from mpnas.space.space import LayerChoice, Path


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
        params += sum(self.layer_added(g) for g in geo.layers)
        if h.in_ch <= self.head_in:
            params += 2 * h.conv_ch
        else:
            params += h.in_ch * h.conv_ch + 2 * h.conv_ch + (h.conv_ch * h.hidden + h.hidden if h.hidden else 0)
        return params + ((h.hidden or h.conv_ch) + 1) * num_classes

    def layer_added(self, g: LayerGeometry) -> int:
        """What one layer adds: its batch norms on a trained node it fits, else the whole layer."""
        if g.node in self.nodes and self.node_misfit(g) is None:
            return 2 * g.exp_ch * (2 if g.has_expand else 1) + 2 * g.out_ch
        return layer_params(g)

    def growth(self, paths: dict[str, Path], num_classes: dict[str, int]) -> int:
        """Parameters the merged model gains with these domains, counted on the combined architecture."""
        return architecture_cost(self.combined(paths, num_classes)).params - architecture_cost(self.base).params


class Admissible:
    """Which options of each decision still lead to an admitted path of one new domain: a path that fits the
    trained modules (`Frozen.fits`) and adds at most `budget` parameters (`Frozen.added_params`).

    A controller that samples its decisions in order through this mask (`mpnas.search.controller.Controller`'s
    `constraint`) draws only admitted paths, and knows the probability of each. Rejection sampling cannot replace
    it: of uniform draws around a five-domain model only 0.5 to 3% are admitted (RESULTS.md, issue 28), so a
    controller that redraws mostly exhausts its tries and learns from nothing.

    The mask is exact. After the decisions before `index` are fixed, an option is allowed when the least
    parameters any completion can add is within the budget; that least value is a dynamic programme over the
    layers whose state is the width reaching a layer (a layer's fit and added parameters depend only on its own
    choice and that width). The trained domains' paths fit by construction, so from the start some completion
    always fits; when even the least-adding fitting paths exceed the budget, the options leading to them are
    allowed, and the draw is a path that adds as little as a fitting path can.
    """

    def __init__(self, frozen: Frozen, num_classes: int, budget: float) -> None:
        self.frozen = frozen
        self.space = space = frozen.base.space
        self.budget = budget
        self.decisions = space.decisions()
        head_cls = ((space.head_hidden or space.head_filters) + 1) * num_classes
        self._head = 2 * space.head_filters + head_cls
        self._res: list[list[int]] = []  # each layer's input resolution (skippable layers have stride 1)
        res = conv_out(space.resolution, space.stem_stride)
        for block in space.blocks:
            self._res.append([])
            for layer in block.layers:
                self._res[-1].append(res)
                res = conv_out(res, layer.stride)
        # (block, layer) -> index of the first decision of that layer or after it: a block's filters come before
        # its layers, the stem's decisions before everything
        where = [d.position for d in self.decisions]
        self._first = {(b, l): next((i for i, w in enumerate(where) if w >= (b, l)), len(where))
                       for b, block in enumerate(space.blocks) for l in range(len(block.layers))}
        self._memo: dict[tuple[int, int, int, int], float] = {}

    # -- the least any completion adds --------------------------------------------------------------------
    def least_added(self, fixed: dict[str, Any]) -> float:
        """The least parameters a fitting path consistent with `fixed` (values of a prefix of the decisions, in
        order) adds; infinity when none fits."""
        sp = self.space
        best = math.inf
        for f in sp.stem_filters:
            if not _agrees(fixed, "stem.filters", f):
                continue
            for k in sp.stem_kernels:
                if not _agrees(fixed, "stem.kernel", k) or not self.frozen.stem_fits(k, f):
                    continue
                best = min(best, 2 * f + self._block(0, f, fixed))
        return best

    def _block(self, b: int, in_ch: int, fixed: dict[str, Any]) -> float:
        sp = self.space
        if b == len(sp.blocks):
            return self._head if in_ch <= self.frozen.head_in else math.inf
        block = sp.blocks[b]
        widths = [in_ch] if block.keeps_width else [f for f in block.filters if _agrees(fixed, f"b{b}.filters", f)]
        return min((self._layers(b, 0, in_ch, w, fixed) for w in widths), default=math.inf)

    def _free(self, b: int, l: int, fixed: dict[str, Any]) -> bool:
        """Whether no decision of layer (b, l) or after it is fixed (decisions are fixed as a prefix)."""
        return self._first[(b, l)] >= len(fixed)

    def _layers(self, b: int, l: int, in_ch: int, out_ch: int, fixed: dict[str, Any]) -> float:
        """The least layers (b, l) to the end add, given the width reaching (b, l) and block b's width."""
        if l == len(self.space.blocks[b].layers):
            return self._block(b + 1, in_ch, fixed)
        free = self._free(b, l, fixed)
        key = (b, l, in_ch, out_ch)
        if free and key in self._memo:
            return self._memo[key]
        best = math.inf
        for lc in self._options(b, l, _NOTHING if free else fixed):
            if lc is None:
                added, nxt = 0, in_ch
            else:
                g = self.space.layer_geometry(b, l, lc, in_ch, out_ch, self._res[b][l])
                if g.node in self.frozen.nodes and self.frozen.node_misfit(g) is not None:
                    continue
                added, nxt = self.frozen.layer_added(g), out_ch
            best = min(best, added + self._layers(b, l + 1, nxt, out_ch, _NOTHING if free else fixed))
        if free:
            self._memo[key] = best
        return best

    def _options(self, b: int, l: int, fixed: dict[str, Any]) -> list[LayerChoice | None]:
        layer = self.space.blocks[b].layers[l]
        key = f"b{b}.l{l}"
        out: list[LayerChoice | None] = []
        if layer.skippable and _agrees(fixed, f"{key}.skip", True):
            out.append(None)
        if layer.skippable and fixed.get(f"{key}.skip") is True:
            return out
        for k in layer.kernels:
            for e in layer.expansions:
                for se in layer.se:
                    if (_agrees(fixed, f"{key}.kernel", k) and _agrees(fixed, f"{key}.expansion", e)
                            and _agrees(fixed, f"{key}.se", se)):
                        out.append(LayerChoice(k, e, se))
        return out

    # -- the mask -----------------------------------------------------------------------------------------
    def allowed(self, index: int, prefix: dict[str, Any]) -> list[bool]:
        """Which options of decision `index` keep an admitted completion, given the values of the decisions before
        it in `prefix` (a decision of a layer the prefix skips has no effect: all its options are allowed)."""
        d = self.decisions[index]
        fixed = {e.key: prefix[e.key] for e in self.decisions[:index]}
        if d.skip_key is not None and fixed.get(d.skip_key) is True:
            return [True] * len(d.options)
        least = [self.least_added({**fixed, d.key: o}) for o in d.options]
        ok = [v <= self.budget for v in least]
        if any(ok):
            return ok
        floor = min(least)
        if floor == math.inf:  # the prefix already fits nothing (a draw never gets here): leave it unmasked
            return [True] * len(d.options)
        return [v == floor for v in least]


_NOTHING: dict[str, Any] = {}


def _agrees(fixed: dict[str, Any], key: str, value: Any) -> bool:
    return key not in fixed or fixed[key] == value


__all__ = ["Admissible", "Frozen", "NodeSize"]
