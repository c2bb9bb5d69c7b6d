"""The weight-sharing supernetwork: every candidate of a search space, of which a forward pass runs one path.

`forward(x, path)` computes only the chosen candidates at the chosen widths: an unchosen kernel's depthwise
conv and an unchosen SE module are never called, so they get no gradient (their `.grad` stays None). The one
exception is TuNAS's op warm-up at the start of a search (`OpMix`), which runs every option of some choices.

Batch norm uses sliced running statistics (one max-width set per conv, per domain by default). During search the rewards are taken
with batch statistics (training-mode batch norm, as TuNAS does) because running statistics averaged over many
random paths describe none of them; running statistics matter only for an extracted path evaluated in eval
mode, where the sliced statistics make the extracted module and the supernet agree exactly.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from mpnas.nn.blocks import PathNet
from mpnas.nn.dynamic import SHARED, BNWidths, DynamicBatchNorm2d, DynamicBottleneck, DynamicHead, Gates, OpMix, domain_key, gate, make_stem
from mpnas.space.geometry import PathGeometry, make_divisible
from mpnas.space.space import STEM_LAYER, Path, SearchSpace


class Supernet(nn.Module):
    """`bn_per_domain` (the default) gives every domain its own batch norm, as the merged model has, so that a
    path is scored with the normalisation it will be trained with; convolutions are shared by all domains."""

    def __init__(
        self,
        space: SearchSpace,
        num_classes: dict[str, int],
        dropout: float = 0.2,
        bn_momentum: float = 0.1,
        bn_per_domain: bool = True,
    ) -> None:
        super().__init__()
        self.space = space
        self.bn_momentum = bn_momentum
        self.bn_per_domain = bn_per_domain
        keys = [domain_key(d) for d in num_classes] if bn_per_domain else [SHARED]
        max_stem = max(space.stem_filters)
        self.stem = make_stem(3, {k: {key: max_stem for key in keys} for k in space.stem_kernels}, space.stem_act, bn_momentum)
        layers = {}
        in_max = max_stem
        for b, block in enumerate(space.blocks):
            out_max = max(block.filters)
            for l, layer in enumerate(block.layers):
                exp_max = make_divisible(in_max * max(layer.expansions))
                se_max = make_divisible(exp_max * space.se_ratio) if True in layer.se else 0
                layers[f"b{b}_l{l}"] = DynamicBottleneck(
                    in_max, exp_max, out_max, layer.kernels, se_max, layer.act,
                    {k: BNWidths(exp_max != in_max, exp_max, out_max) for k in keys}, bn_momentum,
                )
                in_max = out_max
        self.layers = nn.ModuleDict(layers)
        self.head = DynamicHead(in_max, space.head_filters, space.head_hidden, space.head_act, tuple(keys), dropout, bn_momentum)
        self.classifiers = nn.ModuleDict({domain_key(d): nn.Linear(self.head.out_features, n) for d, n in num_classes.items()})

    def residual_norms(self) -> list[DynamicBatchNorm2d]:
        """The batch norms that end a residual branch on every path (`mpnas.nn.init`): the project batch norms of
        a block's later layers, whose input and output widths are the block's one filter choice. A block's first
        layer is residual only for some widths, so it keeps its init."""
        return [bn for b, block in enumerate(self.space.blocks) for l, layer in enumerate(block.layers)
                if l > 0 and layer.stride == 1 for bn in self.layers[f"b{b}_l{l}"].project_bn.values()]

    def forward(self, x: Tensor, path: Path, domain: str | None = None) -> Tensor:
        return self.forward_geometry(x, self.space.geometry(path), domain)

    def forward_geometry(self, x: Tensor, geo: PathGeometry, domain: str | None = None,
                         mix: Mapping[tuple[int, int], OpMix] | None = None,
                         gates: Mapping[tuple[int, int], Gates] | None = None) -> Tensor:
        """The path `geo` describes; `mix` maps (block, layer) to op choices averaged during search warm-up (the
        stem's kernels under `STEM_LAYER`), `gates` likewise to the gradient search's straight-through gates."""
        key = self._bn_key(domain)
        x = self.stem(x, geo.stem, key, mix.get(STEM_LAYER) if mix else None)
        stem_gates = gates.get(STEM_LAYER) if gates else None
        if stem_gates is not None and stem_gates.scale is not None:
            x = gate(x, stem_gates.scale)
        for g in geo.layers:
            at = (g.block, g.layer)
            x = self.layers[f"b{g.block}_l{g.layer}"](x, g, key, mix.get(at) if mix else None,
                                                       gates.get(at) if gates else None)
        return self._classifier(domain)(self.head(x, geo.head, key))

    def _domain_key(self, domain: str | None) -> str:
        if domain is None:
            if len(self.classifiers) != 1:
                raise ValueError("this supernet has several domains: name one")
            return next(iter(self.classifiers))
        return domain_key(domain)

    def _bn_key(self, domain: str | None) -> str:
        return self._domain_key(domain) if self.bn_per_domain else SHARED

    def _classifier(self, domain: str | None) -> nn.Linear:
        return self.classifiers[self._domain_key(domain)]

    def extract(self, path: Path, domain: str | None = None) -> PathNet:
        """A plain single-path network holding copies of this supernet's weights for `path`."""
        geo = self.space.geometry(path)
        clf = self._classifier(domain)
        classifier = nn.Linear(clf.in_features, clf.out_features)
        classifier.load_state_dict(clf.state_dict())
        m, key = self.bn_momentum, self._bn_key(domain)
        return PathNet(
            geo,
            self.stem.extract(geo.stem, key, m),
            nn.Sequential(*(self.layers[f"b{g.block}_l{g.layer}"].extract(g, key, m) for g in geo.layers)),
            self.head.extract(geo.head, key, m),
            classifier,
        )
