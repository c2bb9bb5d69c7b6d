"""Reading a running `mpnas` process's metrics.jsonl from a test (shared by the resume and torchrun tests)."""

from __future__ import annotations

import json
from pathlib import Path


def logged(run: Path, stage: str, step: int) -> bool:
    """Whether metrics.jsonl has a `stage` row at `step` or later: a kill then lands after a checkpoint and after
    rows logged since it, which a resume must not log twice. A row being written is skipped."""
    f = run / "metrics.jsonl"
    if not f.is_file():
        return False
    for line in f.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("stage") == stage and row.get("step", -1) >= step:
            return True
    return False
