"""The supernet-training levers of the search: FairNAS's strict fairness (`search.fair_sampling`: a fair set of
paths uses every candidate of a layer equally, and one step with it updates every kernel of every layer, where a
plain step updates one per layer), the sandwich rule (`search.sandwich`: every width slice of the layers a step
runs is trained), and the likelihood Q of the reward."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpnas.config import apply_overrides, resolve_config
from mpnas.errors import MpnasError
from mpnas.nn.init import initialise
from mpnas.nn.supernet import Supernet
from mpnas.rundir import load_data
from mpnas.search.loop import run_search
from mpnas.space.presets import build_space, get_space
from mpnas.search.gradient import batch_counts, scores_of
from mpnas.space.sampling import fair_choices, sandwich_choices

SPACES = [get_space("default", resolution=32), get_space("default", resolution=32, layers_per_block=2),
          get_space("paper", resolution=64)]


def _layer_op(path_choices: dict, kernel, skip) -> object:
    """A layer's op in one path: 'skip', or its kernel ('fixed' when the kernel is not a decision)."""
    if skip is not None and path_choices[skip.key]:
        return "skip"
    return path_choices[kernel.key] if kernel is not None else "fixed"


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.integers(0, 10_000))
def test_every_candidate_is_used_equally(which, seed):
    space = SPACES[which]
    decisions = space.decisions()
    paths = fair_choices(decisions, random.Random(seed))
    k = len(paths)
    assert all(set(p) == {d.key for d in decisions} for p in paths)
    for p in paths:
        space.path_from_choices(p)  # each is a valid path
    layers = {d.layer for d in decisions if d.kind in ("kernel", "skip") and d.layer is not None}
    most = 0
    for layer in layers:
        kernel = next((d for d in decisions if d.layer == layer and d.kind == "kernel"), None)
        skip = next((d for d in decisions if d.layer == layer and d.kind == "skip"), None)
        candidates = [*(kernel.options if kernel else ["fixed"]), *(["skip"] if skip else [])]
        most = max(most, len(candidates))
        used = Counter(_layer_op(p, kernel, skip) for p in paths)
        assert set(used) == set(candidates)
        assert set(used.values()) <= {k // len(candidates), -(-k // len(candidates))}
        if len(candidates) == k:
            assert set(used.values()) == {1}  # strict fairness: each op exactly once
    for d in decisions:
        if d.kind not in ("kernel", "skip") or d.layer is None:
            used = Counter(p[d.key] for p in paths)
            assert set(used) == set(d.options) or len(d.options) > k
            most = max(most, len(d.options))
    assert k == most


@pytest.fixture(scope="module")
def domains(tiny_cfg):
    return load_data(tiny_cfg, progress=False)


def _kernels_moved(cfg, domains, tmp_path) -> dict[str, bool]:
    """After one search step: for every depthwise kernel of every layer, whether its weights changed."""
    space = build_space(cfg)
    torch.manual_seed(cfg.seed)  # the search's own initialisation (mpnas.search.loop._new_state)
    start = Supernet(space, {d.name: d.num_classes for d in domains}, dropout=0.0, bn_momentum=cfg.model.bn_momentum)
    initialise(start, cfg.model.init, cfg.model.zero_init_residual)
    before = {k: v.clone() for k, v in start.state_dict().items() if ".dw.k" in k}
    _, state = run_search(cfg, domains, space, tmp_path, progress=False, log=lambda r: None)
    after = state.supernet.state_dict()
    return {k: not torch.equal(v, after[k]) for k, v in before.items()}


def test_one_fair_step_updates_every_kernel_of_every_layer(tiny_cfg, domains, tmp_path):
    # rl_start=0: no warm-up, so a plain step trains only the controller's sampled path.
    cfg = apply_overrides(tiny_cfg, ["search.steps=1", "search.rl_start=0"])
    plain = _kernels_moved(cfg, domains, tmp_path / "plain")
    assert not all(plain.values())
    fair = _kernels_moved(replace(cfg, search=replace(cfg.search, fair_sampling=True)), domains, tmp_path / "fair")
    assert fair and all(fair.values()), [k for k, moved in fair.items() if not moved]


def test_fair_sampling_needs_the_rl_strategy():
    with pytest.raises(MpnasError, match="search.fair_sampling"):
        resolve_config("quick", overrides=["search.fair_sampling=true", "search.strategy=gradient"])


def test_sandwich_paths_are_the_sample_at_its_largest_and_smallest_widths():
    space = get_space("default", resolution=32)
    decisions = space.decisions()
    choices = space.choices_of(space.random_path(random.Random(3)))
    largest, smallest = sandwich_choices(decisions, choices)
    for d in decisions:
        if d.kind in ("filters", "expansion"):
            assert largest[d.key] == max(d.options) and smallest[d.key] == min(d.options)
        else:
            assert largest.get(d.key) == smallest.get(d.key) == choices.get(d.key)


def _expand_rows_moved(cfg, domains, tmp_path) -> dict[str, torch.Tensor]:
    """After one search step: per layer's shared expand conv, which of its output rows changed."""
    space = build_space(cfg)
    torch.manual_seed(cfg.seed)
    start = Supernet(space, {d.name: d.num_classes for d in domains}, dropout=0.0, bn_momentum=cfg.model.bn_momentum)
    initialise(start, cfg.model.init, cfg.model.zero_init_residual)
    before = {k: v.clone() for k, v in start.state_dict().items() if k.endswith(".expand.weight")}
    _, state = run_search(cfg, domains, space, tmp_path, progress=False, log=lambda r: None)
    after = state.supernet.state_dict()
    return {k: (v != after[k]).flatten(1).any(1) for k, v in before.items()}


def test_a_sandwich_step_trains_every_width_of_the_layers_it_runs(tiny_cfg, domains, tmp_path):
    # No weight decay: it would move rows that took no gradient.
    cfg = apply_overrides(tiny_cfg, ["search.steps=1", "search.rl_start=0", "search.optim.weight_decay=0"])
    plain = _expand_rows_moved(cfg, domains, tmp_path / "plain")
    assert any(rows.any() and not rows.all() for rows in plain.values())  # a narrow slice trained alone
    sandwich = _expand_rows_moved(replace(cfg, search=replace(cfg.search, sandwich=True)), domains, tmp_path / "s")
    ran = [rows for rows in sandwich.values() if rows.any()]
    assert ran and all(rows.all() for rows in ran)


def test_likelihood_quality_is_the_geometric_mean_of_the_true_class_probability():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [0.0, 5.0]])
    y = torch.tensor([0, 1, 0])
    counts = batch_counts(logits, y, "likelihood")[None]
    top1, q = scores_of(counts, "likelihood")
    assert top1 == [pytest.approx(1 / 3)]  # only the first is right (the tie's argmax is class 0)
    expected = (0.75 * 0.5 * math.exp(0.0) / (1 + math.exp(5.0))) ** (1 / 3)
    assert q == [pytest.approx(expected, rel=1e-5)]
    _, prob = scores_of(batch_counts(logits, y, "prob")[None], "prob")
    assert prob == [pytest.approx((0.75 + 0.5 + 1 / (1 + math.exp(5.0))) / 3, rel=1e-5)]


def test_the_shortlist_keeps_the_best_brief_reward_and_counts_its_time(tiny_cfg, domains, tmp_path):
    cfg = apply_overrides(tiny_cfg, ["search.final_candidates=4", "search.shortlist=2", "search.shortlist_steps=3"])
    arch, _ = run_search(cfg, domains, build_space(cfg), tmp_path, progress=False, log=lambda r: None)
    spent = 0.0
    for g, sel in arch.meta["selection"].items():
        tried = sel["shortlist"]
        assert len(tried) == 2 and sel["shortlist_steps"] == 3
        # the supernet's two best candidates, in its order
        assert tried[0]["supernet_reward"] >= tried[1]["supernet_reward"]
        best = max(tried, key=lambda t: t["reward"])
        assert sel["chosen"] == best["candidate"]
        assert set(tried[0]["val_top1"]) == {g}
        spent += sum(t["seconds"] for t in tried)
    assert 0 < spent <= arch.meta["wall_time_s"]  # the brief trainings are inside the search's time
    assert not list(tmp_path.glob("shortlist-*"))  # their models are not kept


def test_the_shortlist_needs_enough_final_candidates():
    with pytest.raises(MpnasError, match="search.final_candidates >= 3"):
        resolve_config("quick", overrides=["search.shortlist=3", "search.final_candidates=2"])
