"""What the console shows, kept in the run directory's log.txt, and progress that suits where stderr goes.

`transcript()` (the CLI wraps each command in it) puts a tee in front of stdout and stderr: everything still
reaches the console, and is also kept as text lines, first in memory and, once the command knows its run
directory is valid and prepared (`log_to`, called by `mpnas.pipeline.prepare_run_dir`), appended to its
log.txt. Buffering until then keeps every check before the first file is written, yet the log still starts
with the command line and everything printed before the directory was known. Progress bars redraw one line
with carriage returns; the log keeps the last state of such a line and drops terminal escapes.

`progress()` is a tqdm bar when stderr is a terminal, and otherwise (a log file, a pipe, a batch job) a plain
line every few percent, so that a log holds a few lines per stage rather than hundreds of redraws.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mpnas.distributed import world
from mpnas.errors import MpnasError
from mpnas.io import cannot_write

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PLAIN_STEP_PERCENT = 5  # a plain progress line every this many percent


class _Transcript:
    """Complete lines of the console, buffered until a log file is attached, then appended to it."""

    def __init__(self, header: str) -> None:
        self.lines: list[str] = [header]
        self.file: IO[str] | None = None
        self.path: Path | None = None

    def add(self, line: str) -> None:
        line = _ESCAPE.sub("", line).rstrip()
        if self.file is None:
            self.lines.append(line)
            return
        self.file.write(line + "\n")
        self.file.flush()

    def attach(self, path: Path) -> None:
        if self.path == path:
            return
        self.close()
        try:
            self.file = open(path, "a", encoding="utf-8")  # a plain open: the umask's mode
        except OSError as exc:
            raise cannot_write(path, exc) from None
        self.path = path
        self.file.write("".join(line + "\n" for line in self.lines))
        self.file.flush()
        self.lines = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class _Tee:
    """A text stream that writes through to `stream` and hands complete lines to the transcript."""

    def __init__(self, stream: Any, transcript: _Transcript) -> None:
        self.stream = stream
        self.transcript = transcript
        self.pending = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        *done, self.pending = (self.pending + text).split("\n")
        for line in done:
            self.transcript.add(line.rsplit("\r", 1)[-1])  # a redrawn line: its last state
        return len(text)

    def finish(self) -> None:
        last = self.pending.rsplit("\r", 1)[-1]
        if last.strip():
            self.transcript.add(last)
        self.pending = ""

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, buffer ...: the real stream's
        return getattr(self.stream, name)


@contextlib.contextmanager
def transcript(argv: list[str]) -> Iterator[None]:
    """Tee stdout and stderr for one command (see the module docstring); restores both on exit. A bug's
    traceback, which Python prints after this returns, is added to an attached log as well."""
    record = _Transcript(f"$ mpnas {shlex.join(argv)}  [{time.strftime('%Y-%m-%d %H:%M:%S')}]")
    out, err = _Tee(sys.stdout, record), _Tee(sys.stderr, record)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, MpnasError) and record.file is not None:
            import traceback

            record.file.write("".join(traceback.format_exception(exc)))
        raise
    finally:
        out.finish()
        err.finish()
        sys.stdout, sys.stderr = out.stream, err.stream
        record.close()


def log_to(path: Path) -> None:
    """Append the console of the running command to `path` from now on (and what it showed so far); nothing when
    the command runs without `transcript` (mpnas used as a library) or on a rank other than 0."""
    tee = sys.stderr
    if isinstance(tee, _Tee) and world().is_main:
        tee.transcript.attach(Path(path))


class PlainProgress:
    """tqdm's interface as far as mpnas uses it, printing one plain line every `PLAIN_STEP_PERCENT` percent."""

    def __init__(self, total: int | None, desc: str, unit: str, delay: float = 0.0,
                 iterable: Iterable[Any] | None = None) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)  # type: ignore[arg-type]
        self.desc, self.unit, self.delay = desc, unit, delay
        self.n = 0
        self.postfix = ""
        self.t0 = time.perf_counter()
        self.printed = -1  # the last multiple of PLAIN_STEP_PERCENT printed
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def _line(self) -> None:
        if time.perf_counter() - self.t0 < self.delay:
            return
        elapsed = time.perf_counter() - self.t0
        if self.total:
            pct = 100 * self.n // self.total
            text = f"{self.desc}: {pct:3d}% {self.n}/{self.total} {self.unit}s, {elapsed:.0f} s"
        else:
            text = f"{self.desc}: {self.n} {self.unit}s, {elapsed:.0f} s"
        print(text + (f", {self.postfix}" if self.postfix else ""), file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total:
            return
        mark = (100 * self.n // self.total) // PLAIN_STEP_PERCENT
        if mark > self.printed:
            self.printed = mark
            self._line()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.total is None or (self.n and 100 * self.n // self.total // PLAIN_STEP_PERCENT != self.printed):
            self._line()


def progress(total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "step", leave: bool = True,
             delay: float = 0.0, iterable: Iterable[Any] | None = None) -> Any:
    """A progress bar on stderr: tqdm's on a terminal, `PlainProgress` elsewhere, a silent one when not `enabled`."""
    from tqdm import tqdm

    if not enabled or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled,
                    dynamic_ncols=True, leave=leave, delay=delay)
    return PlainProgress(total, desc, unit, delay, iterable)
