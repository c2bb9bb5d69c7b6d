"""What a command does with its run directory: a finished run is never overwritten (unless --overwrite, which
removes the old outputs first), one `--resume` command starts or continues a run, every check runs before the
first file is written, and the files get a plain open()'s mode."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from mpnas.cli import main
from mpnas.config import dump_yaml


@pytest.fixture(scope="module")
def cfg_file(tiny_cfg, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run-dir-cfg") / "tiny.yaml"
    path.write_text(dump_yaml(tiny_cfg))
    return path


def _opts(cfg_file: Path, *extra: str) -> list[str]:
    return ["--budget", "quick", "--config", str(cfg_file), "--quiet", *extra]


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _one_error_line(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and err.startswith("mpnas: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("stage", ["run", "search", "train"])
def test_a_finished_run_is_refused_by_every_stage_and_left_alone(stage, trained_run, cfg_file, tmp_path, capsys):
    run = _copy(trained_run, tmp_path)
    before = _snapshot(run)
    argv = {"run": ["run", "--out", str(run), *_opts(cfg_file)], "search": ["search", "--out", str(run), *_opts(cfg_file)],
            "train": ["train", "--run", str(run), "--quiet"]}[stage]
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, f"{run} holds a finished", "--overwrite")
    assert _snapshot(run) == before  # not a byte changed, not even log.txt


def test_run_overwrite_replaces_the_run_with_the_umasks_modes(trained_run, cfg_file, tmp_path, capsys):
    run = _copy(trained_run, tmp_path)
    old_rows = (run / "metrics.jsonl").read_text().splitlines()
    previous = os.umask(0o027)
    try:
        assert main(["run", "--out", str(run), *_opts(cfg_file), "--overwrite"]) == 0
    finally:
        os.umask(previous)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len(old_rows) and rows == old_rows  # the same run again, its metrics not appended to the old
    a, b = (json.loads((r / "results.json").read_text()) for r in (run, trained_run))
    assert a["domains"] == b["domains"]
    log = (run / "log.txt").read_text()
    assert log.count("$ mpnas ") == 1 and "--overwrite" in log and "mean " in log  # a new log, with the results
    modes = {str(p.relative_to(run)): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*")}
    expected = {k: (0o750 if (run / k).is_dir() else 0o640) for k in modes}
    assert modes == expected  # config.yaml, weights, results, report were 0600, a temporary file's mode
    for name in ("config.yaml", "model.safetensors", "results.json", "report.md", "log.txt", "metrics.jsonl"):
        assert name in modes


def test_search_overwrite_removes_every_later_output(trained_run, cfg_file, tmp_path):
    run = _copy(trained_run, tmp_path)
    search_rows = [r for r in _rows(run) if not r["stage"].startswith("train")]
    assert main(["search", "--out", str(run), *_opts(cfg_file), "--overwrite"]) == 0
    assert _rows(run) == search_rows  # the search's rows once, and no training rows of the old run
    for gone in ("model.safetensors", "results.json", "report.md", "train_state.pt", "figures"):
        assert not (run / gone).exists(), gone
    assert set(json.loads((run / "stages.json").read_text())) == {"search"}


def test_train_overwrite_keeps_the_search_and_retrains_once(trained_run, tmp_path):
    run = _copy(trained_run, tmp_path)
    rows = _rows(run)
    assert main(["train", "--run", str(run), "--quiet", "--overwrite"]) == 0
    assert _rows(run) == rows  # search rows kept, training rows replaced by the same training's, not appended
    assert not (run / "results.json").exists() and not (run / "report.md").exists()  # they described the old model
    assert set(json.loads((run / "stages.json").read_text())) == {"search", "train"}
    assert main(["evaluate", "--run", str(run), "--threads", "1", "--device", "cpu"]) == 0
    assert json.loads((run / "results.json").read_text())["domains"] == json.loads(
        (trained_run / "results.json").read_text())["domains"]


def test_one_resume_command_starts_then_continues_and_refuses_other_options(cfg_file, tmp_path, capsys):
    run = tmp_path / "new"
    argv = ["run", "--out", str(run), *_opts(cfg_file), "--resume"]
    assert main(argv) == 0  # no run there yet: --resume starts one
    results = (run / "results.json").read_bytes()
    assert main([*argv, "--threads", "1"]) == 0  # the same command again: finished, nothing redone
    assert (run / "results.json").read_bytes() == results
    assert "finished earlier" in capsys.readouterr().err
    assert main([*argv, "--set", "train.steps=9", "--set", "seed=4"]) == 2
    _one_error_line(capsys.readouterr().err, "train.steps (run: 8, given: 9)", "seed (run: 0, given: 4)", "--overwrite")
    assert main(["run", "--out", str(run), "--resume"]) == 0  # no options: the run's own config
    assert main(["train", "--run", str(run), "--resume", "--threads", "1"]) == 0  # was: unrecognized arguments
    log = (run / "log.txt").read_text()
    assert log.count("$ mpnas run") == 3 and "$ mpnas train" in log and "\r" not in log


def test_a_folder_a_failed_command_left_is_usable_by_the_corrected_one(cfg_file, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["search", "--out", str(run), *_opts(cfg_file), "--set", "search.optim.lr=1e30"]) == 2
    assert "not finite" in capsys.readouterr().err and (run / "config.yaml").is_file()
    assert main(["search", "--out", str(run), *_opts(cfg_file)]) == 0  # no checkpoint there: no run to protect
    steps = [r["step"] for r in _rows(run) if r["stage"] == "search" and r["domain"] == "bars"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # the failed attempt's step-0 rows are gone


@pytest.mark.parametrize("case", ["resolution", "device", "device_index", "domains", "threads"])
def test_every_check_runs_before_the_first_file_is_written(case, cfg_file, tmp_path, capsys):
    extra, needle = {
        "resolution": (["--resolution", "5000"], "resolution 5000"),
        "device": (["--device", "cuda" if not torch.cuda.is_available() else "cuda:99"], "config device"),
        "device_index": (["--device", "cuda:99"], "config device: 'cuda:99'"),
        "domains": (["--domains", "nope"], "unknown domain 'nope'"),
        "threads": (["--threads", "0"], "threads must be >= 1"),
    }[case]
    for stage in ("run", "search"):
        out = tmp_path / stage
        assert main([stage, "--out", str(out), *_opts(cfg_file), *extra]) == 2
        _one_error_line(capsys.readouterr().err, needle)
        assert not out.exists()  # nothing written: no folder that a corrected command would find in its way


def test_overwrite_with_a_bad_option_keeps_the_old_run(trained_run, cfg_file, tmp_path, capsys):
    run = _copy(trained_run, tmp_path)
    before = _snapshot(run)
    assert main(["run", "--out", str(run), *_opts(cfg_file), "--overwrite", "--resolution", "5000"]) == 2
    _one_error_line(capsys.readouterr().err, "resolution 5000")
    assert _snapshot(run) == before
    assert main(["run", "--out", str(run), *_opts(cfg_file), "--overwrite", "--resume"]) == 2
    _one_error_line(capsys.readouterr().err, "give one of them")
    assert main(["train", "--run", str(run), "--set", "train.steps=3", "--quiet"]) == 2  # finished: not even config.yaml
    assert _snapshot(run) == before


@pytest.mark.parametrize("stage", ["search", "train"])
def test_a_kill_after_a_stages_final_checkpoint_resumes(stage, trained_run, tmp_path, capsys):
    """Killed after a stage wrote its final state but before it was marked finished: --resume keeps the stage
    (its checkpoint says it finished) instead of failing on "the stage it holds has finished"."""
    run = _copy(trained_run, tmp_path)
    stages = json.loads((run / "stages.json").read_text())
    later = ["search", "train", "evaluate", "report"][["search", "train", "evaluate", "report"].index(stage):]
    (run / "stages.json").write_text(json.dumps({k: v for k, v in stages.items() if k not in later}))
    for name in ("results.json", "report.md") + (("model.safetensors", "train_state.pt", "domains.json")
                                                 if stage == "search" else ()):
        (run / name).unlink()
    assert main(["run", "--out", str(run), "--resume", "--quiet"]) == 0
    assert f"{stage}: finished earlier" in capsys.readouterr().err
    assert json.loads((run / "results.json").read_text())["domains"] == json.loads(
        (trained_run / "results.json").read_text())["domains"]
    assert (run / "metrics.jsonl").read_text() == (trained_run / "metrics.jsonl").read_text()


def test_evaluate_with_other_data_than_the_architecture_is_one_line(trained_run, capsys):
    assert main(["evaluate", "--run", str(trained_run), "--set", "data.domains=[bars]"]) == 2
    _one_error_line(capsys.readouterr().err, "architecture domains ['bars', 'colours'] differ from the data's ['bars']")
    assert "  domains: null\n" in (trained_run / "config.yaml").read_text()  # not rewritten with the refused --set
