"""The merged multi-path model: the union of the domains' paths, a shared node being one module.

Each node (one candidate block of one layer) chosen by any domain becomes one `DynamicBottleneck` sized to
the widest of its users; each user runs its own channel prefix (its own expansion and filter count), so the
convolution weights of a shared node are the same Parameter objects for every domain that passes through it.
Nodes no domain chose are absent. The stem (one conv per stem kernel the domains chose, like a node) and the
head are used by every domain; each domain has its own
classifier and, by default, its own batch norm in every node (see `mpnas.nn.dynamic`); `bn_per_domain=False`
shares batch norm too (sliced statistics, as in the supernet), so that only the classifiers are per domain.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mpnas.nn.blocks import PathNet
from mpnas.nn.dynamic import SHARED, BNWidths, DynamicBatchNorm2d, DynamicBottleneck, DynamicHead, DynamicStem, domain_key, make_stem
from mpnas.space.arch import Architecture
from mpnas.space.geometry import LayerGeometry, PathGeometry
from mpnas.space.widths import Widths, slim_path


def module_name(node: str) -> str:
    """The `nodes` key of a node id (a module name holds no dots)."""
    return node.replace(".", "_")


def _bn_widths(users: list[tuple[str, LayerGeometry]]) -> dict[str, BNWidths]:
    """A node's batch-norm widths per key: the widest of the key's users (several users when batch norm is
    shared), with an expand conv's batch norm when any of them expands."""
    widths: dict[str, BNWidths] = {}
    for key, g in users:
        w = widths.get(key, BNWidths(False, 0, 0))
        widths[key] = BNWidths(w.expands or g.has_expand, max(w.exp_ch, g.exp_ch), max(w.out_ch, g.out_ch))
    return widths


class MultiPathModel(nn.Module):
    def __init__(
        self,
        arch: Architecture,
        dropout: float = 0.2,
        bn_momentum: float = 0.1,
        routing_seed: int = 0,
        bn_per_domain: bool = True,
    ) -> None:
        super().__init__()
        space = arch.space
        self.arch = arch
        self.bn_momentum = bn_momentum
        self.bn_per_domain = bn_per_domain
        self.geometries = {d: space.geometry(p) for d, p in arch.paths.items()}
        geos = self.geometries
        # The geometries a forward pass runs by default: the searched ones, or a slimmed configuration's.
        self.active: dict[str, PathGeometry] = dict(geos)
        keys = {d: domain_key(d) for d in arch.domains}
        self.bn_keys = {d: keys[d] if bn_per_domain else SHARED for d in arch.domains}
        bn = self.bn_keys

        # The stem's conv per kernel some domain chose (like a node), as wide as its widest user; its batch norm
        # per key, as wide as the key's widest user of that kernel.
        stem_widths: dict[int, dict[str, int]] = {}
        for d, geo in geos.items():
            widths = stem_widths.setdefault(geo.stem.kernel, {})
            widths[bn[d]] = max(widths.get(bn[d], 0), geo.stem.out_ch)
        self.stem = make_stem(3, stem_widths, space.stem_act, bn_momentum)
        users: dict[str, dict[str, LayerGeometry]] = {}
        for d, geo in geos.items():
            for g in geo.layers:
                users.setdefault(g.node, {})[d] = g
        nodes = {}
        for node in arch.node_users():
            us = users[node]
            first = next(iter(us.values()))
            nodes[module_name(node)] = DynamicBottleneck(
                max(g.in_ch for g in us.values()),
                max(g.exp_ch for g in us.values()),
                max(g.out_ch for g in us.values()),
                (first.kernel,),
                max(g.se_ch for g in us.values()),
                first.act,
                _bn_widths([(bn[d], g) for d, g in us.items()]),
                bn_momentum,
            )
        self.nodes = nn.ModuleDict(nodes)
        self.head = DynamicHead(
            max(g.head.in_ch for g in geos.values()), space.head_filters, space.head_hidden, space.head_act,
            tuple(dict.fromkeys(bn.values())), dropout, bn_momentum,
        )
        self.classifiers = nn.ModuleDict({keys[d]: nn.Linear(self.head.out_features, n) for d, n in arch.num_classes.items()})

        # Task routing (the TRL baseline): a fixed random channel mask per domain after every block.
        self.routing = arch.routing_ratio is not None
        if self.routing:
            gen = torch.Generator().manual_seed(routing_seed)
            for d, geo in geos.items():
                for g in self._block_ends(geo.layers):
                    keep = max(1, round(arch.routing_ratio * g.out_ch))
                    mask = torch.zeros(g.out_ch)
                    mask[torch.randperm(g.out_ch, generator=gen)[:keep]] = 1.0
                    self.register_buffer(f"route_{keys[d]}_b{g.block}", mask.view(1, -1, 1, 1))

    def residual_norms(self) -> list[DynamicBatchNorm2d]:
        """The batch norms that end a residual branch for every domain that uses them (`mpnas.nn.init`): a node's
        project batch norm per key, when each of the key's users adds the node's output to its input."""
        residual: dict[tuple[str, str], bool] = {}
        for d, geo in self.geometries.items():
            for g in geo.layers:
                at = (module_name(g.node), self.bn_keys[d])
                residual[at] = residual.get(at, True) and g.residual
        return [self.nodes[node].project_bn[key] for (node, key), ok in residual.items() if ok]

    @staticmethod
    def _block_ends(layers: tuple[LayerGeometry, ...]) -> list[LayerGeometry]:
        return [g for i, g in enumerate(layers) if i + 1 == len(layers) or layers[i + 1].block != g.block]

    def slimmed(self, widths: Widths) -> dict[str, PathGeometry]:
        """Each domain's geometry under a width configuration (`mpnas.space.widths`)."""
        if self.routing:
            raise ValueError("a task-routing model cannot be slimmed: its channel masks have the searched widths")
        space = self.arch.space
        return {d: space.geometry(slim_path(space, p, widths.multipliers[d])) for d, p in self.arch.paths.items()}

    def set_widths(self, widths: Widths | None) -> None:
        """Run (and extract) every domain at `widths` from now on; None: the searched widths. Like Once-for-All's
        `set_active_subnet`, this only changes which channel prefixes are used; batch norm's running statistics
        stay those of the full widths until recalibrated (`mpnas.train.slimmable`)."""
        self.active = dict(self.geometries) if widths is None else self.slimmed(widths)

    def forward(self, x: Tensor, domain: str, geometry: PathGeometry | None = None) -> Tensor:
        """`domain`'s logits, at its active widths or at `geometry` (slimmable training)."""
        geo = geometry or self.active[domain]
        key, bn = domain_key(domain), self.bn_keys[domain]
        x = self.stem(x, geo.stem, bn)
        layers = geo.layers
        for i, g in enumerate(layers):
            x = self.nodes[module_name(g.node)](x, g, bn)
            if self.routing and (i + 1 == len(layers) or layers[i + 1].block != g.block):
                x = x * getattr(self, f"route_{key}_b{g.block}")
        return self.classifiers[key](self.head(x, geo.head, bn))

    @torch.no_grad()
    def copy_from_supernet(self, supernet: nn.Module) -> None:
        """Load the weights a search's supernet holds for this model's paths (single-shot use, seed 004).

        Every tensor here is a channel prefix of the supernet's tensor of the same role: a node's of its layer
        (the supernet's layer holds every kernel's depthwise conv, the node only its own), the stem's of the
        chosen kernel's conv, the head's and classifiers' of the same names. Batch norm must be per domain in
        both (the supernet's default), so that each domain gets its own statistics and affine parameters."""
        if self.routing or not self.bn_per_domain:
            raise ValueError("only a per-domain batch-norm model without task routing can start from a supernet")
        source = supernet.state_dict()
        layer_of = {module_name(g.node): f"b{g.block}_l{g.layer}" for geo in self.geometries.values() for g in geo.layers}
        kernels = {geo.stem.kernel for geo in self.geometries.values()}
        stem_options = isinstance(supernet.stem, DynamicStem) and not isinstance(self.stem, DynamicStem)
        for name, tensor in self.state_dict().items():
            part, rest = name.split(".", 1)
            if part == "nodes":
                node, rest = rest.split(".", 1)
                src_name = f"layers.{layer_of[node]}.{rest}"
            elif part == "stem" and stem_options:
                src_name = f"stem.options.k{next(iter(kernels))}.{rest}"
            else:
                src_name = name
            src = source[src_name]
            tensor.copy_(src[tuple(slice(0, n) for n in tensor.shape)])

    def extract(self, domain: str) -> PathNet:
        """A plain network for one domain at its active widths, with copies of its weights: the same outputs in
        eval mode."""
        if self.routing:
            raise ValueError("a task-routing model has no plain single-path form")
        geo = self.active[domain]
        key, bn = domain_key(domain), self.bn_keys[domain]
        m = self.bn_momentum
        clf = self.classifiers[key]
        classifier = nn.Linear(clf.in_features, clf.out_features)
        classifier.load_state_dict(clf.state_dict())
        return PathNet(
            geo,
            self.stem.extract(geo.stem, bn, m),
            nn.Sequential(*(self.nodes[module_name(g.node)].extract(g, bn, m) for g in geo.layers)),
            self.head.extract(geo.head, bn, m),
            classifier,
        )
