"""Files a run writes: every write is atomic (temp file + rename), so nothing already written is lost.

Under torchrun every rank holds the same results (`mpnas.distributed`) and only rank 0 writes them: the writes
here do nothing on the other ranks, which keeps every writer in the package (results, weights, checkpoints,
metrics, reports) from racing on the same file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mpnas.distributed import world
from mpnas.errors import MpnasError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    if not world().is_main:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read JSON, turning a missing file or a syntax error into one message that names the file."""
    path = Path(path)
    if not path.is_file():
        raise MpnasError(f"{what} {path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MpnasError(f"{what} {path}: broken JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise MpnasError(f"{what} {path}: not UTF-8 text") from None


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line; a line is small, so a crash loses at most the line being written."""
    if not world().is_main:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut short by a crash is the only way to get here; what came before stays valid.
                break
    return rows
