"""The ground-truth set's builder: paths inside the cost window, and a build that resumes where it stopped."""

from __future__ import annotations

import os
import socket
from dataclasses import replace

import pytest

from mpnas.baselines import methods as M
from mpnas.baselines.rankset import build, collect, pieces, plan_set, restore, unsaturated_domains
from mpnas.errors import MpnasError
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.search.loop import CostModel
from mpnas.space.space import Path as SpacePath


@pytest.fixture(scope="module")
def setting(tiny_cfg):
    domains = load_data(tiny_cfg, progress=False)
    space = build_space(tiny_cfg)
    fixed = M.random_architecture(tiny_cfg, domains, seed=0)
    return domains, space, fixed, plan_set(space, fixed, ["bars", "colours"], 3, 0.1)


def test_every_set_path_is_inside_the_cost_window(setting):
    domains, space, fixed, plan = setting
    for d, entry in plan.items():
        cost = CostModel(space, {d: entry["num_classes"]}, None)
        assert entry["target_macs"] == cost(d, space.geometry(fixed.paths[d]))
        assert len(entry["paths"]) == 3
        for p in entry["paths"]:
            macs = cost(d, space.geometry(SpacePath.from_dict(p["path"], space, "test")))
            assert abs(macs / entry["target_macs"] - 1) <= 0.1 and p["macs"] == macs
    # Drawn from a generator seeded by the domain's name: the same set again.
    assert plan_set(space, fixed, ["bars", "colours"], 3, 0.1) == plan
    with pytest.raises(MpnasError, match="not in the fixed architecture"):
        plan_set(space, fixed, ["nope"], 3, 0.1)


def test_build_resumes_where_it_stopped_and_skips_claimed_pieces(setting, tiny_cfg, tmp_path):
    domains, space, _, full = setting
    plan = {"bars": {**full["bars"], "paths": full["bars"]["paths"][:2]}}  # 4 pieces keep the test short
    cfg_for = lambda seed: replace(tiny_cfg, seed=seed)  # noqa: E731
    quiet = lambda line: None  # noqa: E731
    seeds = [0, 1]
    total = len(pieces(plan, seeds, tmp_path))
    assert total == 4

    whole = tmp_path / "whole"
    assert build(cfg_for, domains, space, plan, seeds, whole, say=quiet) == total

    stopped = tmp_path / "stopped"
    assert build(cfg_for, domains, space, plan, seeds, stopped, limit=3, say=quiet) == 3
    assert sum(1 for _ in stopped.rglob("result.json")) == 3
    assert build(cfg_for, domains, space, plan, seeds, stopped, say=quiet) == total - 3
    assert build(cfg_for, domains, space, plan, seeds, stopped, say=quiet) == 0  # nothing left to do
    assert collect(plan, stopped) == collect(plan, whole)  # the same figures, piece for piece
    # A fresh machine restores a collected, partly built set and trains only the rest.
    part = tmp_path / "part"
    assert build(cfg_for, domains, space, plan, seeds, part, limit=2, say=quiet) == 2
    fresh = tmp_path / "fresh"
    assert restore(collect(plan, part), fresh) == 2
    assert build(cfg_for, domains, space, plan, seeds, fresh, say=quiet) == total - 2
    assert collect(plan, fresh) == collect(plan, whole)
    summary = collect(plan, whole)["bars"]["summary"]
    assert summary["paths_complete"] == 2 and summary["seeds"] == ["0", "1"]

    # A piece claimed by a live process (this one) is left to it.
    held = tmp_path / "held"
    first = pieces(plan, seeds, held)[0][3]
    first.mkdir(parents=True)
    (first / ".claim").write_text(f"{socket.gethostname()} {os.getpid()}")
    assert build(cfg_for, domains, space, plan, seeds, held, say=quiet) == total - 1
    assert not (first / "result.json").exists()


def test_unsaturated_domains_follow_the_rule():
    bench = {"methods": {"a": {"top1": {"x": {"mean": 99.0}, "y": {"mean": 80.0}, "z": {"mean": 94.0}}},
                         "b": {"top1": {"x": {"mean": 90.0}, "y": {"mean": 96.0}, "z": {"mean": 90.0}}}},
             "front": {"a@beta=0": {"top1": {"x": {"mean": 91.0}, "y": {"mean": 80.0}, "z": {"mean": 94.9}}}}}
    assert unsaturated_domains(bench, 95.0) == ["z"]
