"""The searchable stem kernel and the width-keeping block 0 of the `paper` space, through the supernet, the
merged model and the cost model. A narrow, shallow, 32 px version of the space keeps these fast on a CPU."""

import random
from dataclasses import replace

import pytest
import torch
from counting import macs_by_flop_counter, n_params

from mpnas.nn.blocks import PathNet
from mpnas.nn.dynamic import DynamicConvBN, DynamicStem, OpMix
from mpnas.nn.merged import MultiPathModel
from mpnas.nn.supernet import Supernet
from mpnas.search.loop import warm_up
from mpnas.space.arch import Architecture
from mpnas.space.cost import architecture_cost, path_cost
from mpnas.space.presets import get_space
from mpnas.space.space import STEM_LAYER

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space():
    s = get_space("paper", resolution=32, width_mult=0.5, layers_per_block=2)
    assert s.stem_kernels == (3, 5) and len(s.stem_filters) > 1 and s.blocks[0].keeps_width
    return s


def path_with(space, seed: int, stem_kernel: int, skip_sep: bool = False):
    rng = random.Random(seed)
    choices = {d.key: rng.choice(d.options) for d in space.decisions()}
    choices["stem.kernel"], choices["b0.l0.skip"] = stem_kernel, skip_sep
    return space.path_from_choices(choices)


@pytest.fixture(scope="module")
def trained_supernet(space):
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5, "b": 3})
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for step in range(6):
        path = path_with(space, step, (3, 5)[step % 2], skip_sep=step == 4)
        loss = net(torch.randn(4, 3, 32, 32), path, "ab"[step % 2]).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_supernet_has_one_stem_conv_per_kernel(space, trained_supernet):
    stem = trained_supernet.stem
    assert isinstance(stem, DynamicStem) and set(stem.options) == {"k3", "k5"}
    assert stem.options["k5"].conv.weight.shape == (max(space.stem_filters), 3, 5, 5)
    net = Supernet(space, {"a": 5})
    net(torch.randn(2, 3, 32, 32), path_with(space, 0, 5)).sum().backward()
    assert net.stem.options["k3"].conv.weight.grad is None  # an unchosen kernel's conv does not run
    assert net.stem.options["k5"].conv.weight.grad.abs().sum() > 0


def test_extracted_path_equals_supernet(space, trained_supernet):
    x = torch.randn(3, 3, 32, 32)
    for seed, k, skip in ((1, 3, False), (2, 5, False), (3, 5, True), (4, 3, True)):
        path = path_with(space, seed, k, skip)
        for domain in ("a", "b"):
            standalone = trained_supernet.extract(path, domain).eval()
            assert standalone.stem[0].kernel_size == (k, k)
            assert len(standalone.layers) == len(space.geometry(path).layers)
            with torch.no_grad():
                assert torch.allclose(trained_supernet(x, path, domain), standalone(x), atol=1e-5, rtol=0)
            assert n_params(standalone) == path_cost(space, path, standalone.classifier.out_features).params


def test_stem_kernel_warm_up_averages_the_kernels(space, trained_supernet):
    choices = space.choices_of(path_with(space, 5, 3))
    choices.update({d.key: d.options[0] for d in space.decisions() if d.key not in choices})
    # p = 1: every decision warms up; the loop's warm-up addresses the stem kernel as STEM_LAYER
    out, mix = warm_up(space.decisions(), choices, 1.0, random.Random(0))
    assert mix[STEM_LAYER] == OpMix(kernel=True)
    geo = space.geometry(space.path_from_choices(out))
    x = torch.randn(2, 3, 32, 32)
    stem = trained_supernet.stem
    with torch.no_grad():
        mixed = stem(x, geo.stem, "d_a", mix[STEM_LAYER])
        each = [stem(x, replace(geo.stem, kernel=k), "d_a") for k in (3, 5)]
    assert torch.allclose(mixed, (each[0] + each[1]) / 2, atol=1e-6)
    net = Supernet(space, {"a": 5})
    net.forward_geometry(x, geo, "a", mix).sum().backward()
    assert all(net.stem.options[k].conv.weight.grad is not None for k in ("k3", "k5"))


def test_cost_model_matches_flop_counter_on_paper_paths(space):
    for seed, k in ((0, 3), (1, 5)):
        path = path_with(space, seed, k, skip_sep=seed == 1)
        net = PathNet.build(space.geometry(path), 9).eval()
        cost = path_cost(space, path, 9)
        assert cost.params == n_params(net)
        assert cost.macs == macs_by_flop_counter(lambda: net(torch.randn(1, 3, 32, 32)))


@pytest.mark.parametrize("bn_per_domain", [True, False])
def test_merged_model_with_different_stem_kernels(space, bn_per_domain):
    torch.manual_seed(0)
    paths = {"a": path_with(space, 0, 3), "b": path_with(space, 1, 5, skip_sep=True), "c": path_with(space, 2, 5)}
    arch = Architecture(space, paths, {"a": 4, "b": 3, "c": 2})
    model = MultiPathModel(arch, bn_per_domain=bn_per_domain)
    assert isinstance(model.stem, DynamicStem) and set(model.stem.options) == {"k3", "k5"}
    assert n_params(model) == architecture_cost(arch, bn_per_domain).params

    def run_all():
        for d in arch.domains:
            model(torch.randn(1, 3, 32, 32), d)

    model.eval()  # batch 1 reaches 1x1 feature maps at 32 px, which training-mode batch norm refuses
    assert architecture_cost(arch, bn_per_domain).macs == macs_by_flop_counter(run_all)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for s in range(3):
        d = arch.domains[s]
        loss = model(torch.randn(4, 3, 32, 32) * (1 + s), d).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    for d in arch.domains:
        with torch.no_grad():
            assert torch.allclose(model(x, d), model.extract(d).eval()(x), atol=1e-5, rtol=0)


def test_merged_model_with_one_stem_kernel_keeps_the_plain_stem(space):
    arch = Architecture(space, {"a": path_with(space, 0, 5), "b": path_with(space, 1, 5)}, {"a": 2, "b": 2})
    model = MultiPathModel(arch)
    assert isinstance(model.stem, DynamicConvBN) and model.stem.conv.kernel == 5
    assert "stem.conv.weight" in model.state_dict()
    assert n_params(model) == architecture_cost(arch).params
