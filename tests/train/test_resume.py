"""Checkpoint and resume: a run killed at any point and resumed equals an uninterrupted run, bit for bit; a
checkpoint of another run, or a broken one, is refused by name; an unfinished run is never overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mpnas.config import apply_overrides, dump_yaml
from mpnas.errors import MpnasError
from mpnas.train.checkpoint import Checkpointer, fingerprint
from runlog import logged

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def resume_cfg(tiny_cfg, tmp_path_factory) -> Path:
    """Long enough stages (30 search and 40 training steps) for a kill to land inside each; a checkpoint every
    3 steps, so a resume replays the steps since the last one."""
    cfg = apply_overrides(tiny_cfg, ["search.steps=30", "train.steps=40", "train.eval_every=10", "checkpoint_every=3"])
    path = tmp_path_factory.mktemp("resume-cfg") / "cfg.yaml"
    path.write_text(dump_yaml(cfg))
    return path


def _mpnas(*args: str) -> list[str]:
    return [sys.executable, "-m", "mpnas", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _stages(run: Path) -> dict:
    f = run / "stages.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _run_until(cfg: Path, out: Path, ready, sig: int = signal.SIGKILL) -> subprocess.Popen:
    """Start `mpnas run` and send `sig` as soon as `ready(out)` holds."""
    proc = subprocess.Popen(_mpnas("run", "--config", str(cfg), "--budget", "quick", "--out", str(out), "--quiet"),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not ready(out):
        assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read().decode()[-500:]}"
        assert time.time() < deadline
        time.sleep(0.002)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc


def _comparable(run: Path) -> dict:
    arch = json.loads((run / "architecture.json").read_text())
    arch["meta"].pop("wall_time_s")
    results = json.loads((run / "results.json").read_text())
    results.pop("wall_time_s")
    return {"arch": arch, "results": results, "metrics": (run / "metrics.jsonl").read_text().splitlines(),
            "weights": load_file(run / "model.safetensors")}


def _assert_same(a: dict, b: dict) -> None:
    assert a["arch"] == b["arch"] and a["results"] == b["results"]
    assert a["metrics"] == b["metrics"]  # the replayed steps are logged once
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k


def _mid_search(run: Path) -> bool:
    return logged(run, "search", 10) and "search" not in _stages(run)


def _between_stages(run: Path) -> bool:
    return "search" in _stages(run)


def _mid_train(run: Path) -> bool:
    return logged(run, "train", 14) and "train" not in _stages(run)


@pytest.fixture(scope="module")
def reference(resume_cfg, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("resume-ref") / "run"
    subprocess.run(_mpnas("run", "--config", str(resume_cfg), "--budget", "quick", "--out", str(out), "--quiet"),
                   env=_env(), check=True, capture_output=True)
    return _comparable(out)


# Kills inside the search and inside training: test_the_same_resume_command_killed_twice_then_finished_is_bit_identical.
@pytest.mark.parametrize("point", [_between_stages], ids=["between"])
def test_sigkill_then_resume_is_bit_identical(point, resume_cfg, reference, tmp_path):
    out = tmp_path / "run"
    _run_until(resume_cfg, out, point)
    assert not (out / "results.json").is_file()
    # Without --resume the unfinished run is refused and left as it is.
    before = sorted(p.name for p in out.iterdir())
    refused = subprocess.run(_mpnas("run", "--out", str(out), "--config", str(resume_cfg), "--budget", "quick", "--quiet"),
                             env=_env(), capture_output=True, text=True)
    assert refused.returncode == 2 and "unfinished run" in refused.stderr and "--resume" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and sorted(p.name for p in out.iterdir()) == before
    subprocess.run(_mpnas("run", "--out", str(out), "--resume", "--quiet"), env=_env(), check=True, capture_output=True)
    _assert_same(_comparable(out), reference)


def test_the_same_resume_command_killed_twice_then_finished_is_bit_identical(resume_cfg, reference, tmp_path):
    """One command line starts the run and continues it (as a requeued job or torchrun --max-restarts would run
    it): killed in the search, then in training, then left to finish."""
    out = tmp_path / "run"
    command = _mpnas("run", "--config", str(resume_cfg), "--budget", "quick", "--out", str(out), "--quiet", "--resume")
    for point in (_mid_search, _mid_train):
        proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while not point(out):
            assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read().decode()[-500:]}"
            assert time.time() < deadline
            time.sleep(0.002)
        proc.kill()
        proc.wait(timeout=120)
    assert not (out / "results.json").is_file()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mpnas: search: finished earlier" in done.stderr and "mpnas: train: resuming after step" in done.stderr
    _assert_same(_comparable(out), reference)
    log = (out / "log.txt").read_text()
    assert log.count("$ mpnas run") == 3 and "search: resuming after step" in log and "train: resuming after step" in log


def test_gradient_single_shot_run_resumes_bit_identically(tiny_cfg, tmp_path):
    """The gradient strategy's state (logits, their Adam, the Gumbel draws' generator, the REINFORCE baselines of
    a warm start from RL and of the op choices) and the single-shot fine-tuning (copied supernet, recalibration,
    the step -1 validation) resume bit for bit."""
    cfg = apply_overrides(tiny_cfg, ["search.steps=30", "search.strategy=gradient", "search.gradient_ops=reinforce",
                                     "search.gradient_rl_fraction=0.3", "train.from_supernet=true",
                                     "train.finetune_steps=20", "train.eval_every=10", "train.recalibrate_batches=2",
                                     "checkpoint_every=3"])
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_yaml(cfg))
    subprocess.run(_mpnas("run", "--config", str(path), "--budget", "quick", "--out", str(tmp_path / "ref"), "--quiet"),
                   env=_env(), check=True, capture_output=True)
    reference = _comparable(tmp_path / "ref")
    for point in (_mid_search, _mid_train):
        out = tmp_path / point.__name__
        _run_until(path, out, point)
        assert not (out / "results.json").is_file()
        subprocess.run(_mpnas("run", "--out", str(out), "--resume", "--quiet"), env=_env(), check=True, capture_output=True)
        _assert_same(_comparable(out), reference)


def test_slimmable_training_resumes_bit_identically(tiny_cfg, tmp_path):
    """The sandwich draws come from (seed, step), so a slimmable run killed mid-training and resumed equals an
    uninterrupted one: weights, metrics, results and the measured table after training."""
    cfg = apply_overrides(tiny_cfg, ["search.steps=6", "train.steps=30", "train.eval_every=10", "train.slimmable=true",
                                     "train.slim_profile=2", "train.recalibrate_batches=2", "checkpoint_every=3"])
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_yaml(cfg))
    subprocess.run(_mpnas("run", "--config", str(path), "--budget", "quick", "--out", str(tmp_path / "ref"), "--quiet"),
                   env=_env(), check=True, capture_output=True)

    def table(run: Path) -> dict:
        t = json.loads((run / "slim_table.json").read_text())
        return {k: v for k, v in t.items() if k not in ("seconds", "latency_ms")}  # timings

    out = tmp_path / "killed"
    _run_until(path, out, _mid_train)
    assert not (out / "results.json").is_file()
    subprocess.run(_mpnas("run", "--out", str(out), "--resume", "--quiet"), env=_env(), check=True, capture_output=True)
    _assert_same(_comparable(out), _comparable(tmp_path / "ref"))
    assert table(out) == table(tmp_path / "ref")


def test_sigterm_writes_a_checkpoint_and_exits_then_resumes(resume_cfg, reference, tmp_path):
    out = tmp_path / "run"
    proc = _run_until(resume_cfg, out, _mid_train, signal.SIGTERM)
    err = proc.stderr.read().decode()
    assert proc.returncode == 130 and "continue with --resume" in err, err
    ckpt = torch.load(out / "train_state.pt", weights_only=True)
    assert not ckpt["finished"] and ckpt["step"] > 0
    subprocess.run(_mpnas("run", "--out", str(out), "--resume", "--quiet"), env=_env(), check=True, capture_output=True)
    _assert_same(_comparable(out), reference)


def _state(value: float) -> dict:
    return {"w": torch.full((3,), value)}


def test_a_kill_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path / "s.pt", "train", 1, "abc")
    ckpt.save(5, _state(1.0))

    def killed(src, dst):  # the process dies after writing the temporary file, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(6, _state(2.0))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary file left behind
    loaded = {}
    assert Checkpointer(tmp_path / "s.pt", "train", 1, "abc").resume(loaded.update) == 5
    assert torch.equal(loaded["w"], torch.ones(3))


def test_foreign_or_broken_checkpoints_are_refused_by_name(tmp_path):
    Checkpointer(tmp_path / "s.pt", "train", 1, "abc").save(5, _state(1.0))
    with pytest.raises(MpnasError, match=r"s\.pt: belongs to another run"):
        Checkpointer(tmp_path / "s.pt", "train", 1, "xyz").resume(lambda s: None)
    with pytest.raises(MpnasError, match=r"s\.pt: not a search checkpoint"):
        Checkpointer(tmp_path / "s.pt", "search", 1, "abc").resume(lambda s: None)
    (tmp_path / "b.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MpnasError, match=r"b\.pt: cannot be read"):
        Checkpointer(tmp_path / "b.pt", "train", 1, "abc").resume(lambda s: None)
    Checkpointer(tmp_path / "f.pt", "train", 1, "abc").save(9, _state(1.0), finished=True)
    with pytest.raises(MpnasError, match="has finished"):
        Checkpointer(tmp_path / "f.pt", "train", 1, "abc").resume(lambda s: None)


def test_fingerprint_ignores_speed_settings_only(tiny_cfg):
    from mpnas.config import to_dict

    base = fingerprint(to_dict(tiny_cfg))
    assert fingerprint(to_dict(apply_overrides(tiny_cfg, ["threads=2", "checkpoint_every=7", "device=cpu"]))) == base
    assert fingerprint(to_dict(apply_overrides(tiny_cfg, ["train.steps=9"]))) != base
    assert fingerprint(to_dict(tiny_cfg), arch={"a": 1}) != base


def test_bench_resume_continues_a_killed_multi_stage_method(resume_cfg, tmp_path):
    """SD-NAS runs a search and a training per domain: killed inside the second domain's training, the bench is
    refused without --resume and, with it, ends with the figures of an uninterrupted bench."""
    def bench(out: Path, *extra: str) -> list[str]:
        return _mpnas("bench", "--config", str(resume_cfg), "--budget", "quick", "--methods", "sd-nas", "--seeds", "1",
                      "--quiet", "--out", str(out), *extra)

    ref, out = tmp_path / "ref", tmp_path / "out"
    subprocess.run(bench(ref), env=_env(), check=True, capture_output=True)
    proc = subprocess.Popen(bench(out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sub = out / "sd-nas" / "seed0" / "domains"
    while not any(_mid_train(d) for d in sorted(sub.glob("*"))[1:]):
        assert proc.poll() is None, proc.stderr.read().decode()[-500:]
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    refused = subprocess.run(bench(out), env=_env(), capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    subprocess.run(bench(out, "--resume"), env=_env(), check=True, capture_output=True)
    log = (out / "log.txt").read_text()  # the killed, the refused and the resumed command's consoles
    assert log.count("$ mpnas bench") == 3 and "bench: resuming sd-nas seed 0" in log and "\r" not in log
    for d in sorted(p.name for p in (ref / "sd-nas" / "seed0" / "domains").iterdir()):
        _assert_same(_comparable(out / "sd-nas" / "seed0" / "domains" / d), _comparable(ref / "sd-nas" / "seed0" / "domains" / d))
    a, b = (json.loads((r / "sd-nas" / "seed0" / "results.json").read_text()) for r in (out, ref))
    a.pop("wall_time_s", None)
    b.pop("wall_time_s", None)
    assert a == b
