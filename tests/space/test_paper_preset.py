"""The `paper` preset is TuNAS's `mobilenet_v3_like_search`: its widths and its reference path's size, worked
out by hand here from TuNAS's definition (tunas/mobile_search_space_v3.py), not from the code under test."""

import json
import random

import pytest

from mpnas.errors import MpnasError
from mpnas.nn.blocks import PathNet
from mpnas.space.cost import path_cost
from mpnas.space.latency import LatencyTable, candidate_geometries, head_key, layer_key, stem_key
from mpnas.space.presets import get_space, tunas_widths
from mpnas.space.space import STEM_LAYER, Path, SearchSpace

# base x (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0), each rounded half up to a multiple of 8 (at least 8):
# 16 -> 8, 10 -> 8, 12 -> 16, 16, 20 -> 24, 24, 32
W16 = (8, 16, 24, 32)
# 32 -> 16, 20 -> 24, 24, 32, 40, 48, 64
W32 = (16, 24, 32, 40, 48, 64)
# 64 and up: every product is already a multiple of 8
W64 = (32, 40, 48, 64, 80, 96, 128)
W128 = (64, 80, 96, 128, 160, 192, 256)
W256 = (128, 160, 192, 256, 320, 384, 512)


@pytest.fixture(scope="module")
def space():
    return get_space("paper", resolution=224)


def test_width_lists(space):
    assert tunas_widths(16) == W16 and tunas_widths(32) == W32
    assert space.stem_filters == W16
    assert [b.filters for b in space.blocks] == [W16, W16, W32, W64, W128, W256]
    # block 0 is TuNAS's optional separable conv, which shares the stem's filters: no decision of its own
    assert space.blocks[0].keeps_width and not any(b.keeps_width for b in space.blocks[1:])
    assert "b0.filters" not in {d.key for d in space.decisions()}
    # the head is fixed at TuNAS's base widths (TuNAS also scales them; see the preset's docstring)
    assert (space.head_filters, space.head_hidden) == (512, 1024)


def test_structure_follows_tunas(space):
    assert space.stem_kernels == (3, 5) and space.stem_stride == 2
    assert (space.stem_act, space.head_act, space.se_ratio) == ("hswish", "hswish", 0.25)
    (sep,) = space.blocks[0].layers
    assert (sep.stride, sep.act, sep.kernels, sep.expansions, sep.se, sep.skippable) == (1, "relu", (3, 5, 7), (1.0,), (False,), True)
    body = space.blocks[1:]
    assert [b.layers[0].stride for b in body] == [2, 2, 2, 1, 2]
    assert [b.layers[0].act for b in body] == ["relu", "relu", "hswish", "hswish", "hswish"]
    for b in body:
        assert [la.skippable for la in b.layers] == [False, True, True, True]
        assert all(la.stride == 1 for la in b.layers[1:]) and len({la.act for la in b.layers}) == 1
        for la in b.layers:
            assert (la.kernels, la.expansions, la.se) == ((3, 5, 7), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0), (False, True))


def test_number_of_architectures(space):
    ops = 3 * 6 * 2  # kernel x expansion x SE of a body layer
    body = 1
    for filters in (W16, W32, W64, W128, W256):
        body *= len(filters) * ops * (ops + 1) ** 3  # one fixed layer, three that may also be skipped
    stem = len(W16) * 2 * (3 + 1)  # filters x stem kernel x (separable conv kernel or skipped)
    assert space.num_architectures() == stem * body
    # decisions: stem filters and kernel; block 0's skip and kernel; per body block its filters, 3 per fixed
    # layer and 4 per skippable one
    assert len(space.decisions()) == 2 + 2 + 5 * (1 + 3 + 3 * 4)


def _bneck(i: int, e: int, k: int, o: int) -> int:
    """Parameters of an inverted bottleneck without SE: 1x1 expand + BN (none at e = 1), kxk depthwise + BN,
    1x1 project + BN (2 per BN channel)."""
    x = i * e
    expand = 0 if e == 1 else i * x + 2 * x
    return expand + x * k * k + 2 * x + x * o + 2 * o


def test_reference_path_parameters_by_hand(space):
    path = space.reference_path()
    # the middle option of every decision: stem 16 filters and kernel 3 (first of two); kernel 5, expansion
    # 3, no SE and base widths everywhere; no layer skipped
    assert (path.stem_filters, path.stem_kernel) == (16, 3)
    assert [bc.filters for bc in path.blocks] == [16, 16, 32, 64, 128, 256]
    assert path.blocks[0].layers[0].kernel == 5
    stem = 3 * 16 * 3 * 3 + 2 * 16  # 464
    sep = _bneck(16, 1, 5, 16)  # 16*25 + 32 + 16*16 + 32 = 720
    assert (stem, sep) == (464, 720)
    b1 = 4 * _bneck(16, 3, 5, 16)  # 4 x 2,960
    b2 = _bneck(16, 3, 5, 32) + 3 * _bneck(32, 3, 5, 32)  # 3,760 + 3 x 8,992
    b3 = _bneck(32, 3, 5, 64) + 3 * _bneck(64, 3, 5, 64)  # 12,128 + 3 x 30,272
    b4 = _bneck(64, 3, 5, 128) + 3 * _bneck(128, 3, 5, 128)  # 42,688 + 3 x 109,696
    b5 = _bneck(128, 3, 5, 256) + 3 * _bneck(256, 3, 5, 256)  # 159,104 + 3 x 416,000
    assert (b1, b2, b3, b4, b5) == (11_840, 30_736, 102_944, 371_776, 1_407_104)
    head = 256 * 512 + 2 * 512 + 512 * 1024 + 1024  # 1x1 conv + BN, then the fully connected 1024
    classifier = 1024 * 1000 + 1000
    total = stem + sep + b1 + b2 + b3 + b4 + b5 + head + classifier
    assert total == 3_607_992
    assert path_cost(space, path, 1000).params == total
    assert sum(p.numel() for p in PathNet.build(space.geometry(path), 1000).parameters()) == total


def test_stem_kernel_and_tied_width_round_trip_through_json(space):
    rng = random.Random(0)
    seen = set()
    for _ in range(30):
        path = space.random_path(rng)
        seen.add(path.stem_kernel)
        assert path.blocks[0].filters == path.stem_filters
        data = json.loads(json.dumps(path.to_dict()))
        assert data["stem_kernel"] == path.stem_kernel
        back = Path.from_dict(data, space)
        assert back == path and space.geometry(back).stem.kernel == path.stem_kernel
        assert space.path_from_choices(space.choices_of(path)) == path
    assert seen == {3, 5}
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert space.to_dict()["stem_kernels"] == [3, 5] and "stem_kernel" not in space.to_dict()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("stem_kernel"), "missing field 'stem_kernel'"),
        (lambda d: d.update(stem_kernel=7), r"stem_kernel 7 not in \[3, 5\]"),
        (lambda d: d["blocks"][0].update(filters=24), "filters 24 must equal its input width 16"),
        (lambda d: d["blocks"][1]["layers"].__setitem__(0, "skip"), "block 1 layer 0: cannot be skipped"),
    ],
)
def test_bad_paper_path_is_rejected(space, mutate, message):
    data = space.reference_path().to_dict()
    mutate(data)
    with pytest.raises(MpnasError, match=message):
        Path.from_dict(data, space)


def test_separable_conv_may_be_skipped(space):
    choices = space.choices_of(space.reference_path())
    choices["b0.l0.skip"] = True
    path = space.path_from_choices(choices)
    assert path.blocks[0].layers == (None,)
    assert Path.from_dict(path.to_dict(), space) == path
    assert [g.block for g in space.geometry(path).layers][0] == 1  # the stem feeds block 1 directly


def test_spaces_without_the_new_fields_keep_their_json():
    space = get_space("default")
    data = space.to_dict()
    assert data["stem_kernel"] == 3 and "stem_kernels" not in data
    assert all("keeps_width" not in b for b in data["blocks"])
    path = space.reference_path()
    assert path.stem_kernel is None and "stem_kernel" not in path.to_dict()
    # a path written with the stem kernel spelled out still loads, as the same path
    assert Path.from_dict({**path.to_dict(), "stem_kernel": 3}, space) == path
    with pytest.raises(MpnasError, match="stem_kernel 5 is not the space's 3"):
        Path.from_dict({**path.to_dict(), "stem_kernel": 5}, space)


def test_invalid_width_keeping_blocks_are_rejected():
    data = get_space("paper", resolution=32).to_dict()
    data["blocks"][0]["filters"] = [8, 16]
    with pytest.raises(MpnasError, match="keeps its input width"):
        SearchSpace.from_dict(data)
    data = get_space("paper", resolution=32).to_dict()
    data["blocks"][1]["keeps_width"] = True  # a width-keeping block that changes resolution cannot skip
    data["blocks"][1]["filters"] = data["blocks"][0]["filters"]
    data["blocks"][1]["layers"][0]["skippable"] = True
    with pytest.raises(MpnasError, match="first layer cannot be skippable"):
        SearchSpace.from_dict(data)
    data = get_space("paper", resolution=32).to_dict()
    data["stem_kernel"] = 3
    with pytest.raises(MpnasError, match="exactly one of 'stem_kernel'"):
        SearchSpace.from_dict(data)


def test_stem_kernel_decision_is_a_stem_op_choice(space):
    (d,) = [d for d in space.decisions() if d.key == "stem.kernel"]
    assert (d.options, d.kind, d.layer, d.gated_by) == ((3, 5), "kernel", STEM_LAYER, None)


def test_latency_candidates_cover_paper_paths_and_old_tables_still_read(tmp_path, space):
    stems, layers = set(), set()
    for g in candidate_geometries(space):
        if hasattr(g, "exp_ch"):
            layers.add(layer_key(g))
        elif hasattr(g, "kernel"):
            stems.add(stem_key(g))
    assert len(stems) == len(W16) * 2
    # block 0 keeps its width: its candidates are one per input width, not input x output
    assert sum(1 for k in layers if k.startswith("b0.")) == len(W16) * 3
    rng = random.Random(2)
    for _ in range(30):
        geo = space.geometry(space.random_path(rng))
        assert stem_key(geo.stem) in stems and {layer_key(g) for g in geo.layers} <= layers
    # a table measured when the stem key had no kernel (spaces with one stem kernel) still gives the stem
    default = get_space("default")
    geo = default.geometry(default.reference_path())
    entries = {"stem:out16": 1.5, **{layer_key(g): 1.0 for g in geo.layers}, head_key(geo.head): 0.5}
    table = LatencyTable(entries, "default", 32)
    assert table.geometry_latency(geo) == pytest.approx(1.5 + len(geo.layers) + 0.5)
