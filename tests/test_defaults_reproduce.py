"""A run that sets none of the search's newer options reproduces the committed figures of the code before them.

`tests/golden/tiny_run.json` was written by the same tiny run at commit 35c2116, before add-domain's changes to the
search loop and trainer and before issue 27's levers (fair sampling, the sandwich rule, the likelihood Q): every
option is off by default, so the derived paths, the top-1, every logged search reward and training loss (to 3
decimals) must be the same."""

from __future__ import annotations

import json
from pathlib import Path

from mpnas.cli import main
from mpnas.config import dump_yaml

GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny_run.json"


def test_the_defaults_reproduce_the_committed_tiny_run(tiny_cfg, tmp_path):
    (tmp_path / "cfg.yaml").write_text(dump_yaml(tiny_cfg))
    out = tmp_path / "run"
    assert main(["run", "--config", str(tmp_path / "cfg.yaml"), "--budget", "quick", "--out", str(out), "--quiet",
                 "--set", "search.steps=20", "--set", "train.steps=20"]) == 0
    arch = json.loads((out / "architecture.json").read_text())
    results = json.loads((out / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    observed = {"paths": {k: v for k, v in arch.items() if k not in ("meta", "space")},
                "top1": {d: r["top1"] for d, r in results["domains"].items()},
                "search_rewards": [round(r["reward"], 3) for r in rows if r.get("stage") == "search"],
                "train_loss": [round(r["loss"], 3) for r in rows if r.get("stage") == "train" and "loss" in r]}
    assert observed == json.loads(GOLDEN.read_text())
