"""Each baseline on the tiny fixture: it builds, trains, and has the structure the paper describes."""

import json

import pytest

from mpnas.baselines import methods as M
from mpnas.config import apply_overrides
from mpnas.baselines.bench import run_bench
from mpnas.nn.merged import MultiPathModel
from mpnas.rundir import load_data
from mpnas.space.arch import Architecture
from mpnas.space.cost import path_cost
from mpnas.rundir import load_weights


@pytest.fixture(scope="module")
def domains(tiny_cfg):
    return load_data(tiny_cfg, progress=False)


@pytest.fixture(scope="module")
def bench_dir(tiny_cfg, domains, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    run_bench(tiny_cfg, list(M.METHODS), [0], out, progress=False, say=lambda m: None)
    return out


def results(bench_dir, method):
    return json.loads((bench_dir / method / "seed0" / "results.json").read_text())


@pytest.mark.parametrize("method", M.METHODS)
def test_every_method_trains_and_reports(bench_dir, method):
    r = results(bench_dir, method)
    assert r["method"] == method
    assert set(r["domains"]) == {"bars", "colours"}
    assert all(0 <= d["top1"] <= 100 for d in r["domains"].values())


def test_sd_nas_bundle_is_the_sum_of_its_models(bench_dir):
    r = results(bench_dir, "sd-nas")
    assert r["params_total"] == sum(d["params"] for d in r["domains"].values())
    assert r["macs_total"] == sum(d["macs"] for d in r["domains"].values())
    for name in ("bars", "colours"):
        sub = bench_dir / "sd-nas" / "seed0" / "domains" / name
        arch = Architecture.load(sub / "architecture.json")
        assert arch.domains == [name]  # searched and trained on its own domain only
        model = MultiPathModel(arch)
        assert sum(p.numel() for p in model.parameters()) == r["domains"][name]["params"]
        assert path_cost(arch.space, arch.paths[name], 3).params == r["domains"][name]["params"]


@pytest.mark.parametrize("method", ["sp-mn", "mdsp-nas"])
def test_shared_backbone_methods_share_every_backbone_parameter(bench_dir, method):
    arch = Architecture.load(bench_dir / method / "seed0" / "architecture.json")
    assert arch.paths["bars"] == arch.paths["colours"]
    users = arch.node_users()
    assert users and all(set(u) == {"bars", "colours"} for u in users.values())
    model = MultiPathModel(arch)
    load_weights(model, bench_dir / method / "seed0" / "model.safetensors")
    # convolutions: one set for both domains; only batch norm and the classifier are per domain
    per_domain = [n for n, _ in model.named_parameters() if "d_bars" in n or "d_colours" in n]
    shared = [n for n, _ in model.named_parameters() if n not in per_domain]
    assert all("bn" in n or "classifiers" in n for n in per_domain)
    assert any(".project.weight" in n for n in shared) and not any("_bn" in n for n in shared)


def test_sp_mn_searches_on_the_largest_domain(bench_dir):
    arch = Architecture.load(bench_dir / "sp-mn" / "seed0" / "architecture.json")
    assert arch.meta["searched_on"] == "colours"  # 14 x 3 training images against 10 x 3
    searched = Architecture.load(bench_dir / "sp-mn" / "seed0" / "search-colours" / "architecture.json")
    assert searched.paths["colours"] == arch.paths["bars"]


def test_mdsp_nas_uses_one_controller(bench_dir):
    arch = Architecture.load(bench_dir / "mdsp-nas" / "seed0" / "architecture.json")
    assert arch.meta["groups"] == {"shared": ["colours", "bars"]} or arch.meta["groups"] == {"shared": ["bars", "colours"]}


def test_trl_masks_are_fixed_with_the_ratio(bench_dir, tiny_cfg):
    run = bench_dir / "trl" / "seed0"
    arch = Architecture.load(run / "architecture.json")
    assert arch.routing_ratio == tiny_cfg.baselines.trl_ratio
    a, b = MultiPathModel(arch), MultiPathModel(arch)
    load_weights(a, run / "model.safetensors")
    masks = {n: t for n, t in a.named_buffers() if n.startswith("route_")}
    assert masks and all(t.sum().item() == round(0.9 * t.numel()) for t in masks.values())
    # the trained model's masks are the ones it was built with (fixed, not learned)
    assert all(masks[n].equal(t) for n, t in b.named_buffers() if n in masks)


def test_mrp_averages_its_trials(bench_dir, tiny_cfg):
    r = results(bench_dir, "mrp")
    assert r["num_trials"] == tiny_cfg.baselines.mrp_trials == len(r["trials"])
    assert r["mean_top1"] == pytest.approx(sum(t["mean_top1"] for t in r["trials"]) / len(r["trials"]), abs=1e-3)
    paths = [Architecture.load(bench_dir / "mrp" / "seed0" / f"trial{k}" / "architecture.json").paths for k in range(2)]
    assert paths[0] != paths[1]


def test_bench_skips_finished_methods(bench_dir, tiny_cfg, monkeypatch):
    calls = []
    monkeypatch.setattr("mpnas.baselines.bench.run_method", lambda *a, **k: calls.append(a[0]))
    said = []
    bench = run_bench(tiny_cfg, list(M.METHODS), [0], bench_dir, progress=False, say=said.append)
    assert calls == []
    assert len([s for s in said if "already finished" in s]) == len(M.METHODS)
    assert set(bench["methods"]) == set(M.METHODS)
    md = (bench_dir / "bench.md").read_text()
    sp_params = bench["methods"]["sp-mn"]["params_total"]["mean"]
    assert "| MPNAS | 1 |" in md and f"| SP-MN | 1 | 1.00x | {sp_params / 1e6:.2f} |" in md
    assert (bench_dir / "figures" / "mean_top1.png").is_file()


def test_unknown_method_is_rejected(tiny_cfg, tmp_path):
    from mpnas.errors import MpnasError

    with pytest.raises(MpnasError, match="unknown method"):
        run_bench(tiny_cfg, ["mpnas", "resnet"], [0], tmp_path, progress=False)


def test_bench_split_across_processes_skips_live_claims_and_takes_over_dead_ones(tiny_cfg, tmp_path, monkeypatch):
    import os
    import socket
    import subprocess
    import sys

    from mpnas.baselines.bench import CLAIM

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    (tmp_path / "mpnas" / "seed0").mkdir(parents=True)
    (tmp_path / "mpnas" / "seed0" / CLAIM).write_text(f"{host} {os.getppid()}")  # a live process holds it
    (tmp_path / "trl" / "seed0").mkdir(parents=True)
    (tmp_path / "trl" / "seed0" / CLAIM).write_text(f"{host} {dead.pid}")  # its holder died
    calls = []

    def fake_run(method, cfg, run_dir, domains, progress, mpnas_dir=None, resume=False):
        assert (run_dir / CLAIM).read_text() == f"{host} {os.getpid()}"  # held while the run goes on
        calls.append((method, resume) if resume else method)

    monkeypatch.setattr("mpnas.baselines.bench.run_method", fake_run)
    monkeypatch.setattr("mpnas.baselines.bench.load_data", lambda cfg, progress: {})
    monkeypatch.setattr("mpnas.baselines.bench.write_bench", lambda out, cfg: {})
    said = []
    run_bench(tiny_cfg, ["mpnas", "trl"], [0], tmp_path, progress=False, say=said.append)
    assert calls == ["trl"]
    assert any("mpnas seed 0 is being run by another process" in s for s in said)
    assert (tmp_path / "mpnas" / "seed0" / CLAIM).exists()  # someone else's claim is left alone
    assert not (tmp_path / "trl" / "seed0" / CLAIM).exists()  # ours is released when the run ends

    # A dead process's run that had started is not restarted over its files: refused, or continued with resume.
    from mpnas.errors import MpnasError

    (tmp_path / "mrp" / "seed0").mkdir(parents=True)
    (tmp_path / "mrp" / "seed0" / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "mrp" / "seed0" / CLAIM).write_text(f"{host} {dead.pid}")
    with pytest.raises(MpnasError, match=r"mrp/seed0 holds an unfinished run .*--resume"):
        run_bench(tiny_cfg, ["mrp"], [0], tmp_path, progress=False, say=said.append)
    assert (tmp_path / "mrp" / "seed0" / "config.yaml").read_text() == "seed: 0\n"
    calls.clear()
    run_bench(tiny_cfg, ["mrp"], [0], tmp_path, progress=False, say=said.append, resume=True)
    assert calls == [("mrp", True)] and any("resuming mrp seed 0" in s for s in said)


def test_loss_ablation_retrains_each_architecture_with_each_loss(bench_dir, tiny_cfg, monkeypatch):
    from mpnas.baselines.bench import LOSS_VARIANTS
    from mpnas.rundir import read_config

    run_bench(tiny_cfg, ["mpnas", "sp-mn", "mdsp-nas", "mrp"], [0], bench_dir, ablate="loss", progress=False,
              say=lambda m: None)
    ab = bench_dir / "ablate-loss"
    mpnas_paths = Architecture.load(bench_dir / "mpnas" / "seed0" / "architecture.json").paths
    for kind in (k for k in LOSS_VARIANTS if k != "exp_dec"):  # exp_dec is MPNAS's own run
        run = ab / kind / "seed0"
        assert json.loads((run / "results.json").read_text())["method"] == f"mpnas+{kind}"
        assert read_config(run).loss.kind == kind  # only the loss differs ...
        assert Architecture.load(run / "architecture.json").paths == mpnas_paths  # ... not the architecture
    x = json.loads((ab / "x" / "seed0" / "results.json").read_text())
    hardest = min(x["domains"], key=lambda d: x["domains"][d]["val_top1"])
    assert read_config(ab / "empirical" / "seed0").loss.weights == {hardest: 2.0}
    for method in ("sp-mn", "mdsp-nas"):
        run = ab / f"{method}+x" / "seed0"
        assert read_config(run).loss.kind == "x"
        src = Architecture.load(bench_dir / method / "seed0" / "architecture.json").paths
        assert Architecture.load(run / "architecture.json").paths == src
    assert (ab / "mrp+x" / "seed0" / "trial1" / "results.json").is_file()

    md = (bench_dir / "bench.md").read_text()
    for label in ("| UWL |", "| Empirical |", "| x |", "| x^2 |", "| exp(x/w) |", "| exp(x/w), w increasing |",
                  "| exp(x/w), w decreasing |"):
        assert label in md
    assert "| MDSP-NAS | MDSP-NAS + ABDP | SP-MN | SP-MN + ABDP | MRP | MRP + ABDP | MPNAS | MPNAS + ABDP |" in md

    calls = []  # a second run finds every ablation finished
    monkeypatch.setattr("mpnas.baselines.bench.retrain_with_loss", lambda *a, **k: calls.append(a))
    run_bench(tiny_cfg, ["mpnas", "sp-mn", "mdsp-nas", "mrp"], [0], bench_dir, ablate="loss", progress=False,
              say=lambda m: None)
    assert calls == []


def test_single_shot_reuses_the_gradient_search_and_counts_its_time(bench_dir):
    searched, oneshot = bench_dir / "mpnas-gradient" / "seed0", bench_dir / "mpnas-gradient-oneshot" / "seed0"
    assert Architecture.load(oneshot / "architecture.json").paths == Architecture.load(searched / "architecture.json").paths
    stages = {d: json.loads((d / "stages.json").read_text()) for d in (searched, oneshot)}
    assert stages[oneshot]["search"]["wall_time_s"] == stages[searched]["search"]["wall_time_s"]
    assert results(bench_dir, "mpnas-gradient-oneshot")["wall_time_s"]["search"] == stages[searched]["search"]["wall_time_s"]
    rows = [json.loads(l) for l in (oneshot / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in rows if r["stage"].startswith("search")]  # no search of its own
    assert [r for r in rows if r["stage"] == "train_eval" and r["step"] == -1]  # the copied supernet, validated
    bench = json.loads((bench_dir / "bench.json").read_text())
    assert {"mpnas-gradient - mrp-matched-gradient", "mpnas-gradient-oneshot - mpnas-gradient"} <= set(bench["pairs"])
    matched = Architecture.load(bench_dir / "mrp-matched-gradient" / "seed0" / "architecture.json")
    assert matched.meta["matched_to"] == str(searched)


def test_mrp_matched_shortlist_is_mrp_matched_without_a_shortlist(bench_dir):
    plain = Architecture.load(bench_dir / "mrp-matched" / "seed0" / "architecture.json")
    short = Architecture.load(bench_dir / "mrp-matched-shortlist" / "seed0" / "architecture.json")
    assert short.paths == plain.paths  # its first draw is mrp-matched's, and with shortlist 0 it is the only one


def test_mrp_matched_shortlist_keeps_the_best_brief_reward_of_matched_draws(tiny_cfg, domains, bench_dir, tmp_path):
    cfg = apply_overrides(tiny_cfg, ["search.shortlist=2", "search.final_candidates=2", "search.shortlist_steps=3"])
    M.run_method("mrp-matched-shortlist", cfg, tmp_path / "run", domains=domains, progress=False,
                 mpnas_dir=bench_dir / "mpnas" / "seed0")
    arch = Architecture.load(tmp_path / "run" / "architecture.json")
    assert arch.meta["method"] == "mrp-matched-shortlist" and len(arch.meta["random_seeds"]) == 2
    for d, info in arch.meta["shortlist"].items():
        tried = info["shortlist"]
        assert [t["candidate"] for t in tried] == [0, 1] and info["shortlist_steps"] == 3
        assert info["chosen"] == max(range(2), key=lambda i: tried[i]["reward"])
        assert abs(arch.meta["matched"][d]["ratio"] - 1) <= M.MATCH_TOLERANCE
