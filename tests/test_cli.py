"""The command line as a new user meets it: every mistake one line and exit 2, --version, help with defaults,
and progress that suits a terminal or a log file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from mpnas import __version__
from mpnas.cli import build_parser, main
from mpnas.console import progress


def _one_line(capsys, code: int, *needles: str) -> None:
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2 and err.count("\n") == 1 and err.startswith("mpnas") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_version_bare_command_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"mpnas {__version__}"
    assert main([]) == 0  # was a usage error
    out = capsys.readouterr().out
    assert "usage: mpnas" in out and "run" in out and "evaluate" in out
    assert main(["data"]) == 0 and "list" in capsys.readouterr().out
    helps = {name: build_parser()._subparsers._group_actions[0].choices[name].format_help()
             for name in ("predict", "bench", "export")}
    assert "(default: 3)" in helps["predict"] and "(default: mpnas,sd-nas" in helps["bench"]
    assert "(default: 50)" in helps["export"]  # --latency-repeats


@pytest.mark.parametrize("argv, needles", [
    (["run", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["predict", "--run", "r"], ["required"]),
    (["data", "list", "--resolution", "0"], ["resolution 0"]),  # was quietly 32
    (["run", "--out", "{tmp}/r", "--threads", "1", "--resume", "--overwrite"], ["give one of them"]),
    (["report", "--run", "{tmp}/half"], ["`mpnas evaluate --run {tmp}/half`"]),  # was `mpnas evaluate --out`
])
def test_usage_mistakes_are_one_line(argv, needles, tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "half" / "architecture.json").write_text("{}")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    _one_line(capsys, code, *[n.replace("{tmp}", str(tmp_path)) for n in needles])


def test_broken_yaml_is_one_line_naming_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1\n")
    _one_line(capsys, main(["run", "--config", str(bad), "--out", str(tmp_path / "r")]),
              f"config file {bad}: invalid YAML at line 3 column 1")
    _one_line(capsys, main(["run", "--set", "train.steps=[1", "--out", str(tmp_path / "r")]),
              "override train.steps: cannot parse value '[1': at line 1")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: [\n")
    _one_line(capsys, main(["train", "--run", str(run)]), f"{run / 'config.yaml'}: invalid YAML")
    assert not (tmp_path / "r").exists()


def test_an_existing_file_as_out_is_one_line(trained_run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    for command in (["run", "--budget", "quick"], ["search", "--budget", "quick"]):
        _one_line(capsys, main([*command, "--out", str(taken)]), f"run directory {taken}: exists and is not a directory")
    pytest.importorskip("onnxruntime")
    _one_line(capsys, main(["export", "--run", str(trained_run), "--out", str(taken), "--latency-repeats", "1"]),
              f"cannot write {taken}: exists and is not a directory")  # was FileExistsError


def _deny_creating_files_in(monkeypatch, folder: Path) -> None:
    """What a read-only folder does to a non-root user (tests may run as root, whom chmod does not stop)."""
    real_open = os.open

    def deny(path, flags, mode=0o777, **kw):
        if Path(path).resolve().parent == folder.resolve() and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", deny)


def test_an_unwritable_run_directory_is_one_line(tiny_cfg, tmp_path, capsys, monkeypatch):
    from mpnas.config import dump_yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(dump_yaml(tiny_cfg))
    locked = tmp_path / "ro"
    locked.mkdir()
    _deny_creating_files_in(monkeypatch, locked)
    _one_line(capsys, main(["run", "--budget", "quick", "--config", str(cfg), "--out", str(locked), "--quiet"]),
              f"cannot write {locked / 'config.yaml'}: Permission denied")  # was a PermissionError on a .tmp file
    assert list(locked.iterdir()) == []


def test_an_unwritable_export_folder_is_one_line_before_any_export(trained_run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    locked = tmp_path / "ro"
    locked.mkdir()
    _deny_creating_files_in(monkeypatch, locked)
    _one_line(capsys, main(["export", "--run", str(trained_run), "--out", str(locked), "--latency-repeats", "1"]),
              f"cannot write {locked}: Permission denied")
    assert list(locked.iterdir()) == []


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_plain_lines_every_few_percent_off_a_terminal(monkeypatch):
    log = _Stream(tty=False)
    monkeypatch.setattr("sys.stderr", log)
    with progress(400, "train") as bar:
        for _ in range(400):
            bar.update(1)
            bar.set_postfix(loss="1.000")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 20 <= len(lines) <= 22  # tqdm redrew the line about 190 times in a log
    assert lines[-1].startswith("train: 100% 400/400 steps") and lines[-1].endswith("loss=1.000")
    tty = _Stream(tty=True)
    monkeypatch.setattr("sys.stderr", tty)
    with progress(400, "train") as bar:
        bar.update(400)
    assert "\r" in tty.getvalue()  # a terminal keeps tqdm's redrawn bar
