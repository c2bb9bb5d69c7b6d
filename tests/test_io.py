"""Files mpnas writes: the mode a plain open() gives under the umask, and unwritable places as one error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mpnas.errors import MpnasError
from mpnas.io import append_jsonl, atomic_write_text, check_writable, make_dir, make_temp_dir, write_json


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    before = os.umask(0o022)
    os.umask(before)
    yield lambda m: os.umask(m)
    os.umask(before)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_atomic_writes_get_a_plain_opens_mode(tmp_path, umask, mask):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    write_json(tmp_path / "b.json", {"k": 1})
    append_jsonl(tmp_path / "c.jsonl", {"k": 1})
    with open(tmp_path / "plain.txt", "w") as fh:  # what every file above must match
        fh.write("x")
    expected = 0o666 & ~mask
    assert _mode(tmp_path / "plain.txt") == expected
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {n: expected for n in ("a.txt", "b.json", "c.jsonl", "plain.txt")}
    assert _mode(make_temp_dir(tmp_path, ".entry-")) == 0o777 & ~mask  # cache entries: not mkdtemp's 0700


def test_an_existing_file_in_the_way_of_a_folder_is_one_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(MpnasError, match=r"cannot write .*f: exists and is not a directory"):
        make_dir(tmp_path / "f")
    with pytest.raises(MpnasError, match=r"cannot write .*/f: exists and is not a directory"):
        write_json(tmp_path / "f" / "x.json", {})
    (tmp_path / "d").mkdir()
    with pytest.raises(MpnasError, match=r"cannot write .*d: it is a directory"):
        atomic_write_text(tmp_path / "d", "x")


def test_a_read_only_folder_is_one_error_not_a_permission_traceback(tmp_path, monkeypatch):
    """Tests may run as root, whom chmod does not stop, so the refusal of a read-only folder is simulated where
    the system would raise it: creating a file in it."""
    real_open = os.open
    locked = tmp_path / "ro"
    locked.mkdir()

    def deny(path, flags, mode=0o777, **kw):
        if Path(path).parent == locked and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(MpnasError, match=r"cannot write .*ro/model.json: Permission denied"):
        write_json(locked / "model.json", {})
    with pytest.raises(MpnasError, match=r"cannot write .*ro: Permission denied"):
        check_writable(locked)
    assert list(locked.iterdir()) == []  # no temporary file left behind
