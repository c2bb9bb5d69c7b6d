from dataclasses import replace

import pytest

from mpnas.errors import MpnasError
from mpnas.io import write_json
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
import random

from mpnas.search.loop import run_search, warm_up
from mpnas.nn.measure import measure_table


@pytest.fixture(scope="module")
def domains(tiny_cfg):
    return load_data(tiny_cfg, progress=False)


def test_latency_table_is_the_cost_when_given(tiny_cfg, domains, tmp_path):
    space = build_space(tiny_cfg)
    write_json(tmp_path / "lat.json", measure_table(space, repeats=1))
    cfg = replace(tiny_cfg, search=replace(tiny_cfg.search, latency_table=str(tmp_path / "lat.json")))
    rows = []
    arch, _ = run_search(cfg, domains, space, tmp_path, progress=False, log=rows.append)
    assert arch.meta["cost_unit"] == "ms"
    # T0 defaults to the reference path's latency, so the logged relative cost is T / T0 in table units
    assert all(t > 0 for t in arch.meta["targets"].values())
    assert all(r["cost"] > 0 for r in rows if r["stage"] == "search")


def test_latency_table_for_another_resolution_is_rejected(tiny_cfg, domains, tmp_path):
    other = build_space(replace(tiny_cfg, data=replace(tiny_cfg.data, resolution=24)))
    write_json(tmp_path / "lat.json", measure_table(other, repeats=1))
    cfg = replace(tiny_cfg, search=replace(tiny_cfg.search, latency_table=str(tmp_path / "lat.json")))
    with pytest.raises(MpnasError, match="measured at 24 px"):
        run_search(cfg, domains, build_space(tiny_cfg), tmp_path, progress=False, log=lambda r: None)


def test_shared_controller_gives_every_domain_one_path(tiny_cfg, domains, tmp_path):
    arch, state = run_search(tiny_cfg, domains, build_space(tiny_cfg), tmp_path, groups={"all": domains.names()},
                             progress=False, log=lambda r: None)
    assert list(state.controllers) == ["all"]
    assert arch.paths["bars"] == arch.paths["colours"]


def test_controllers_learn_only_after_rl_start(tiny_cfg, domains, tmp_path):
    cfg = replace(tiny_cfg, search=replace(tiny_cfg.search, rl_start=0.99))  # RL never starts within 6 steps
    _, state = run_search(cfg, domains, build_space(cfg), tmp_path, progress=False, log=lambda r: None)
    for c in state.controllers.values():
        assert all(l.detach().abs().max().item() == 0.0 for l in c.logits)  # still uniform
    _, state = run_search(tiny_cfg, domains, build_space(tiny_cfg), tmp_path, progress=False, log=lambda r: None)
    assert any(l.detach().abs().max().item() > 0 for c in state.controllers.values() for l in c.logits)


def test_warm_up_replaces_each_decision_on_its_own(tiny_cfg):
    """TuNAS's warm-up: with probability p a width takes its largest option and an op choice (kernel, SE, skip)
    becomes the mix of its options, every decision drawn on its own."""
    space = build_space(tiny_cfg)
    decisions = space.decisions()
    choices = {d.key: min(d.options) for d in decisions}  # narrowest widths, no skip, no SE, smallest kernels
    choices.update({d.key: True for d in decisions if d.kind == "skip"})  # ... every skippable layer skipped

    same, mix = warm_up(decisions, choices, 0.0, random.Random(0))
    assert same == choices and mix == {}

    widest, mix = warm_up(decisions, choices, 1.0, random.Random(0))
    for d in decisions:
        if d.kind in ("filters", "expansion"):
            assert widest[d.key] == max(d.options)
        if d.kind == "skip":
            assert widest[d.key] is False and mix[d.layer].skip  # the layer runs, at half weight
        if d.kind == "se":
            assert widest[d.key] is True and mix[d.layer].se
        if d.kind == "kernel":
            assert mix[d.layer].kernel

    only_widths, mix = warm_up(decisions, choices, 1.0, random.Random(0), filters=True, ops=False)
    assert mix == {} and all(only_widths[d.key] == choices[d.key] for d in decisions if d.kind in ("kernel", "se", "skip"))

    rng = random.Random(1)
    widths = [d for d in decisions if d.kind in ("filters", "expansion")]
    fractions = []
    for _ in range(200):
        half, _ = warm_up(decisions, choices, 0.5, rng)
        fractions.append(sum(half[d.key] == max(d.options) for d in widths) / len(widths))
    assert 0.4 < sum(fractions) / len(fractions) < 0.6
    assert 0 < min(fractions) < 1 or 0 < max(fractions) < 1  # a mix within one sample: drawn per decision


def test_several_paths_per_step_score_k_paths_and_update_with_k_log_probabilities(tiny_cfg, domains, tmp_path, monkeypatch):
    import mpnas.search.loop as loop

    calls = []
    real = loop.reinforce_loo_step
    monkeypatch.setattr(loop, "reinforce_loo_step", lambda c, o, samples: calls.append(len(samples)) or real(c, o, samples))
    cfg = replace(tiny_cfg, search=replace(tiny_cfg.search, samples_per_step=3, rl_start=0.5))
    rows = []
    arch, state = run_search(cfg, domains, build_space(cfg), tmp_path, progress=False, log=rows.append)
    rl_steps = cfg.search.steps - round(cfg.search.rl_start * cfg.search.steps)
    assert calls == [3] * (rl_steps * len(domains.names()))  # one update per controller and RL step, K samples each
    logged = [r for r in rows if r["stage"] == "search"]
    assert {r["paths_scored"] for r in logged if r["rl_active"]} == {3}
    assert {r["paths_scored"] for r in logged if not r["rl_active"]} == {1}  # warm-up scores only the trained path
    assert arch.meta["samples_per_step"] == 3
    assert any(l.detach().abs().max().item() > 0 for c in state.controllers.values() for l in c.logits)


def test_quality_prob_is_the_mean_probability_of_the_true_class():
    import torch

    from mpnas.config import SearchConfig
    from mpnas.search.loop import _score

    class Fixed:
        def forward_geometry(self, x, geo, d, mix):
            return torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])

    y = torch.tensor([0, 0, 0])
    batch = {"a": (torch.zeros(3, 3, 4, 4), y)}
    p = torch.softmax(Fixed().forward_geometry(None, None, None, None), 1)[:, 0].mean().item()
    sc = replace(SearchConfig(), quality="prob", reward="abs", beta=0.0)
    r = _score(Fixed(), None, ["a"], batch, {}, sc, lambda d, g: 1.0, {"a": 1.0}, 0.0)
    assert r["quality"] == pytest.approx(p) and r["top1"]["a"] == pytest.approx(2 / 3)
    r = _score(Fixed(), None, ["a"], batch, {}, replace(sc, quality="top1"), lambda d, g: 1.0, {"a": 1.0}, 0.0)
    assert r["quality"] == pytest.approx(2 / 3)


def test_final_selection_keeps_the_best_scored_candidate(tiny_cfg, domains, tmp_path, monkeypatch):
    import mpnas.search.loop as loop

    scored = []
    real = loop._score

    def spy(supernet, geo, *rest):
        r = real(supernet, geo, *rest)
        scored.append((geo, r["reward"]))
        return r

    cfg = replace(tiny_cfg, search=replace(tiny_cfg.search, final_candidates=5, final_batches=2))
    rows = []
    plain_arch, state = run_search(tiny_cfg, domains, build_space(tiny_cfg), tmp_path / "a", progress=False, log=lambda r: None)
    plain = {g: c.most_likely_path() for g, c in state.controllers.items()}
    assert plain_arch.meta["selection"] == {}
    monkeypatch.setattr(loop, "_score", spy)
    arch, state = run_search(cfg, domains, build_space(cfg), tmp_path / "b", progress=False, log=rows.append)
    space = build_space(cfg)
    for d in domains.names():
        sel = arch.meta["selection"][d]
        assert 2 <= sel["candidates"] <= 5 and sel["batches"] == 2
        assert sel["reward"] >= sel["most_likely_reward"]
        # the training is unchanged by the option, so candidate 0 is the plain run's most likely path
        assert (arch.paths[d] == plain[d]) == (sel["chosen"] == 0)
        chosen = space.geometry(arch.paths[d])
        final = scored[-2 * sum(arch.meta["selection"][x]["candidates"] for x in domains.names()):]
        mine = [r for g, r in final if g == chosen]
        assert len(mine) >= 2 and sum(mine[:2]) / 2 == pytest.approx(sel["reward"], abs=1e-5)
    assert len([r for r in rows if r["stage"] == "search_select"]) == len(domains.names())
