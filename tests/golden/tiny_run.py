"""The tiny run behind `tiny_run.json`: `python tests/golden/tiny_run.py OUT.json` with the code under test first on
PYTHONPATH (the test runs it with this checkout's; the JSON was written with commit 35c2116's `src`).

The run pins the CPU code paths before torch loads: ATen's kernels at their portable level, oneDNN at SSE4.1,
MKL in its conditional-reproducibility mode. Without the pins a run on an AVX2 machine and one on an AVX-512
machine differ in the last bits, one validation image's argmax flips at a near tie, and the search takes another
path: the figures would describe a machine, not the code."""

from __future__ import annotations

import os

os.environ.update({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE",
                   "OMP_NUM_THREADS": "1"})

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import write_tiny_data  # noqa: E402  (the tiny data of every test)

from mpnas.cli import main  # noqa: E402
from mpnas.config import dump_yaml, resolve_config  # noqa: E402

OVERRIDES = ["search.steps=6", "search.batch_size=8", "search.val_batch_size=8", "search.log_every=2", "train.steps=8",
             "train.batch_size=8", "train.eval_every=4", "train.log_every=2", "space.layers_per_block=2",
             "baselines.mrp_trials=2", "threads=1"]  # conftest's tiny_cfg


def observe() -> dict:
    tmp = Path(tempfile.mkdtemp())
    root = write_tiny_data(tmp / "data")  # conftest's tiny_root
    cfg = resolve_config("quick", overrides=OVERRIDES, **{"data.spec": f"folder:{root}", "data.resolution": 16,
                                                          "data.cache_dir": str(tmp / "cache")})
    (tmp / "cfg.yaml").write_text(dump_yaml(cfg))
    out = tmp / "run"
    assert main(["run", "--config", str(tmp / "cfg.yaml"), "--budget", "quick", "--out", str(out), "--quiet",
                 "--set", "search.steps=20", "--set", "train.steps=20"]) == 0
    arch = json.loads((out / "architecture.json").read_text())
    results = json.loads((out / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"paths": {k: v for k, v in arch.items() if k not in ("meta", "space")},
            "top1": {d: r["top1"] for d, r in results["domains"].items()},
            "search_rewards": [round(r["reward"], 3) for r in rows if r.get("stage") == "search"],
            "train_loss": [round(r["loss"], 3) for r in rows if r.get("stage") == "train" and "loss" in r]}


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(observe(), indent=1, sort_keys=True) + "\n")
