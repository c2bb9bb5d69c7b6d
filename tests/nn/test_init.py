"""Initialisation options (`mpnas.nn.init`): the defaults leave construction untouched, zero-init turns every
residual block into the identity, torchvision's scheme draws the linear layers small."""

from __future__ import annotations

import random

import pytest
import torch

from mpnas.nn.init import initialise
from mpnas.nn.merged import MultiPathModel
from mpnas.nn.supernet import Supernet
from mpnas.space.arch import Architecture
from mpnas.space.presets import get_space

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space():
    return get_space("default", resolution=16)


def _arch(space, seed=0):
    rng = random.Random(seed)
    return Architecture(space, {"a": space.random_path(rng), "b": space.reference_path()}, {"a": 5, "b": 3})


def test_default_init_is_construction_unchanged(space):
    torch.manual_seed(0)
    plain = MultiPathModel(_arch(space))
    torch.manual_seed(0)
    model = MultiPathModel(_arch(space))
    initialise(model, "pytorch", zero_residual=False)
    for (name, a), b in zip(plain.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_zero_init_makes_every_residual_block_the_identity(space):
    torch.manual_seed(0)
    model = MultiPathModel(_arch(space))
    initialise(model, "pytorch", zero_residual=True)
    zeroed = model.residual_norms()
    residual_layers = [g for geo in model.geometries.values() for g in geo.layers if g.residual]
    assert residual_layers and zeroed
    assert all(bool((bn.weight == 0).all()) for bn in zeroed)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    for d, geo in model.geometries.items():
        key = model.bn_keys[d]
        h = model.stem(x, geo.stem, key)
        for g in geo.layers:
            out = model.nodes[g.node.replace(".", "_")](h, g, key)
            if g.residual:
                assert torch.equal(out, h), g.node  # zero scale and zero shift: the branch adds exactly 0
            h = out
    # A non-residual node keeps its scale of 1.
    plain = [m.project_bn for m in model.nodes.values()]
    assert any(bool((bn.weight == 1).all()) for bns in plain for bn in bns.values())


def test_zero_init_in_the_supernet_only_where_every_path_is_residual(space):
    torch.manual_seed(0)
    net = Supernet(space, {"a": 4})
    initialise(net, "pytorch", zero_residual=True)
    for b, block in enumerate(space.blocks):
        for l, layer in enumerate(block.layers):
            for bn in net.layers[f"b{b}_l{l}"].project_bn.values():
                expect = 0.0 if (l > 0 and layer.stride == 1) else 1.0
                assert bool((bn.weight == expect).all()), (b, l)


def test_torchvision_init_draws_linear_layers_small(space):
    torch.manual_seed(0)
    model = MultiPathModel(_arch(space))
    initialise(model, "torchvision", zero_residual=False)
    for clf in model.classifiers.values():
        assert clf.bias.abs().max() == 0
        assert 0.005 < clf.weight.std().item() < 0.015
    with pytest.raises(ValueError, match="unknown init"):
        initialise(model, "xavier", zero_residual=False)
