import json
import random

import pytest

from mpnas.cli import main
from mpnas.errors import MpnasError
from mpnas.nn.measure import measure_table
from mpnas.space.geometry import ConvGeometry, HeadGeometry, LayerGeometry
from mpnas.space.latency import LatencyTable, candidate_geometries, head_key, layer_key, stem_key
from mpnas.space.presets import get_space
from mpnas.space.space import BlockSpace, LayerSpace, SearchSpace


def small_space():
    return SearchSpace(
        name="small",
        resolution=16,
        stem_filters=(8, 16),
        blocks=(
            BlockSpace((8, 16), (LayerSpace(2, "relu", (3, 5), (1.0, 2.0), (False, True), False),
                                 LayerSpace(1, "hswish", (3,), (2.0,), (False,), True))),
        ),
        head_filters=16,
        head_hidden=0,
    )


def test_candidates_cover_every_path():
    space = get_space("default")
    keys = set()
    for g in candidate_geometries(space):
        keys.add(layer_key(g) if hasattr(g, "exp_ch") else (stem_key(g) if hasattr(g, "kernel") else head_key(g)))
    rng = random.Random(0)
    for _ in range(50):
        geo = space.geometry(space.random_path(rng))
        assert {layer_key(g) for g in geo.layers} <= keys
        assert stem_key(geo.stem) in keys and head_key(geo.head) in keys


@pytest.mark.parametrize("space", [get_space("default"), get_space("paper", resolution=32), get_space("mobilenet_v3_small"),
                                   get_space("default", width_mult=0.75), small_space()],
                         ids=["default", "paper", "mobilenet_v3_small", "default-x0.75", "small"])
def test_every_layer_of_a_path_has_a_table_key(space):
    """The table times the shapes `SearchSpace.geometry` gives a path, so no path meets a missing entry."""
    candidates = list(candidate_geometries(space))
    layers = {layer_key(g) for g in candidates if isinstance(g, LayerGeometry)}
    stems = {stem_key(g) for g in candidates if isinstance(g, ConvGeometry)}
    heads = {head_key(g) for g in candidates if isinstance(g, HeadGeometry)}
    rng = random.Random(0)
    for path in [space.reference_path(), space.largest_path()] + [space.random_path(rng) for _ in range(200)]:
        geo = space.geometry(path)
        for g in geo.layers:
            assert layer_key(g) in layers, layer_key(g)
        assert stem_key(geo.stem) in stems and head_key(geo.head) in heads


def test_table_sums_along_the_path(tmp_path):
    space = small_space()
    table = measure_table(space, repeats=2)
    assert table["threads"] >= 1 and table["unit"] == "ms"
    assert all(v > 0 for v in table["entries"].values())
    (tmp_path / "t.json").write_text(json.dumps(table))
    lt = LatencyTable.load(tmp_path / "t.json")
    path = space.random_path(random.Random(1))
    assert lt.path_latency(space, path) > 0
    # With the stem's entries at 1000 ms, the head's at 100 and every layer's at 1, a path's latency counts its
    # modules: the stem, the head and each layer it does not skip (read from the path, not its geometry).
    entries = {k: 1000.0 if k.startswith("stem:") else 100.0 if k.startswith("head:") else 1.0 for k in table["entries"]}
    (tmp_path / "counted.json").write_text(json.dumps({**table, "entries": entries}))
    counted = LatencyTable.load(tmp_path / "counted.json")
    rng = random.Random(2)
    for path in [space.reference_path(), space.largest_path()] + [space.random_path(rng) for _ in range(20)]:
        layers = sum(lc is not None for block in path.blocks for lc in block.layers)
        assert counted.path_latency(space, path) == 1100.0 + layers


def test_table_errors(tmp_path):
    space = small_space()
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"format": "mpnas.latency/1", "space": "small", "resolution": 16, "entries": {}}))
    with pytest.raises(MpnasError, match="no entry 'stem:out"):
        LatencyTable.load(f).path_latency(space, space.reference_path())
    f.write_text(json.dumps({"format": "mpnas.latency/1", "space": "small", "resolution": 32, "entries": {"a": 1}}))
    with pytest.raises(MpnasError, match="measured at 32 px"):
        LatencyTable.load(f).check(space)
    f.write_text(json.dumps({"format": "mpnas.latency/1", "entries": {"a": "fast"}}))
    with pytest.raises(MpnasError, match="entry 'a'"):
        LatencyTable.load(f)


def test_space_show_json(capsys):
    assert main(["space", "show", "--preset", "mobilenet_v3_small", "--num-classes", "1000", "--resolution", "224", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 2_542_856 and info["num_architectures"] == 1
    assert 56e6 < info["macs"] < 57e6


def test_space_show_bad_preset_is_one_line_error(capsys):
    assert main(["space", "show", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "space preset 'nope' unknown" in err and "Traceback" not in err
