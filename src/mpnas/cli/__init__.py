"""The `mpnas` command: one entry point, a subcommand per stage of the method.

`mpnas.cli.parser` holds the subcommands and their options, `mpnas.cli.commands` what each one does; `main`
runs one of them, under torchrun when launched so, with user mistakes as one line and exit status 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

from mpnas import distributed
from mpnas.cli.parser import build_parser
from mpnas.console import transcript
from mpnas.errors import MpnasError

TORCHRUN_COMMANDS = ("run", "search", "train", "bench")
LOGGED_COMMANDS = ("run", "search", "train", "evaluate", "report", "bench", "add-domain")  # each keeps log.txt in its directory
# A file system's refusal (no permission, read-only, full, a file where a folder belongs) is the user's to mend:
# one line and exit 2 like any MpnasError, wherever a writer did not name it more precisely itself.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTDIR,
                errno.EISDIR}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    prefix = "mpnas"
    logged = transcript(argv) if getattr(args, "command", None) in LOGGED_COMMANDS else contextlib.nullcontext()
    try:
        if distributed.launched_by_torchrun():
            if args.command not in TORCHRUN_COMMANDS:
                raise MpnasError(f"mpnas {args.command} runs in one process; torchrun is for {', '.join(TORCHRUN_COMMANDS)}")
            ranks = distributed.init(getattr(args, "device", None))
            if ranks.rank:  # one copy of the printed results: rank 0's (errors still reach stderr)
                prefix = f"mpnas (rank {ranks.rank})"
                sys.stdout = open(os.devnull, "w")
        with logged:
            try:
                return int(args.func(args) or 0)
            except MpnasError as exc:
                print(f"{prefix}: error: {exc}", file=sys.stderr)
                return exc.exit_code
            except KeyboardInterrupt:
                print(f"{prefix}: interrupted", file=sys.stderr)
                return 130
            except OSError as exc:
                if exc.errno not in _USER_ERRNOS:
                    raise
                where = f"{exc.filename}: " if exc.filename else ""
                print(f"{prefix}: error: {where}{exc.strerror or exc}", file=sys.stderr)
                return 2
    except MpnasError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        distributed.shutdown()


__all__ = ["build_parser", "main"]
