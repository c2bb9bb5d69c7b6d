import itertools
import json
import random

import pytest
import torch

from mpnas.errors import MpnasError
from mpnas.nn.supernet import Supernet
from mpnas.space.arch import Architecture
from mpnas.space.cost import path_cost
from mpnas.space.geometry import make_divisible
from mpnas.space.presets import get_space
from mpnas.space.space import BlockSpace, LayerSpace, Path, SearchSpace


def tiny_space() -> SearchSpace:
    return SearchSpace(
        name="tiny",
        resolution=16,
        stem_filters=(8, 16),
        blocks=(
            BlockSpace((8, 16), (LayerSpace(2, "relu", (3, 5), (1.0, 2.0), (False, True), False),
                                 LayerSpace(1, "relu", (3,), (2.0,), (False,), True))),
        ),
        head_filters=32,
        head_hidden=0,
    )


def test_make_divisible_matches_mobilenet_rule():
    assert make_divisible(18) == 24  # 16 would be more than 10% below 18
    assert make_divisible(184) == 184
    assert make_divisible(24 * 88 / 24) == 88
    assert make_divisible(4) == 8


def test_num_architectures_equals_brute_force_count():
    space = tiny_space()
    decisions = space.decisions()
    paths = set()
    for values in itertools.product(*(d.options for d in decisions)):
        path = space.path_from_choices(dict(zip((d.key for d in decisions), values)))
        paths.add(json.dumps(path.to_dict(), sort_keys=True))
    # choices inside a skipped layer collapse to the same path, so this counts distinct architectures
    assert len(paths) == space.num_architectures() == 2 * 2 * (2 * 2 * 2) * (1 + 1)


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_choices_round_trip(preset):
    space = get_space(preset)
    rng = random.Random(0)
    for _ in range(20):
        path = space.random_path(rng)
        assert space.path_from_choices(space.choices_of(path)) == path
        assert Path.from_dict(json.loads(json.dumps(path.to_dict())), space) == path


def test_skipped_layer_decisions_are_gated():
    space = get_space("default")
    gated = [d for d in space.decisions() if d.gated_by is not None]
    assert gated and all(d.skip_key in {x.key for x in space.decisions()} for d in gated)
    first_layers = [d for d in space.decisions() if ".l0." in d.key]
    assert all(d.gated_by is None for d in first_layers)


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_decisions_come_in_network_order_and_name_their_block(preset):
    """The order a controller draws in, and the one add-domain's constraint walks, is the network's: the stem,
    then each block's filters before its layers; a block's filters decision names its block."""
    decisions = get_space(preset).decisions()
    positions = [d.position for d in decisions]
    assert positions == sorted(positions)
    filters = [d for d in decisions if d.kind == "filters" and not d.key.startswith("stem.")]
    assert filters and all(d.key == f"b{d.block}.filters" and d.position == (d.block, -1) for d in filters)
    assert all(d.block is None for d in decisions if d.kind != "filters")


def test_space_json_round_trip():
    for preset in ["default", "paper", "mobilenet_v3_small"]:
        space = get_space(preset)
        assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space


def test_architecture_round_trip_and_nodes(tmp_path):
    space = get_space("default")
    rng = random.Random(1)
    arch = Architecture(space, {"a": space.random_path(rng), "b": space.random_path(rng)}, {"a": 10, "b": 3})
    arch.save(tmp_path / "architecture.json")
    back = Architecture.load(tmp_path / "architecture.json")
    assert back.paths == arch.paths and back.num_classes == arch.num_classes
    data = json.loads((tmp_path / "architecture.json").read_text())
    for node, users in data["nodes"].items():
        for d in users:
            assert node in data["domains"][d]["nodes"]


def test_jaccard_of_identical_and_disjoint_paths():
    space = get_space("default")
    p = space.reference_path()
    q = space.largest_path()  # kernel 7 + SE everywhere vs the reference's kernel 5 without SE
    arch = Architecture(space, {"a": p, "b": p, "c": q}, {"a": 2, "b": 2, "c": 2})
    j = arch.jaccard()
    assert j["a"]["b"] == 1.0
    assert j["a"]["c"] == 0.0
    assert set(arch.shared_nodes()) == set(arch.nodes_of("a"))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["blocks"][1]["layers"][0].update(kernel=9), "block 1 layer 0: kernel 9 not in [3, 5, 7]"),
        (lambda d: d["blocks"][1]["layers"].__setitem__(0, "skip"), "block 1 layer 0: cannot be skipped"),
        (lambda d: d["blocks"].pop(), "4 blocks, the space has 5"),
        (lambda d: d["blocks"][2].update(filters=33), "block 2: filters 33 not in [24, 40, 48]"),
        (lambda d: d["blocks"][2]["layers"][1].pop("se"), "missing field 'se'"),
        (lambda d: d["blocks"][3]["layers"][0].update(expansion="big"), "'expansion' must be a number"),
        (lambda d: d["blocks"][3]["layers"][0].update(expansion=5), "expansion 5 not in [2.0, 4.0, 6.0]"),
        (lambda d: d.update(stem_filters=7), "stem_filters 7 not in [16]"),
    ],
)
def test_bad_path_is_rejected_with_its_location(mutate, message):
    space = get_space("default")
    data = space.reference_path().to_dict()
    mutate(data)
    with pytest.raises(MpnasError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Path.from_dict(data, space, "arch")


def test_bad_architecture_file_errors(tmp_path):
    f = tmp_path / "architecture.json"
    f.write_text("{not json")
    with pytest.raises(MpnasError, match="broken JSON"):
        Architecture.load(f)
    f.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(MpnasError, match="format"):
        Architecture.load(f)
    with pytest.raises(MpnasError, match="not found"):
        Architecture.load(tmp_path / "missing.json")
    space = get_space("default")
    with pytest.raises(MpnasError, match="domain name"):
        Architecture(space, {"a.b": space.reference_path()}, {"a.b": 2})


def test_invalid_space_is_rejected():
    data = get_space("default").to_dict()
    data["blocks"][1]["layers"][0]["skippable"] = True
    with pytest.raises(MpnasError, match="first layer cannot be skippable"):
        SearchSpace.from_dict(data)
    with pytest.raises(MpnasError, match="unknown"):
        get_space("resnet")


def test_width_mult_and_depth_options():
    space = get_space("default", width_mult=0.5, layers_per_block=2)
    assert all(f % 8 == 0 for b in space.blocks for f in b.filters)
    assert [len(b.layers) for b in space.blocks] == [1, 2, 2, 2, 2]
    assert max(space.blocks[-1].filters) == 64


def test_the_4x4_default_variant_ends_at_4x4_at_the_reference_cost():
    """Issue 27's candidate space for 32 px: one downsample fewer, so the last blocks' kernels see a 4x4 map, at
    the default space's reference cost (within 2%)."""
    plain, four = get_space("default", resolution=32), get_space("default-4x4", resolution=32)
    last = lambda s: s.geometry(s.reference_path()).layers[-1].out_res  # noqa: E731
    assert (last(plain), last(four)) == (2, 4)
    assert [g.out_res for g in four.geometry(four.reference_path()).layers if g.block == 3] == [4, 4, 4]
    ref = lambda s: path_cost(s, s.reference_path(), 10).macs  # noqa: E731
    assert abs(ref(four) / ref(plain) - 1) < 0.02
    net = Supernet(four, {"a": 10})
    geo = four.geometry(four.largest_path())
    assert net.forward_geometry(torch.randn(2, 3, 32, 32), geo, "a").shape == (2, 10)
