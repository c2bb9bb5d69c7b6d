import random
from dataclasses import replace

import pytest
import torch
from counting import macs_by_flop_counter, n_params

from mpnas.nn.blocks import PathNet
from mpnas.nn.dynamic import DynamicBatchNorm2d, OpMix
from mpnas.nn.merged import MultiPathModel
from mpnas.nn.supernet import Supernet
from mpnas.space.arch import Architecture
from mpnas.space.cost import architecture_cost, path_cost
from mpnas.space.presets import get_space

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space():
    return get_space("default", resolution=32)


@pytest.fixture(scope="module")
def trained_supernet(space):
    """A supernet after a few SGD steps on random paths, so that weights and running statistics are not at init."""
    torch.manual_seed(0)
    net = Supernet(space, {"a": 7, "b": 3})
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    rng = random.Random(0)
    for step in range(6):
        x = torch.randn(8, 3, 32, 32)
        loss = net(x, space.random_path(rng), "a" if step % 2 else "b").logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


@pytest.mark.parametrize(
    "preset, params, macs",
    [("mobilenet_v3_large", 5_483_032, 216_589_760), ("mobilenet_v3_small", 2_542_856, 56_510_400)],
)
def test_published_models(preset, params, macs):
    space = get_space(preset, resolution=224)
    path = space.reference_path()
    net = PathNet.build(space.geometry(path), 1000).eval()
    assert n_params(net) == params  # torchvision's counts
    cost = path_cost(space, path, 1000)
    assert cost.params == params
    assert cost.macs == macs_by_flop_counter(lambda: net(torch.randn(1, 3, 224, 224))) == macs


def test_extracted_path_equals_supernet(space, trained_supernet):
    net = trained_supernet.eval()
    rng = random.Random(3)
    x = torch.randn(4, 3, 32, 32)
    for _ in range(6):
        path = space.random_path(rng)
        for domain in ("a", "b"):
            standalone = net.extract(path, domain).eval()
            with torch.no_grad():
                assert torch.allclose(net(x, path, domain), standalone(x), atol=1e-5, rtol=0)
            assert n_params(standalone) == path_cost(space, path, standalone.classifier.out_features).params
    net.train()


@pytest.mark.parametrize("which", ["largest", "random"])
def test_training_step_commutes_with_extraction(space, which):
    """A training step of the supernet on a path, then extraction, gives the module that extraction then the same
    step on the standalone gives: gradients, batch-norm statistics and in-place activations agree, whether a
    layer runs at its full width (its weights used unsliced) or a prefix of it."""
    torch.manual_seed(0)
    net = Supernet(space, {"a": 6}, dropout=0.0)
    path = space.largest_path() if which == "largest" else space.random_path(random.Random(5))
    plain = net.extract(path, "a")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 6, (8,))
    for model, fwd in ((net, lambda a: net(a, path, "a")), (plain, plain)):
        model.train()
        torch.nn.functional.cross_entropy(fwd(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(0.5 * p.grad)
    stepped = net.extract(path, "a").state_dict()
    for name, value in plain.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(stepped[name], value, atol=1e-5, rtol=1e-4), name


def test_extraction_is_a_copy(space, trained_supernet):
    path = space.reference_path()
    standalone = trained_supernet.extract(path, "a")
    with torch.no_grad():
        for p in standalone.parameters():
            p.add_(1.0)
    again = trained_supernet.extract(path, "a")
    assert not torch.equal(next(standalone.parameters()), next(again.parameters()))


def test_only_chosen_candidates_run_and_get_gradients(space):
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5})
    path = space.reference_path()  # kernel 5, no SE in every layer
    called = set()
    for name, module in net.named_modules():
        if name.endswith((".k3", ".k7", ".se")) and "dw_bn" not in name:
            module.register_forward_hook(lambda m, i, o, name=name: called.add(name))
    net(torch.randn(2, 3, 32, 32), path).sum().backward()
    assert called == set()
    grads = {name: p.grad for name, p in net.named_parameters()}
    for name, g in grads.items():
        unchosen = (".k3." in name or ".k7." in name or ".se." in name)
        if unchosen:
            assert g is None, name
    assert all(grads[f"layers.b{b}_l0.dw.k5.weight"] is not None for b in range(len(space.blocks)))


def _layer_and_geometry(space, net, se: bool):
    """A skippable (residual) layer of the supernet and its geometry on a path that keeps it."""
    choices = space.choices_of(space.reference_path())
    choices["b3.l1.se"] = se
    geo = next(g for g in space.geometry(space.path_from_choices(choices)).layers if (g.block, g.layer) == (3, 1))
    return net.layers["b3_l1"], geo


def test_op_mix_is_the_average_of_the_options(space, trained_supernet):
    """Op warm-up: in eval mode everything after the mixing point is affine, so the mixed layer equals the mean
    of the layer run with each option (and a mixed skip the mean of the layer and the identity)."""
    net = trained_supernet.eval()
    key = "d_a"
    layer, geo = _layer_and_geometry(space, net, se=False)
    _, geo_se = _layer_and_geometry(space, net, se=True)
    assert geo.residual and geo_se.se_ch > 0
    x = torch.randn(3, geo.in_ch, geo.in_res, geo.in_res)
    with torch.no_grad():
        each_kernel = [layer(x, replace(geo, kernel=k), key) for k in space.blocks[3].layers[1].kernels]
        assert torch.allclose(layer(x, geo, key, OpMix(kernel=True)), torch.stack(each_kernel).mean(0), atol=1e-5)
        with_and_without = (layer(x, geo_se, key) + layer(x, geo, key)) / 2
        assert torch.allclose(layer(x, geo_se, key, OpMix(se=True)), with_and_without, atol=1e-5)
        assert torch.allclose(layer(x, geo, key, OpMix(skip=True)), (x + layer(x, geo, key)) / 2, atol=1e-5)
    net.train()


def test_kernel_mix_trains_every_kernel(space):
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5})
    geo = space.geometry(space.reference_path())
    mix = {(g.block, g.layer): OpMix(kernel=True) for g in geo.layers}
    net.forward_geometry(torch.randn(2, 3, 32, 32), geo, "a", mix).sum().backward()
    for g in geo.layers:
        for k in space.blocks[g.block].layers[g.layer].kernels:
            assert net.layers[f"b{g.block}_l{g.layer}"].dw[f"k{k}"].weight.grad is not None


def test_batch_norm_is_per_domain(space):
    """The supernet normalises each domain as the merged model will: training on one domain leaves the other's
    statistics and affine parameters alone, while the convolutions are shared."""
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5, "b": 3})
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.randn(4, 3, 32, 32) + 3.0, space.reference_path(), "a").sum().backward()
    after = net.state_dict()
    assert not torch.equal(after["stem.bn.d_a.running_mean"], before["stem.bn.d_a.running_mean"])
    assert all(torch.equal(after[k], before[k]) for k in after if ".d_b." in k)
    assert net.stem.bn["d_a"].weight.grad is not None and net.stem.bn["d_b"].weight.grad is None
    assert net.stem.conv.weight.grad is not None  # one stem conv for both domains
    assert Supernet(space, {"a": 5, "b": 3}, bn_per_domain=False).stem.bn.keys() == {"shared"}


def test_narrow_path_leaves_wide_weights_untouched(space):
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5})
    rng = random.Random(0)
    choices = space.choices_of(space.random_path(rng))
    choices["b4.filters"] = 64  # narrowest of (64, 96, 128)
    net(torch.randn(2, 3, 32, 32), space.path_from_choices(choices)).sum().backward()
    grad = net.layers["b4_l0"].project.weight.grad
    assert grad[64:].abs().sum() == 0 and grad[:64].abs().sum() > 0


def test_sliced_batch_norm_updates_its_prefix_in_place():
    bn = DynamicBatchNorm2d(8, momentum=0.5).train()
    bn(torch.randn(16, 3, 4, 4) + 5.0)
    assert (bn.running_mean[:3] > 2.0).all()
    assert torch.equal(bn.running_mean[3:], torch.zeros(5))


def test_cost_model_matches_flop_counter_on_paths(space):
    rng = random.Random(7)
    for _ in range(5):
        path = space.random_path(rng)
        net = PathNet.build(space.geometry(path), 11).eval()
        cost = path_cost(space, path, 11)
        assert cost.params == n_params(net)
        assert cost.macs == macs_by_flop_counter(lambda: net(torch.randn(1, 3, 32, 32)))


def make_arch(space, seed=0, same=False):
    rng = random.Random(seed)
    shared = space.random_path(rng)
    paths = {d: (shared if same else space.random_path(rng)) for d in ("a", "b", "c")}
    # force one node to be shared by a and b with different widths inside it
    ca, cb = space.choices_of(paths["a"]), space.choices_of(paths["b"])
    for key in ("b2.l0.kernel", "b2.l0.se"):
        cb[key] = ca[key]
    ca["b2.filters"], cb["b2.filters"] = 24, 48
    paths["a"], paths["b"] = space.path_from_choices(ca), space.path_from_choices(cb)
    return Architecture(space, paths, {"a": 10, "b": 4, "c": 2})


def params_touched(model, domain):
    model.zero_grad(set_to_none=True)
    model(torch.randn(2, 3, 32, 32), domain).sum().backward()
    ids = {id(p) for p in model.parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return ids


def assert_extraction_after_training(model, arch, batches) -> None:
    """A few SGD steps on (domain, images) batches, then each domain's output in eval mode equals its extracted path."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for d, x in batches:
        loss = model(x, d).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    for d in arch.domains:
        with torch.no_grad():
            assert torch.allclose(model(x, d), model.extract(d).eval()(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bn_per_domain", [True, False])
def test_merged_model_shares_nodes_and_matches_extraction(space, bn_per_domain):
    torch.manual_seed(0)
    arch = make_arch(space)
    model = MultiPathModel(arch, bn_per_domain=bn_per_domain)
    users = arch.node_users()
    assert set(model.nodes.keys()) == {n.replace(".", "_") for n in users}  # unused nodes absent
    assert any(len(u) > 1 for u in users.values())
    touched = {d: params_touched(model, d) for d in arch.domains}
    for node, doms in users.items():
        mod = model.nodes[node.replace(".", "_")]
        # every user's forward pass reaches the very same Parameter objects of the node's convolutions
        for d in doms:
            assert id(mod.project.weight) in touched[d] and id(next(iter(mod.dw.values())).weight) in touched[d]
        for d in set(arch.domains) - set(doms):
            assert id(mod.project.weight) not in touched[d]
        # batch norm: one per user, or one the users share
        bn_ids = {d: {id(p) for p in mod.project_bn.parameters()} & touched[d] for d in doms}
        assert all(len(ids) == 2 for ids in bn_ids.values())
        assert len(set().union(*bn_ids.values())) == (2 * len(doms) if bn_per_domain else 2)
    # batches of growing scale, so running statistics differ per domain
    assert_extraction_after_training(model, arch, [(arch.domains[s % 3], torch.randn(6, 3, 32, 32) * (1 + s)) for s in range(6)])


def test_shared_node_gradient_flows_from_both_users(space):
    arch = make_arch(space)
    model = MultiPathModel(arch)
    node = next(n for n, u in arch.node_users().items() if set(u) >= {"a", "b"} and n.startswith("b2.l0"))
    w = model.nodes[node.replace(".", "_")].project.weight
    model(torch.randn(2, 3, 32, 32), "a").sum().backward()
    ga = w.grad.clone()
    model(torch.randn(2, 3, 32, 32), "b").sum().backward()
    assert ga[24:].abs().sum() == 0  # domain a uses 24 of the node's 48 filters
    assert w.grad[24:].abs().sum() > 0  # domain b reaches the rest of the same tensor


@pytest.mark.parametrize("bn_per_domain", [True, False])
def test_merged_cost_matches_module_and_flop_counter(space, bn_per_domain):
    for seed, same in ((0, False), (1, False), (2, True), (3, False)):
        arch = make_arch(space, seed, same)
        model = MultiPathModel(arch, bn_per_domain=bn_per_domain).eval()
        cost = architecture_cost(arch, bn_per_domain)
        assert cost.params == n_params(model)

        def run_all():
            for d in arch.domains:
                model(torch.randn(1, 3, 32, 32), d)

        assert cost.macs == macs_by_flop_counter(run_all)
        paths_sum = sum(path_cost(space, arch.paths[d], arch.num_classes[d]).params for d in arch.domains)
        assert cost.params < paths_sum  # stem, head and shared nodes are counted once


def test_task_routing_masks_are_fixed_with_the_ratio(space):
    arch = make_arch(space)
    arch.routing_ratio = 0.75
    model = MultiPathModel(arch, routing_seed=5)
    masks = {n: b for n, b in model.named_buffers() if n.startswith("route_")}
    assert masks
    for m in masks.values():
        assert m.sum().item() == round(0.75 * m.numel())
    again = MultiPathModel(arch, routing_seed=5)
    assert all(torch.equal(b, dict(again.named_buffers())[n]) for n, b in masks.items())
    pairs = [(n, n.replace("d_a", "d_c")) for n in masks if "d_a" in n]
    same_width = [(x, y) for x, y in pairs if y in masks and masks[x].shape == masks[y].shape]
    assert any(not torch.equal(masks[x], masks[y]) for x, y in same_width)  # each domain draws its own mask


@pytest.mark.parametrize("bn_per_domain", [True, False])
def test_merged_node_with_an_expanding_and_a_plain_user(bn_per_domain):
    # expansion 1 drops the expand conv: a node shared by such a user and an expanding one keeps the conv and
    # the expanding user's batch norm, whether batch norm is per domain or shared
    space = get_space("paper", resolution=32, width_mult=0.35)
    rng = random.Random(0)
    ca, cb = space.choices_of(space.random_path(rng)), space.choices_of(space.random_path(rng))
    for key in ("b1.filters", "b2.l0.kernel", "b2.l0.se"):
        cb[key] = ca[key]
    ca["b2.l0.expansion"], cb["b2.l0.expansion"] = 1.0, 6.0
    arch = Architecture(space, {"a": space.path_from_choices(ca), "b": space.path_from_choices(cb)}, {"a": 3, "b": 5})
    node = next(n for n, u in arch.node_users().items() if n.startswith("b2.l0") and len(u) == 2)
    torch.manual_seed(0)
    model = MultiPathModel(arch, bn_per_domain=bn_per_domain)
    assert model.nodes[node.replace(".", "_")].expand is not None
    assert architecture_cost(arch, bn_per_domain).params == n_params(model)
    assert_extraction_after_training(model, arch, [("ab"[s % 2], torch.randn(4, 3, 32, 32)) for s in range(4)])
