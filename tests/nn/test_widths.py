"""Width configurations of a slimmable merged model: exact costs, slimmed forward = extracted plain module, the
parser's errors."""

import random

import pytest
import torch
from counting import macs_by_flop_counter, n_params

from mpnas.errors import MpnasError
from mpnas.nn.merged import MultiPathModel
from mpnas.space.arch import Architecture
from mpnas.space.cost import architecture_cost, domain_costs
from mpnas.space.presets import get_space
from mpnas.space.widths import Widths, read_config_widths, slim_architecture, slim_width, width_units, widths_cost

torch.set_num_threads(1)
OPTIONS = (0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def arch():
    """Three domains over the default space, two of them sharing a node at different searched widths."""
    space = get_space("default", resolution=32)
    rng = random.Random(3)
    paths = {d: space.random_path(rng) for d in ("a", "b", "c")}
    ca, cb = space.choices_of(paths["a"]), space.choices_of(paths["b"])
    for key in ("b2.l0.kernel", "b2.l0.se", "b2.l0.expansion"):
        cb[key] = ca[key]
    ca["b2.filters"], cb["b2.filters"] = 24, 48
    paths["a"], paths["b"] = space.path_from_choices(ca), space.path_from_choices(cb)
    return Architecture(space, paths, {"a": 10, "b": 4, "c": 2})


def configs(arch):
    rng = random.Random(0)
    return [Widths.uniform(arch, 0.5), Widths.uniform(arch, 0.75)] + [Widths.sample(arch, OPTIONS, rng) for _ in range(3)]


@pytest.mark.parametrize("bn_per_domain", [True, False])
def test_configuration_cost_equals_the_built_module_and_the_flop_counter(arch, bn_per_domain):
    for widths in configs(arch):
        slim = slim_architecture(arch, widths)
        total, per_domain = widths_cost(arch, widths, bn_per_domain)
        built = MultiPathModel(slim, bn_per_domain=bn_per_domain).eval()
        assert total.params == architecture_cost(slim, bn_per_domain).params == n_params(built)

        def every_domain(model):
            return lambda: [model(torch.randn(1, 3, 32, 32), d) for d in arch.domains]

        assert total.macs == macs_by_flop_counter(every_domain(built))
        # the trained full-width model run at the same widths costs the same multiply-adds
        big = MultiPathModel(arch, bn_per_domain=bn_per_domain).eval()
        big.set_widths(widths)
        assert total.macs == macs_by_flop_counter(every_domain(big))
        for d in arch.domains:
            net = big.extract(d)
            assert n_params(net) == per_domain[d].params == domain_costs(slim)[d].params
            assert macs_by_flop_counter(lambda: net(torch.randn(1, 3, 32, 32))) == per_domain[d].macs
        assert total.macs < architecture_cost(arch, bn_per_domain).macs


def test_slimmed_forward_equals_the_extracted_plain_module(arch):
    torch.manual_seed(0)
    model = MultiPathModel(arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for s in range(6):  # training moves weights and running statistics off their initial values
        d = arch.domains[s % 3]
        loss = model(torch.randn(6, 3, 32, 32) * (1 + s), d).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    for widths in configs(arch):
        model.set_widths(widths)
        slim = slim_architecture(arch, widths)
        for d in arch.domains:
            net = model.extract(d).eval()
            assert net.geometry == slim.space.geometry(slim.paths[d])
            with torch.no_grad():
                assert torch.allclose(model(x, d), net(x), atol=1e-5, rtol=0)
    model.set_widths(None)
    assert model.active == model.geometries


def test_slim_widths_round_to_fours_and_keep_expansion_one_without_an_expand_conv():
    assert [slim_width(16, m) for m in OPTIONS] == [8, 12, 16]
    assert slim_width(24, 0.75) == 20 and slim_width(8, 0.5) == 4
    space = get_space("default", resolution=32)
    path = space.reference_path()  # block 0 has expansion 1: no expand conv at any input width
    arch = Architecture(space, {"a": path}, {"a": 3})
    geo = MultiPathModel(arch).slimmed(Widths({"a": {u: 0.75 for u in width_units(space)}}))["a"]
    first = geo.layers[0]
    assert first.in_ch == 12 and first.exp_ch == 12 and not first.has_expand


def test_a_width_file_is_checked_by_name(arch, tmp_path):
    units = width_units(arch.space)
    good = {d: {u: 1.0 for u in units} for d in arch.domains}
    f = tmp_path / "c.json"
    f.write_text('{"widths": ' + str(good).replace("'", '"') + "}")
    assert read_config_widths(f, arch, OPTIONS).is_full()
    cases = [
        ({**good, "zebra": good["a"]}, "unknown domain(s) zebra"),
        ({d: w for d, w in good.items() if d != "b"}, "no widths for domain(s) b"),
        ({**good, "a": {**good["a"], "b1": 0.6}}, "domain 'a' unit 'b1': multiplier 0.6 was not trained"),
        ({**good, "c": {"stem": 1.0}}, "domain 'c': needs exactly the units"),
    ]
    for data, message in cases:
        with pytest.raises(MpnasError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Widths.from_dict(data, arch, OPTIONS, "c.json")
    f.write_text("{broken")
    with pytest.raises(MpnasError, match="c.json"):
        read_config_widths(f, arch, OPTIONS)
