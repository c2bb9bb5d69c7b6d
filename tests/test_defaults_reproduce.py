"""A run that sets none of the search's newer options reproduces the committed figures of the code before them.

`tests/golden/tiny_run.json` was written by `tests/golden/tiny_run.py` with the `src` of commit 35c2116, before
add-domain's changes to the search loop and trainer, before issue 27's levers (fair sampling, the sandwich rule,
the likelihood Q) and before the gradient strategy's new options: every option is off by default, so the derived
paths, the top-1, every logged search reward and training loss (to 3 decimals) must be the same. The run pins the
CPU code paths (see the script): the first form of this test, unpinned, held on the AVX-512 machine that wrote
its figures and failed on an AVX2 one, where one validation image flipped at step 12."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"
SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_defaults_reproduce_the_committed_tiny_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, str(GOLDEN / "tiny_run.py"), str(tmp_path / "observed.json")], env=env, check=True,
                   capture_output=True, cwd=tmp_path)
    observed = json.loads((tmp_path / "observed.json").read_text())
    assert observed == json.loads((GOLDEN / "tiny_run.json").read_text())
