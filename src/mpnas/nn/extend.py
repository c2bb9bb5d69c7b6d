"""Modules for adding domains to a trained merged model: the search's supernet, and freezing what was trained.

`ExtensionSupernet` is the supernet a new domain's controller searches in: every layer offers the trained model's
nodes as they are (frozen copies, with a new batch norm per new domain on their convolutions) beside a fresh,
trainable supernet layer for every other choice. A sampled path runs a trained node whenever it picks one and fits
inside it (`mpnas.space.extension.Frozen`), else the fresh layer; the stem and the head conv are the trained ones
whenever the path fits them. So the reward of a path that reuses trained nodes is measured on the weights it will
actually have, and only the new parts learn.

`load_frozen` does the same for training: the merged model of old and new domains takes the trained model's
tensors, and those parameters stop taking gradients.
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import Tensor, nn

from mpnas.nn.dynamic import DynamicBatchNorm2d, DynamicBottleneck, DynamicConvBN, DynamicStem, Gates, OpMix, domain_key
from mpnas.nn.init import initialise
from mpnas.nn.merged import MultiPathModel, module_name
from mpnas.nn.supernet import Supernet
from mpnas.space.extension import Frozen
from mpnas.space.geometry import PathGeometry
from mpnas.space.space import STEM_LAYER, SearchSpace


def _add_node_bn(node: DynamicBottleneck, key: str, momentum: float) -> None:
    exp_ch, out_ch = node.project.weight.shape[1], node.project.weight.shape[0]
    if node.expand is not None:
        node.expand_bn[key] = DynamicBatchNorm2d(exp_ch, momentum)
    for kernel in node.dw:
        per_key = node.dw_bn[kernel]  # a ModuleDict per kernel
        assert isinstance(per_key, nn.ModuleDict)
        per_key[key] = DynamicBatchNorm2d(exp_ch, momentum)
    node.project_bn[key] = DynamicBatchNorm2d(out_ch, momentum)


def _add_stem_bn(stem: DynamicConvBN | DynamicStem, key: str, momentum: float) -> None:
    convs = list(stem.options.values()) if isinstance(stem, DynamicStem) else [stem]
    for conv in convs:
        assert isinstance(conv, DynamicConvBN)
        conv.bn[key] = DynamicBatchNorm2d(conv.conv.weight.shape[0], momentum)


class ExtensionSupernet(Supernet):
    """A supernet for `num_classes`' new domains around the trained `base` (see the module docstring).

    Built initialised (`init`, `zero_residual` as `mpnas.nn.init.initialise`), with the trained modules copied in
    afterwards; their tensors do not take gradients, the new domains' batch norms on them do."""

    def __init__(self, space: SearchSpace, num_classes: dict[str, int], base: MultiPathModel, frozen: Frozen,
                 init: str, zero_residual: bool, dropout: float = 0.0, bn_momentum: float = 0.1) -> None:
        super().__init__(space, num_classes, dropout=dropout, bn_momentum=bn_momentum)
        initialise(self, init, zero_residual)
        self.frozen = frozen
        self.base_stem = copy.deepcopy(base.stem)
        self.base_nodes = copy.deepcopy(base.nodes)
        self.base_head = copy.deepcopy(base.head)
        self.base_head.dropout.p = dropout
        for p in [*self.base_stem.parameters(), *self.base_nodes.parameters(), *self.base_head.parameters()]:
            p.requires_grad_(False)
        for d in num_classes:
            key = domain_key(d)
            _add_stem_bn(self.base_stem, key, bn_momentum)
            for node in self.base_nodes.values():
                assert isinstance(node, DynamicBottleneck)
                _add_node_bn(node, key, bn_momentum)
            self.base_head.bn[key] = DynamicBatchNorm2d(self.base_head.conv.weight.shape[0], bn_momentum)

    def forward_geometry(self, x: Tensor, geo: PathGeometry, domain: str | None = None,
                         mix: Mapping[tuple[int, int], OpMix] | None = None,
                         gates: Mapping[tuple[int, int], Gates] | None = None) -> Tensor:
        """As `Supernet.forward_geometry`, with every part the path can take from the trained model taken from it
        (without op mixing: a trained node is one op). Gates (the gradient strategy) are not supported."""
        if gates:
            raise ValueError("adding a domain searches with REINFORCE (search.strategy=rl) only")
        key = self._bn_key(domain)
        mix = mix or {}
        if self.frozen.stem_fits(geo.stem.kernel, geo.stem.out_ch):
            x = self.base_stem(x, geo.stem, key)
        else:
            x = self.stem(x, geo.stem, key, mix.get(STEM_LAYER))
        for g in geo.layers:
            if g.node in self.frozen.nodes and self.frozen.node_misfit(g) is None:
                x = self.base_nodes[module_name(g.node)](x, g, key)
            else:
                x = self.layers[f"b{g.block}_l{g.layer}"](x, g, key, mix.get((g.block, g.layer)))
        head = self.base_head if geo.head.in_ch <= self.frozen.head_in else self.head
        return self._classifier(domain)(head(x, geo.head, key))


def load_frozen(model: nn.Module, trained: Mapping[str, Tensor]) -> list[str]:
    """Copy a trained model's tensors into `model` by name and stop the copied parameters' gradients.

    Every trained tensor must exist in `model` with its shape (a new domain that fits, `Frozen.fits`, changes no
    module's size); returns the names of `model`'s tensors that were not copied (the new ones)."""
    own = model.state_dict()
    for name, tensor in trained.items():
        if name not in own or own[name].shape != tensor.shape:
            have = tuple(own[name].shape) if name in own else "absent"
            raise ValueError(f"trained tensor {name} {tuple(tensor.shape)} does not fit the new model ({have})")
    with torch.no_grad():
        for name, tensor in trained.items():
            own[name].copy_(tensor)
    for name, p in model.named_parameters():
        if name in trained:
            p.requires_grad_(False)
    return [n for n in own if n not in trained]


__all__ = ["ExtensionSupernet", "load_frozen"]
