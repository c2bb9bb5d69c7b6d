"""The `mpnas` command: one entry point, a subcommand per stage of the method."""

from __future__ import annotations

import argparse
import sys

from mpnas.errors import MpnasError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="builtin", help="data source: builtin | decathlon:ROOT | folder:ROOT")
    p.add_argument("--domains", default=None, help="comma-separated domain names to keep (default: all)")
    p.add_argument("--resolution", type=int, default=None, help="image side in pixels (default 32)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip corrupt images and report how many")
    p.add_argument("--cache-dir", default=None, help="where decoded data is cached (default $MPNAS_CACHE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpnas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect a data source").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("list", help="per domain: classes, split sizes, resolution")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of domains")
    p.set_defaults(func=_cmd_data_list)
    p = data.add_parser("preview", help="save a labelled grid of samples per domain")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--per-domain", type=int, default=8, help="samples shown per domain")
    p.set_defaults(func=_cmd_data_preview)
    return parser


def _cmd_data_list(args: argparse.Namespace) -> int:
    raise NotImplementedError  # filled in by the data layer


def _cmd_data_preview(args: argparse.Namespace) -> int:
    raise NotImplementedError  # filled in by the data layer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MpnasError as exc:
        print(f"mpnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mpnas: interrupted", file=sys.stderr)
        return 130
