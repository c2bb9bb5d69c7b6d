"""torchrun on the CPU (gloo): two processes stay identical, equal one process with the same global batch up to
rounding, write each file once, and resume after a signal that reached only one of them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mpnas.config import apply_overrides, dump_yaml
from runlog import logged

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _losses(run: Path, stage: str) -> dict[tuple[int, str], float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(r["step"], r["domain"]): r["loss"] for r in rows if r["stage"] == stage}


@pytest.fixture(scope="module")
def dist_cfg(tiny_cfg, tmp_path_factory) -> Path:
    """Global batches of 8 images per domain (4 per process), batch norm over the global batch, no dropout (each
    process would draw its own masks), evaluation in batches of 4 so that both processes take part."""
    cfg = apply_overrides(tiny_cfg, ["search.steps=8", "train.steps=10", "train.dropout=0", "sync_bn=true",
                                     "train.eval_batch_size=4", "checkpoint_every=2"])
    path = tmp_path_factory.mktemp("dist-cfg") / "cfg.yaml"
    path.write_text(dump_yaml(cfg))
    return path


@pytest.fixture(scope="module")
def two_process_run(dist_cfg, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "run"
    done = _run(_torchrun("-m", "mpnas", "run", "--config", str(dist_cfg), "--budget", "quick", "--out", str(out), "--quiet"))
    assert done.stdout.count("mean ") == 1  # the results are printed once, by rank 0
    return out


def test_two_processes_equal_one_process_and_write_once(two_process_run, dist_cfg, tmp_path):
    one = tmp_path / "one"
    _run([sys.executable, "-m", "mpnas", "run", "--config", str(dist_cfg), "--budget", "quick", "--out", str(one), "--quiet"])
    two = two_process_run
    assert json.loads((two / "results.json").read_text())["world_size"] == 2
    assert json.loads((one / "results.json").read_text())["world_size"] == 1
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["stage"], r.get("step"), r.get("domain"), r.get("controller")) for r in rows]
    assert len(keys) == len(set(keys)) and len(rows) == len((one / "metrics.jsonl").read_text().splitlines())
    # The first search steps: same paths, same losses up to rounding (AdamW then amplifies the rounding).
    s1, s2 = _losses(one, "search"), _losses(two, "search")
    for key in [k for k in s1 if k[0] <= 2]:
        assert s2[key] == pytest.approx(s1[key], rel=2e-3), key
    # Training the same architecture, one process against two.
    same = tmp_path / "same-arch"
    same.mkdir()
    for f in ("config.yaml", "architecture.json"):
        shutil.copy(one / f, same / f)
    _run(_torchrun("-m", "mpnas", "train", "--run-dir", str(same), "--quiet"))
    t1, t2 = _losses(one, "train"), _losses(same, "train")
    assert t1.keys() == t2.keys()
    for key in [k for k in t1 if k[0] <= 2]:
        assert t2[key] == pytest.approx(t1[key], rel=1e-2), key


def test_ranks_hold_identical_state(dist_cfg, tmp_path):
    """With batch norm per shard (the default), every controller, supernet and merged-model tensor is still
    bit-identical on both ranks: same samples, rewards summed over ranks, averaged gradients and statistics."""
    cfg = tmp_path / "local-bn.yaml"
    cfg.write_text(dist_cfg.read_text().replace("sync_bn: true", "sync_bn: false"))
    assert "sync_bn: false" in cfg.read_text()
    _run(_torchrun(str(HERE / "dist_sync_worker.py"), str(cfg), str(tmp_path)))
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a["domains"] == b["domains"]
    for part in ("supernet", "model"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for g in a["controllers"]:
        for k, v in a["controllers"][g].items():
            assert torch.equal(v, b["controllers"][g][k]), (g, k)


def _rank_pids(agent: int) -> dict[int, int]:
    """The worker processes torchrun started, by rank (read from their environments)."""
    out = {}
    for child in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
        env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        rank = [e for e in env if e.startswith(b"RANK=")]
        if rank:
            out[int(rank[0][5:])] = int(child)
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker processes through /proc")
def test_sigterm_to_one_rank_stops_both_then_resume_is_bit_identical(two_process_run, dist_cfg, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_torchrun("-m", "mpnas", "run", "--config", str(dist_cfg), "--budget", "quick", "--out",
                                      str(out), "--quiet"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not logged(out, "train", 2):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    os.kill(_rank_pids(proc.pid)[1], signal.SIGTERM)  # as a scheduler that reaches one process first
    proc.wait(timeout=120)
    assert proc.returncode != 0
    ckpt = torch.load(out / "train_state.pt", weights_only=True)
    assert not ckpt["finished"] and 0 < ckpt["step"] < 10
    _run(_torchrun("-m", "mpnas", "run", "--out", str(out), "--resume", "--quiet"))
    _assert_same_run(out, two_process_run)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker processes through /proc")
def test_elastic_restart_after_a_killed_worker_equals_an_uninterrupted_run(two_process_run, dist_cfg, tmp_path):
    """torchrun --max-restarts 1 runs one fixed command again after a worker dies: with --resume that command
    starts the run the first time and continues it from its checkpoint the second."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts", "1",
           "-m", "mpnas", "run", "--config", str(dist_cfg), "--budget", "quick", "--out", str(out), "--quiet", "--resume"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not logged(out, "train", 4):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.005)
    os.kill(_rank_pids(proc.pid)[1], signal.SIGKILL)  # a worker dies without writing anything
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "train: resuming after step" in err  # the restarted workers continued, not started over
    _assert_same_run(out, two_process_run)


def _assert_same_run(out, reference):
    """Results, architecture and metrics equal but for wall times, and the weights tensor for tensor."""
    for f in ("results.json", "architecture.json"):
        a, b = json.loads((out / f).read_text()), json.loads((reference / f).read_text())
        for d in (a, b):
            d.pop("wall_time_s", None)
            d.get("meta", {}).pop("wall_time_s", None)
        assert a == b, f
    assert (out / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    wa, wb = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
