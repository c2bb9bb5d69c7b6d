"""The whole method end to end on a tiny fixture, through the CLI as a user runs it."""

import json

import pytest
import yaml
from safetensors import safe_open

from mpnas.cli import main
from mpnas.io import read_jsonl
from mpnas.space.arch import Architecture


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


def test_run_writes_every_output(run_dir):
    for name in ("config.yaml", "architecture.json", "model.safetensors", "metrics.jsonl", "results.json", "report.md",
                 "search_state.pt", "train_state.pt"):
        assert (run_dir / name).is_file(), name
    figures = {p.name for p in (run_dir / "figures").glob("*.png")}
    assert {"jaccard.png", "architecture.png", "accuracy.png", "controller_probs.png", "rewards.png"} <= figures
    report = (run_dir / "report.md").read_text()
    assert all(f"figures/{f}" in report for f in figures)


def test_results_have_the_documented_keys(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("method", "domains", "mean_top1", "params_total", "macs_total", "jaccard"):
        assert key in results
    assert results["method"] == "mpnas"
    assert set(results["domains"]) == {"bars", "colours"}
    for d in results["domains"].values():
        assert {"top1", "params", "macs", "num_classes"} <= set(d)
        assert 0 <= d["top1"] <= 100 and d["num_classes"] == 3
    assert results["jaccard"]["bars"]["bars"] == 1.0
    assert results["mean_top1"] == pytest.approx(sum(d["top1"] for d in results["domains"].values()) / 2, abs=1e-3)


def test_architecture_records_paths_and_node_users(run_dir):
    data = json.loads((run_dir / "architecture.json").read_text())
    arch = Architecture.load(run_dir / "architecture.json")
    assert set(data["domains"]) == {"bars", "colours"}
    assert data["nodes"] == arch.node_users()
    for node, users in data["nodes"].items():
        assert all(node in data["domains"][u]["nodes"] for u in users)


def test_metrics_log_every_search_quantity(run_dir):
    rows = read_jsonl(run_dir / "metrics.jsonl")
    search = [r for r in rows if r["stage"] == "search"]
    assert {r["domain"] for r in search} == {"bars", "colours"}
    for key in ("loss", "reward", "baseline", "entropy", "expected_cost", "quality", "cost"):
        assert key in search[0]
    assert any(r["stage"] == "search_probs" for r in rows)
    assert any(r["stage"] == "train" and "weight" in r for r in rows)
    assert any(r["stage"] == "train_eval" and r["domain"] == "__mean__" for r in rows)


def test_weights_carry_the_architecture(run_dir):
    with safe_open(str(run_dir / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "mpnas.weights/1"
    assert json.loads(meta["architecture"])["domains"].keys() == {"bars", "colours"}


def test_stages_rerun_alone_from_the_run_directory(run_dir, capsys):
    before = json.loads((run_dir / "results.json").read_text())
    assert main(["evaluate", "--run", str(run_dir)]) == 0  # reloads model.safetensors
    after = json.loads((run_dir / "results.json").read_text())
    assert after["domains"] == before["domains"]
    assert main(["report", "--run", str(run_dir)]) == 0
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["steps"] == 8


def test_stage_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--run", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no config.yaml" in err and "Traceback" not in err
    assert main(["run", "--data", "folder:" + str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--budget", "quick"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "o2"), "--budget", "quick", "--set", "loss.kind=softmax"]) == 2
    assert "loss.kind" in capsys.readouterr().err


def test_decathlon_run_scores_on_val_when_test_is_unlabelled(tiny_cfg, tiny_decathlon, tmp_path):
    from dataclasses import replace

    from mpnas.pipeline import run_all

    cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, spec=f"decathlon:{tiny_decathlon}"))
    results = run_all(cfg, tmp_path / "run", progress=False)
    assert {d["eval_split"] for d in results["domains"].values()} == {"val"}
    # The Visual Decathlon score from its definition (Rebuffi et al. 2017): per domain 1000 / Emax^2 *
    # max(0, Emax - error)^2, Emax twice the error of their ImageNet baseline (svhn 96.55, gtsrb 97.53 top-1).
    e_max = {"svhn": 2 * (100 - 96.55), "gtsrb": 2 * (100 - 97.53)}
    expected = sum(1000 / e_max[d] ** 2 * max(0.0, e_max[d] - (100 - r["top1"])) ** 2 for d, r in results["domains"].items())
    assert results["decathlon_score"] == pytest.approx(expected, abs=0.05)  # from the rounded top-1 in results.json
    assert "decathlon" in (tmp_path / "run" / "report.md").read_text().lower()


def test_dry_run_times_each_stage_and_writes_nothing(tiny_cfg, tmp_path, capsys):
    from mpnas.cli import main
    from mpnas.config import dump_yaml
    from mpnas.pipeline import plan_run

    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(dump_yaml(tiny_cfg))
    assert main(["run", "--config", str(cfg_file), "--budget", "quick", "--dry-run", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "search, RL" in out and "train" in out and "total" in out
    assert not (tmp_path / "x").exists()  # a dry run writes nothing
    plan = plan_run(tiny_cfg, repeats=2)
    rows = {r["stage"]: r for r in plan["rows"]}
    warm = round(tiny_cfg.search.rl_start * tiny_cfg.search.steps)
    assert rows["search, RL"]["count"] + rows.get("search, warm-up", {"count": 0})["count"] == tiny_cfg.search.steps
    assert rows.get("search, warm-up", {"count": 0})["count"] == warm
    assert rows["train"]["count"] == tiny_cfg.train.steps and rows["validation passes"]["count"] == 2  # 8 steps, every 4
    assert all(r["seconds_each"] > 0 for r in plan["rows"])


def test_dry_run_extrapolates_each_stage_to_the_budget(tiny_cfg, monkeypatch):
    """With step times fixed, every row and the total are known in advance."""
    from mpnas import pipeline

    monkeypatch.setattr(pipeline, "time_search_steps", lambda cfg, domains, space, repeats: {
        "steps": 10, "warmup_steps": 4, "warmup_s_per_step": 0.5, "rl_s_per_step": 0.25})
    monkeypatch.setattr(pipeline, "time_train_steps", lambda cfg, domains, arch, repeats: {
        "steps": 8, "s_per_step": 0.125, "evals": 2, "s_per_eval": 3.0})
    plan = pipeline.plan_run(tiny_cfg, repeats=1)
    assert [(r["stage"], r["count"], r["seconds"]) for r in plan["rows"]] == [
        ("search, warm-up", 4, 2.0), ("search, RL", 6, 1.5), ("train", 8, 1.0), ("validation passes", 2, 6.0)]
    assert plan["total_s"] == 10.5
