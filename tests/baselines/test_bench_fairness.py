"""The bench compares like with like: cost-matched random paths, equal steps per domain, choices made on
validation data, paired intervals, and the front."""

import json
from dataclasses import replace

import pytest

from mpnas.analysis.stats import paired_difference
from mpnas.baselines import methods as M
from mpnas.baselines.bench import _empirical_weights, run_bench
from mpnas.baselines.names import front_name
from mpnas.baselines.tables import paired_against_mpnas
from mpnas.errors import MpnasError
from mpnas.io import write_json
from mpnas.rundir import load_data, read_config
from mpnas.space.presets import build_space
from mpnas.search.loop import CostModel
from mpnas.space.arch import Architecture


@pytest.fixture(scope="module")
def domains(tiny_cfg):
    return load_data(tiny_cfg, progress=False)


def test_paired_interval_on_a_known_example():
    # differences 1, 2, 3: mean 2, std 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    p = paired_difference({0: 11.0, 1: 12.0, 2: 13.0, 5: 99.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert p.seeds == (0, 1, 2) and p.diffs == (1.0, 2.0, 3.0)
    assert p.mean == pytest.approx(2.0) and p.std == pytest.approx(1.0)
    assert p.low == pytest.approx(2.0 - 2.484138, abs=1e-5) and p.high == pytest.approx(2.0 + 2.484138, abs=1e-5)
    assert p.excludes_zero is False
    tight = paired_difference({0: 2.0, 1: 2.1, 2: 1.9}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert tight.excludes_zero and tight.low > 0
    single = paired_difference({0: 3.0}, {0: 1.0})
    assert single.mean == 2.0 and single.low is None and not single.excludes_zero
    with pytest.raises(ValueError):
        paired_difference({0: 1.0}, {1: 1.0})


def test_cost_matched_paths_are_within_five_percent_of_the_mpnas_path(tiny_cfg, domains):
    space = build_space(tiny_cfg)
    import random

    rng = random.Random(3)
    names = domains.names()
    num_classes = {d.name: d.num_classes for d in domains}
    reference = Architecture(space, {d: space.random_path(rng) for d in names}, num_classes)
    arch = M.matched_random_architecture(tiny_cfg, domains, reference, seed=11)
    cost = CostModel(space, num_classes, None)
    for d in names:
        target = cost(d, space.geometry(reference.paths[d]))
        got = cost(d, space.geometry(arch.paths[d]))
        assert abs(got / target - 1) <= 0.05
        assert arch.meta["matched"][d]["draws"] >= 1 and arch.meta["matched"][d]["cost"] == got
    # the same seed draws the same paths; an impossible tolerance is a clear error that names the domain
    assert M.matched_random_architecture(tiny_cfg, domains, reference, seed=11).paths == arch.paths
    with pytest.raises(MpnasError, match="no random path of domain"):
        M.matched_random_architecture(tiny_cfg, domains, reference, seed=11, tolerance=0.0, max_draws=3, max_walk=0)


def test_a_target_in_the_tail_is_matched_by_a_recorded_walk(tiny_cfg, domains):
    """The cheapest path of the space is (almost) never drawn uniformly; the walk gets within 5% of it."""
    space = build_space(tiny_cfg)
    names = domains.names()
    num_classes = {d.name: d.num_classes for d in domains}
    cheapest = space.path_from_choices({d.key: (True if d.kind == "skip" else min(d.options)) for d in space.decisions()})
    reference = Architecture(space, {d: cheapest for d in names}, num_classes)
    arch = M.matched_random_architecture(tiny_cfg, domains, reference, seed=5, max_draws=20)
    cost = CostModel(space, num_classes, None)
    for d in names:
        target = cost(d, space.geometry(cheapest))
        assert abs(cost(d, space.geometry(arch.paths[d])) / target - 1) <= 0.05
        assert arch.meta["matched"][d]["draws"] == 20 and arch.meta["matched"][d]["walk_steps"] >= 1


def test_mrp_matched_runs_after_mpnas_and_is_matched_to_it(tiny_cfg, domains, tmp_path):
    said = []
    run_bench(tiny_cfg, ["mrp-matched"], [0], tmp_path, progress=False, say=said.append)
    assert said.index("bench: running mpnas seed 0 -> " + str(tmp_path / "mpnas" / "seed0")) < \
        said.index("bench: running mrp-matched seed 0 -> " + str(tmp_path / "mrp-matched" / "seed0"))
    ref = Architecture.load(tmp_path / "mpnas" / "seed0" / "architecture.json")
    arch = Architecture.load(tmp_path / "mrp-matched" / "seed0" / "architecture.json")
    for d, m in arch.meta["matched"].items():
        assert abs(m["ratio"] - 1) <= 0.05
        assert m["target"] == pytest.approx(M.CostModel(ref.space, ref.num_classes, None)(d, ref.space.geometry(ref.paths[d])))
    # trained exactly like MPNAS: the same config apart from nothing
    assert read_config(tmp_path / "mrp-matched" / "seed0") == read_config(tmp_path / "mpnas" / "seed0")
    bench = json.loads((tmp_path / "bench.json").read_text())
    p = bench["paired"]["mrp-matched"]["mean_top1"]
    a = bench["methods"]["mpnas"]["per_seed"][0]["mean_top1"] - bench["methods"]["mrp-matched"]["per_seed"][0]["mean_top1"]
    assert p["n"] == 1 and p["mean"] == pytest.approx(a)
    md = (tmp_path / "bench.md").read_text()
    assert "Paired by seed: MPNAS minus each method" in md and "| MRP, cost-matched | 1 |" in md
    assert (tmp_path / "figures" / "top1_vs_macs.png").is_file() and (tmp_path / "figures" / "top1_vs_params.png").is_file()


def test_every_method_gets_the_same_steps_per_domain_under_an_epoch_budget(tiny_cfg, domains, tmp_path):
    cfg = replace(tiny_cfg, search=replace(tiny_cfg.search, steps=None, epochs=2.0),
                  train=replace(tiny_cfg.train, steps=None, epochs=3.0))
    fixed = M.fix_steps(cfg, domains)
    largest = max(len(d.splits["train"].images) for d in domains)
    assert fixed.train.steps == round(3.0 * largest / cfg.train.batch_size) and fixed.train.epochs is None
    assert fixed.search.steps == round(2.0 * largest / cfg.search.batch_size) and fixed.search.epochs is None
    run_bench(cfg, ["mpnas", "sd-nas"], [0], tmp_path, progress=False, say=lambda m: None)
    joint = read_config(tmp_path / "mpnas" / "seed0")
    for d in domains.names():
        single = read_config(tmp_path / "sd-nas" / "seed0" / "domains" / d)
        assert (single.train.steps, single.search.steps) == (joint.train.steps, joint.search.steps) == \
            (fixed.train.steps, fixed.search.steps)
        rows = [json.loads(line) for line in (tmp_path / "sd-nas" / "seed0" / "domains" / d / "metrics.jsonl").open()]
        assert max(r["step"] for r in rows if r["stage"] == "train") == fixed.train.steps - 1
    # one epoch of the smallest domain alone would have been fewer steps: the fix is what makes them equal
    smallest = min(len(d.splits["train"].images) for d in domains)
    assert round(3.0 * smallest / cfg.train.batch_size) < fixed.train.steps


def test_empirical_loss_doubles_the_domain_hardest_on_validation_not_test(tmp_path):
    run = tmp_path / "ablate-loss" / "x" / "seed0"
    write_json(run / "results.json", {"domains": {"a": {"top1": 50.0, "val_top1": 90.0},
                                                   "b": {"top1": 80.0, "val_top1": 60.0}}})
    assert _empirical_weights(tmp_path, 0, say=lambda m: None) == {"b": 2.0}
    write_json(run / "results.json", {"domains": {"a": {"top1": 50.0}, "b": {"top1": 80.0}}})
    with pytest.raises(MpnasError, match="no validation top-1"):
        _empirical_weights(tmp_path, 0, say=lambda m: None)


def test_front_runs_mpnas_at_other_cost_exponents(tiny_cfg, tmp_path):
    run_bench(tiny_cfg, ["mpnas"], [0], tmp_path, progress=False, say=lambda m: None, front=[-0.3, -0.07])
    assert not (tmp_path / front_name(-0.07)).exists()  # the default exponent is MPNAS itself
    assert read_config(tmp_path / front_name(-0.3) / "seed0").search.beta == -0.3
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert set(bench["front"]) == {front_name(-0.3)}
    assert front_name(-0.3) in bench["paired"]


def test_paired_against_mpnas_reports_mpnas_minus_method():
    def agg(seeds, means):
        return {"seeds": seeds, "per_seed": [{"seed": s, "mean_top1": m, "top1": {"a": m}} for s, m in zip(seeds, means)],
                "params_total": {"mean": 2.0}, "macs_total": {"mean": 4.0}, "top1": {"a": {}}}

    out = paired_against_mpnas({"mpnas": agg([0, 1, 2], [90, 91, 92]), "x": agg([0, 1, 2, 3], [89, 89, 89, 0])})
    assert out["x"]["mean_top1"]["mean"] == pytest.approx(2.0) and out["x"]["mean_top1"]["n"] == 3
    assert out["x"]["params_ratio"] == 1.0
