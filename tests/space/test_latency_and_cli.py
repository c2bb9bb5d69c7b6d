import json
import random

import pytest

from mpnas.cli import main
from mpnas.errors import MpnasError
from mpnas.nn.measure import measure_table
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


def test_table_sums_along_the_path(tmp_path):
    space = small_space()
    table = measure_table(space, repeats=2)
    assert table["threads"] >= 1 and table["unit"] == "ms"
    assert all(v > 0 for v in table["entries"].values())
    (tmp_path / "t.json").write_text(json.dumps(table))
    lt = LatencyTable.load(tmp_path / "t.json")
    path = space.random_path(random.Random(1))
    geo = space.geometry(path)
    expected = table["entries"][stem_key(geo.stem)] + table["entries"][head_key(geo.head)]
    expected += sum(table["entries"][layer_key(g)] for g in geo.layers)
    assert lt.path_latency(space, path) == pytest.approx(expected)


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
