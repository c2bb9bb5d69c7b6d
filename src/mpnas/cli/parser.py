"""The `mpnas` command line: every subcommand, its options and their help (`mpnas.cli.commands` runs them).

Each subcommand's handler is `commands.cmd_<name>`; this module only describes what the user may type, so that
`mpnas --help` and a usage mistake cost no more than argparse.
"""

from __future__ import annotations

import argparse

from mpnas import DEFAULT_TOP_K, __version__
from mpnas.cli import commands

DESCRIPTION = "The `mpnas` command: one entry point, a subcommand per stage of the method."


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default, except where there is none worth showing (None, a flag's False, an
    empty list): those options say in their help what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == [] or not action.option_strings:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line and exit status 2, like every other user mistake (argparse prints the whole
    usage first); the subcommands' parsers are made by this class too, with defaults in their help."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _show_help(parser: argparse.ArgumentParser) -> object:
    """A command given without its subcommand prints its help rather than a usage error."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "builtin") -> None:
    p.add_argument("--data", default=default, help="data source: builtin | decathlon:ROOT | folder:ROOT"
                   + ("" if default else " (default builtin)"))
    p.add_argument("--domains", default=None, help="comma-separated domain names to keep (default: all)")
    p.add_argument("--resolution", type=int, default=None, help="image side in pixels (default 32)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip corrupt images and report how many")
    p.add_argument("--cache-dir", default=None, help="where decoded data is cached (default $MPNAS_CACHE)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpnas", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mpnas {__version__}")
    parser.set_defaults(func=_show_help(parser))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    group = sub.add_parser("data", help="inspect a data source")
    group.set_defaults(func=_show_help(group))
    data = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = data.add_parser("list", help="per domain: classes, split sizes, resolution")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of domains")
    p.set_defaults(func=commands.cmd_data_list)
    p = data.add_parser("preview", help="save a labelled grid of samples per domain")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--per-domain", type=int, default=8, help="samples shown per domain")
    p.set_defaults(func=commands.cmd_data_preview)

    group = sub.add_parser("space", help="inspect a search space")
    group.set_defaults(func=_show_help(group))
    space = group.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    p = space.add_parser("show", help="parameters, MACs and size of a search space or published model")
    p.add_argument("--preset", default="default", help="default | paper | mobilenet_v3_large | mobilenet_v3_small")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--resolution", type=int, default=None, help="input side in pixels (default: the preset's)")
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_space_show)

    p = sub.add_parser("latency-table", help="time every candidate op of a space on this machine")
    p.add_argument("--space", default="default", help="search space preset")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=20, help="timed runs per op; the median is kept")
    p.add_argument("--threads", type=int, default=None, help="torch threads while timing (default: torch's)")
    p.add_argument("--backend", default="torch", help="runtime that times the ops: torch (eager) | onnxruntime")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=commands.cmd_latency_table)

    for name, help_ in (("search", "multi-path search: one controller per domain; writes architecture.json"),
                        ("run", "the whole method: search, train from scratch, evaluate, report")):
        p = sub.add_parser(name, help=help_)
        _add_data_args(p, default=None)
        _add_run_args(p)
        _add_overwrite(p, "run" if name == "run" else "search")
        if name == "run":
            p.add_argument("--dry-run", action="store_true",
                           help="time a few steps of each stage here and print the estimated wall time; write nothing")
        p.add_argument("--out", required=name == "search", help="run directory to write")
        p.set_defaults(func=commands.cmd_search if name == "search" else commands.cmd_run)
    p = sub.add_parser("add-domain", help="add new domains to a trained run; its domains stay bit-identical")
    p.add_argument("--run", required=True, help="a finished run directory (only read)")
    p.add_argument("--data", default=None, help="RUN's data source, holding the new domains (default: RUN's)")
    p.add_argument("--domains", required=True, help="comma-separated names of the new domains")
    p.add_argument("--resolution", type=int, default=None, help="image side in pixels (must be RUN's; default RUN's)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip corrupt images and report how many")
    p.add_argument("--cache-dir", default=None, help="where decoded data is cached (default $MPNAS_CACHE)")
    _add_run_args(p)
    _add_overwrite(p, "run")
    p.add_argument("--out", required=True, help="the new run directory (every domain, old and new)")
    p.set_defaults(func=commands.cmd_add_domain)
    p = sub.add_parser("bench", help="MPNAS against the paper's baselines on the same data, budget and seeds")
    _add_data_args(p, default=None)
    _add_run_args(p)
    p.add_argument("--methods", default="mpnas,sd-nas,sp-mn,mdsp-nas,mrp,trl", help="comma-separated methods")
    p.add_argument("--seeds", type=int, default=2, help="number of seeds (seed-start .. seed-start + seeds - 1)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (split a bench across processes)")
    p.add_argument("--ablate", default=None, help="'loss': retrain with each loss variant (Tables 4 and 5)")
    p.add_argument("--ablate-search", action="store_true",
                   help="with --ablate loss: search again with each loss instead of retraining MPNAS's architecture")
    p.add_argument("--front", default=None, metavar="BETA,...",
                   help="also run MPNAS with these cost exponents (search.beta), drawn as its accuracy-cost front")
    p.add_argument("--out", required=True, help="bench directory; finished runs in it, and runs another process has claimed, are skipped")
    p.set_defaults(func=commands.cmd_bench)

    p = sub.add_parser("export", help="each domain's path as ONNX checked in onnxruntime, an int8 variant, a manifest")
    p.add_argument("--run", required=True, help="a trained run directory")
    p.add_argument("--out", required=True, help="export directory to write (export.json and the model files)")
    p.add_argument("--format", default="onnx", help="comma-separated: onnx (always written) and pte (ExecuTorch)")
    p.add_argument("--int8", action="store_true",
                   help="also write int8 files, calibrated on training images: <domain>.int8.onnx (onnxruntime), "
                        "and model.int8.pte with --format onnx,pte (PT2E, XNNPACK quantizer)")
    p.add_argument("--latency-repeats", type=int, default=50, help="timed batch-1 runs per latency figure")
    p.add_argument("--config", default=None, metavar="CONFIG.json",
                   help="a slimmable run's width configuration (from `mpnas configure`) to export at")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the checks (default: torch's; latencies are timed at 1 and at all threads)")
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser("configure", help="widths of a slimmable run for a compute budget and domain preferences")
    p.add_argument("--run", required=True, help="a run trained with train.slimmable=true")
    limit = p.add_mutually_exclusive_group(required=True)
    limit.add_argument("--max-macs", type=float, help="multiply-adds for one image of every domain, e.g. 8e6")
    limit.add_argument("--max-params", type=float, help="parameters of the merged model, e.g. 5e5")
    limit.add_argument("--max-latency-ms", type=float, help="batch-1 latency summed over the domains (predicted)")
    p.add_argument("--prefer", default=None, metavar="DOMAIN=WEIGHT,...",
                   help="domains to keep more of (weight > 1) or less of (< 1); others weigh 1")
    p.add_argument("--measure", action="store_true",
                   help="also measure the chosen widths on validation data (recalibrates batch norm; seconds)")
    _add_speed_args(p)
    p.add_argument("--out", required=True, help="CONFIG.json to write")
    p.set_defaults(func=commands.cmd_configure)

    p = sub.add_parser("predict", help="classify image files with a trained run or an export directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a trained run directory (PyTorch)")
    src.add_argument("--export", help="an export directory (onnxruntime, from export.json alone)")
    p.add_argument("--domain", required=True, help="which domain's classifier to use")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="classes listed per image")
    p.add_argument("--int8", action="store_true", help="with --export: use the int8 files")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    _add_speed_args(p, device_help="with --run: auto | cpu | cuda | cuda:N (default cpu)")
    p.add_argument("paths", nargs="+", help="image files or folders of images")
    p.set_defaults(func=commands.cmd_predict)

    for name, help_, func in (
        ("train", "train the merged model of a run directory from scratch", "cmd_train"),
        ("evaluate", "per-domain top-1, parameters, MACs and Jaccard of a trained run", "cmd_evaluate"),
        ("report", "write report.md and figures for a run directory", "cmd_report"),
    ):
        p = sub.add_parser(name, help=help_)
        # --run-dir: torchrun reads a bare --run after the script as an abbreviation of its own --run-path.
        p.add_argument("--run", "--run-dir", dest="run", required=True, help="run directory written by the previous stage")
        if name != "report":
            p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
            _add_speed_args(p)
            p.add_argument("--quiet", action="store_true", help="no progress bars")
        if name == "train":
            p.add_argument("--resume", action="store_true",
                           help="continue unfinished training from its last checkpoint; start it if it has not started")
            _add_overwrite(p, "training")
        if name == "evaluate":
            p.add_argument("--config", default=None, metavar="CONFIG.json",
                           help="evaluate a slimmable run at this width configuration; its measured top-1 is added to it")
        p.set_defaults(func=getattr(commands, func))
    return parser


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", default=None, help="quick | default | long | paper (default: default)")
    p.add_argument("--config", default=None, help="YAML file with any subset of the config's fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field, e.g. train.steps=500")
    p.add_argument("--seed", type=int, default=None, help="seed of everything random (default 0)")
    _add_speed_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the directory from its last checkpoint, bit for bit (it must have the same "
                        "options, or none given); start it when the directory holds none")


def _add_speed_args(p: argparse.ArgumentParser, device_help: str = "auto | cpu | cuda | cuda:N (default: the config's)") -> None:
    """--threads and --device, on every command that computes: they change its speed, never its result."""
    p.add_argument("--device", default=None, help=device_help)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's, else torch's)")


def _add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace a finished or unfinished {what} in the directory: its old outputs are removed first")
