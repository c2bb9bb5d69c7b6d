"""Files a run writes: every write is atomic (temp file + rename), so nothing already written is lost.

Temporary files and folders are created with the mode a plain `open()` or `mkdir()` would give (0666 or 0777
less the umask), not `tempfile`'s 0600 / 0700: the rename keeps the temporary file's mode, and a run directory
or data cache shared with others must stay readable by them. A file or folder that cannot be written (a
read-only folder, an existing file where a folder belongs, a full disk) is a user's problem, not mpnas's, so it
ends as one `MpnasError` naming the path.

Under torchrun every rank holds the same results (`mpnas.distributed`) and only rank 0 writes them: the writes
here do nothing on the other ranks, which keeps every writer in the package (results, weights, checkpoints,
metrics, reports) from racing on the same file.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from mpnas.distributed import world
from mpnas.errors import MpnasError


def cannot_write(path: str | Path, exc: OSError) -> MpnasError:
    """The one-line error for a path that cannot be written, with the system's reason."""
    return MpnasError(f"cannot write {path}: {exc.strerror or exc}")


def make_dir(path: str | Path) -> Path:
    """`mkdir -p`, with an existing file in the way or a read-only parent as one error naming the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise MpnasError(f"cannot write {path}: exists and is not a directory") from None
    except OSError as exc:
        raise cannot_write(path, exc) from None
    return path


def _unique(parent: Path, prefix: str, suffix: str, create: Any) -> Path:
    """Create a new entry `parent/prefix<random>suffix` with `create(path)`, retrying on a name already taken."""
    for _ in range(100):
        candidate = parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            create(candidate)
            return candidate
        except FileExistsError:
            continue
    raise MpnasError(f"cannot write in {parent}: no free temporary name")


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A new folder in `parent` with a plain `mkdir`'s mode (0777 less the umask; `tempfile.mkdtemp` gives 0700)."""
    parent = make_dir(parent)
    try:
        return _unique(parent, prefix, "", lambda p: os.mkdir(p, 0o777))
    except OSError as exc:
        raise cannot_write(parent, exc) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    if not world().is_main:
        return
    path = Path(path)
    make_dir(path.parent)
    fds: list[int] = []

    def create(candidate: Path) -> None:
        # O_EXCL as mkstemp does, but mode 0666: the kernel applies the umask as for any open(path, "w").
        fds.append(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))

    try:
        tmp = _unique(path.parent, f".{path.name}.", ".tmp", create)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        with os.fdopen(fds[0], "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, IsADirectoryError) or path.is_dir():
            raise MpnasError(f"cannot write {path}: it is a directory") from None
        raise cannot_write(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    make_dir(path.parent)
    try:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise cannot_write(path, exc) from None


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


def check_writable(folder: str | Path) -> Path:
    """Create `folder` and prove a file can be written in it (then removed), so that a command fails before its
    work, not after it, on a read-only or full location."""
    folder = make_dir(folder)
    fds: list[int] = []
    try:
        probe = _unique(folder, ".mpnas-write-check.", ".tmp",
                        lambda p: fds.append(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
    except OSError as exc:
        raise cannot_write(folder, exc) from None
    os.close(fds[0])
    probe.unlink()
    return folder
