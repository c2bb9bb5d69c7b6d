"""The `mpnas` command: one entry point, a subcommand per stage of the method."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from pathlib import Path

from mpnas import DEFAULT_TOP_K, __version__
from mpnas.errors import MpnasError


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
    parser = _Parser(prog="mpnas", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mpnas {__version__}")
    parser.set_defaults(func=_show_help(parser))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    group = sub.add_parser("data", help="inspect a data source")
    group.set_defaults(func=_show_help(group))
    data = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = data.add_parser("list", help="per domain: classes, split sizes, resolution")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of domains")
    p.set_defaults(func=_cmd_data_list)
    p = data.add_parser("preview", help="save a labelled grid of samples per domain")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--per-domain", type=int, default=8, help="samples shown per domain")
    p.set_defaults(func=_cmd_data_preview)

    group = sub.add_parser("space", help="inspect a search space")
    group.set_defaults(func=_show_help(group))
    space = group.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    p = space.add_parser("show", help="parameters, MACs and size of a search space or published model")
    p.add_argument("--preset", default="default", help="default | paper | mobilenet_v3_large | mobilenet_v3_small")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--resolution", type=int, default=None, help="input side in pixels (default: the preset's)")
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_space_show)

    p = sub.add_parser("latency-table", help="time every candidate op of a space on this machine")
    p.add_argument("--space", default="default", help="search space preset")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=20, help="timed runs per op; the median is kept")
    p.add_argument("--threads", type=int, default=None, help="torch threads while timing (default: torch's)")
    p.add_argument("--backend", default="torch", help="runtime that times the ops: torch (eager) | onnxruntime")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=_cmd_latency_table)

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
        p.set_defaults(func=_cmd_search if name == "search" else _cmd_run)
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
    p.set_defaults(func=_cmd_bench)

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
    p.set_defaults(func=_cmd_export)

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
    p.set_defaults(func=_cmd_configure)

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
    p.set_defaults(func=_cmd_predict)

    for name, help_, func in (
        ("train", "train the merged model of a run directory from scratch", "_cmd_train"),
        ("evaluate", "per-domain top-1, parameters, MACs and Jaccard of a trained run", "_cmd_evaluate"),
        ("report", "write report.md and figures for a run directory", "_cmd_report"),
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
        p.set_defaults(func=globals()[func])
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


# Flags that shape the config of a run (whose equality --resume checks): the config's own fields and files.
_CONFIG_FLAGS = ("data", "domains", "resolution", "cache_dir", "config", "seed", "budget")


def _explicit(args: argparse.Namespace) -> bool:
    """Whether the command line gives any option that shapes the config (not --threads, --device)."""
    return (any(getattr(args, f, None) is not None for f in _CONFIG_FLAGS) or bool(getattr(args, "set", None))
            or bool(getattr(args, "skip_bad_images", False)))


def _run_config(args: argparse.Namespace):
    from mpnas.config import resolve_config

    flags = {
        "data.spec": args.data,
        "data.domains": [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None,
        "data.resolution": args.resolution,
        "data.skip_bad_images": True if args.skip_bad_images else None,
        "data.cache_dir": args.cache_dir,
        "seed": args.seed,
        "device": args.device,
        "threads": args.threads,
    }
    return resolve_config(args.budget or "default", args.config, args.set, **flags)


def _open_run(args: argparse.Namespace, run_dir: Path, stage: str):
    """The config `run` or `search` runs with in `run_dir` and whether it continues the run there (`open_run`)."""
    from mpnas.pipeline import open_run

    return open_run(run_dir, stage, _run_config(args), explicit=_explicit(args), resume=args.resume,
                    overwrite=args.overwrite, threads=args.threads, device=args.device)


def _run_dir_config(args: argparse.Namespace):
    """A later stage's config: the run directory's own, with --set, --threads and --device applied."""
    from dataclasses import replace

    from mpnas.config import apply_overrides, validate
    from mpnas.pipeline import read_config

    run_dir = Path(args.run)
    cfg = read_config(run_dir)
    overrides = getattr(args, "set", [])
    if overrides:
        cfg = apply_overrides(cfg, overrides)
        validate(cfg)
    if getattr(args, "threads", None) is not None:
        cfg = replace(cfg, threads=args.threads)
    if getattr(args, "device", None):
        cfg = replace(cfg, device=args.device)
    return run_dir, cfg


def _cmd_search(args: argparse.Namespace) -> int:
    from mpnas.pipeline import check_run, prepare_run_dir, stage_search

    run_dir = Path(args.out)
    cfg, resuming = _open_run(args, run_dir, "search")
    domains = check_run(cfg, ("search",), run_dir, progress=not args.quiet)
    prepare_run_dir(run_dir, "search", cfg, args.overwrite)
    arch = stage_search(cfg, run_dir, domains, progress=not args.quiet, resume=resuming)
    print(f"wrote {run_dir / 'architecture.json'}: {len(arch.domains)} domains, "
          f"{len(arch.node_users())} nodes, {len(arch.shared_nodes())} shared")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mpnas.pipeline import check_run, open_run, prepare_run_dir, read_architecture, stage_train

    run_dir, given = _run_dir_config(args)
    cfg, resuming = open_run(run_dir, "train", given, explicit=bool(args.set), resume=args.resume,
                             overwrite=args.overwrite, threads=args.threads, device=args.device)
    arch = read_architecture(run_dir)
    domains = check_run(cfg, ("train",), run_dir, progress=not args.quiet, arch=arch)
    prepare_run_dir(run_dir, "train", cfg, args.overwrite)  # the run directory records the config training used
    stage_train(cfg, run_dir, domains, progress=not args.quiet, arch=arch, resume=resuming)
    print(f"wrote {run_dir / 'model.safetensors'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mpnas.console import log_to
    from mpnas.pipeline import LOG, check_run, read_architecture, stage_evaluate, write_config

    run_dir, cfg = _run_dir_config(args)
    arch = read_architecture(run_dir)
    domains = check_run(cfg, (), None, progress=False, arch=arch)
    if args.set:
        write_config(run_dir, cfg)  # the run directory records the config its stages actually used
    log_to(run_dir / LOG)
    if args.config:
        from mpnas.pipeline import evaluate_widths

        _print_results(evaluate_widths(cfg, run_dir, Path(args.config)))
        print(f"measured top-1 added to {args.config}")
        return 0
    _print_results(stage_evaluate(cfg, run_dir, domains))
    return 0


def _cmd_configure(args: argparse.Namespace) -> int:
    import json
    import time

    from mpnas.deploy.configure import Table, add_measured, configure, parse_prefer
    from mpnas.io import write_json
    from mpnas.pipeline import read_architecture

    t0 = time.perf_counter()
    run_dir, cfg = _run_dir_config(args)
    arch = read_architecture(run_dir)
    if not cfg.train.slimmable:
        raise MpnasError(f"run {run_dir}: was not trained with train.slimmable=true, so it cannot be slimmed")
    kind, limit = next((k, v) for k, v in (("macs", args.max_macs), ("params", args.max_params),
                                           ("latency", args.max_latency_ms)) if v is not None)
    if not limit > 0:
        raise MpnasError(f"configure: the limit must be positive, got {limit}")
    out = configure(arch, Table.load(run_dir, arch), kind, limit, parse_prefer(args.prefer), cfg.train.bn_per_domain)
    out["run"] = str(run_dir)
    if args.measure:
        from mpnas.pipeline import apply_threads, load_data, load_trained_model
        from mpnas.space.widths import Widths
        from mpnas.train.slimmable import measure_widths

        apply_threads(cfg)
        widths = Widths.from_dict(out["widths"], arch, cfg.train.slim_multipliers, "configure")
        add_measured(out, measure_widths(load_trained_model(cfg, run_dir, arch), widths, load_data(cfg, False), cfg), "val")
    out["configure_s"] = round(time.perf_counter() - t0, 3)
    write_json(args.out, out)
    print(json.dumps({k: out[k] for k in ("macs_total", "params_total", "mean_top1", "configure_s")}))
    for d, e in out["domains"].items():
        measured = e.get("top1_measured_val")
        print(f"  {d:<14} weight {e['weight']:.2f}  filters {e['filters']}  top-1 predicted {e['top1_predicted']:.2f}"
              + ("" if measured is None else f", measured {measured:.2f}"))
    print(f"wrote {args.out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mpnas.console import log_to
    from mpnas.pipeline import LOG, read_config, stage_report

    run_dir = Path(args.run)
    read_config(run_dir)  # a run directory, before log.txt is added to it
    path = stage_report(run_dir)
    log_to(run_dir / LOG)
    print(f"wrote {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mpnas.pipeline import run_all

    if args.dry_run:
        return _dry_run(_run_config(args))
    if args.out is None:
        raise MpnasError("run: --out is required (the run directory to write)")
    run_dir = Path(args.out)
    cfg, resuming = _open_run(args, run_dir, "run")
    results = run_all(cfg, run_dir, progress=not args.quiet, resume=resuming, overwrite=args.overwrite)
    _print_results(results)
    print(f"report: {run_dir / 'report.md'}")
    return 0


def _dry_run(cfg) -> int:
    from mpnas.pipeline import plan_run

    plan = plan_run(cfg)
    print(f"dry run: budget {plan['budget']}, {plan['domains']} domains at {plan['resolution']} px, device "
          f"{plan['device']}, {plan['threads']} threads")
    print(f"{'stage':<20}{'count':>9}{'s each':>10}{'estimated':>14}")
    for r in plan["rows"]:
        print(f"{r['stage']:<20}{r['count']:>9}{r['seconds_each']:>10.4f}{_duration(r['seconds']):>14}")
    print(f"{'total':<20}{'':>9}{'':>10}{_duration(plan['total_s']):>14}")
    print(f"not included: {plan['not_included']}")
    return 0


def _duration(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mpnas.baselines import run_bench

    if args.seeds < 1:
        raise MpnasError(f"--seeds must be >= 1, got {args.seeds}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    front = []
    for item in (args.front or "").split(","):
        if item.strip():
            try:
                front.append(float(item))
            except ValueError:
                raise MpnasError(f"--front: {item.strip()!r} is not a number (a cost exponent such as -0.15)") from None
    if args.ablate_search and args.ablate != "loss":
        raise MpnasError("--ablate-search needs --ablate loss")
    out = Path(args.out)
    run_bench(_run_config(args), methods, range(args.seed_start, args.seed_start + args.seeds), out, args.ablate,
              progress=not args.quiet, say=lambda msg: print(msg, file=sys.stderr), front=front,
              ablate_search=args.ablate_search, resume=args.resume)
    print((out / "bench.md").read_text())
    return 0


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise MpnasError(f"--threads must be >= 1, got {threads}")


def _cmd_export(args: argparse.Namespace) -> int:
    from mpnas.deploy.export import FORMATS, export_run

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise MpnasError(f"--format: {', '.join(unknown)} not available; choose from {', '.join(FORMATS)}")
    if args.latency_repeats < 1:
        raise MpnasError(f"--latency-repeats must be >= 1, got {args.latency_repeats}")
    _check_threads(args.threads)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    formats = ["onnx", *[f for f in formats if f != "onnx"]]  # ONNX is always written: the checked fallback
    manifest = export_run(Path(args.run), Path(args.out), int8=args.int8, latency_repeats=args.latency_repeats,
                          say=lambda m: print(m, file=sys.stderr), formats=tuple(formats),
                          widths_config=Path(args.config) if args.config else None)
    print(f"{'domain':<14}{'top-1':>8}{'int8':>8}{'max|diff|':>11}{'ms (1 thr)':>12}{'torch ms':>10}")
    for d, e in manifest["domains"].items():
        lat = e["latency_ms"]
        q = f"{e['top1_int8']:8.2f}" if "top1_int8" in e else f"{'-':>8}"
        print(f"{d:<14}{e['top1']:8.2f}{q}{e['max_abs_diff']:11.2e}{lat['onnx']['threads_1']:12.3f}"
              f"{lat['torch_eager']['threads_1']:10.3f}")
    if "pte" in manifest:
        p = manifest["pte"]
        print(f"model.pte: {p['bytes'] / 1e6:.2f} MB for {len(p['methods'])} methods ({p['bytes_over_merged_fp32']:.2f}x the "
              f"merged model's fp32 weights); the per-domain .pte files together {p['per_domain_files_bytes'] / 1e6:.2f} MB")
    print(f"manifest: {Path(args.out) / 'export.json'}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from mpnas.deploy.predictor import ExportedPredictor, collect_images, load

    if args.top_k < 1:
        raise MpnasError(f"--top-k must be >= 1, got {args.top_k}")
    if args.int8 and not args.export:
        raise MpnasError("--int8 needs --export")
    _check_threads(args.threads)
    if args.export and args.device not in (None, "cpu"):
        raise MpnasError(f"--device {args.device}: an export runs in onnxruntime on the CPU; --device is for --run")
    if args.export:
        model = ExportedPredictor(args.export, int8=args.int8, threads=args.threads)
    else:
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        model = load(args.run, device=args.device or "cpu")
    model.info(args.domain)  # an unknown domain fails before any image is read
    files = collect_images(args.paths)
    results = model.predict(files, args.domain, k=args.top_k)
    for f, top in zip(files, results):
        if args.json:
            print(json.dumps({"image": str(f), "domain": args.domain,
                              "top": [{"class": c, "probability": round(p, 6)} for c, p in top]}))
        else:
            print(f"{f}: " + ", ".join(f"{c} {p:.3f}" for c, p in top))
    return 0


def _print_results(results: dict) -> None:
    print(f"{'domain':<16}{'top-1':>8}{'params':>12}{'MACs':>12}")
    for name, r in results["domains"].items():
        print(f"{name:<16}{r['top1']:>8.2f}{r['params']:>12,}{r['macs'] / 1e6:>11.2f}M")
    print(f"{'mean':<16}{results['mean_top1']:>8.2f}")
    print(f"merged model: {results['params_total']:,} parameters, {results['macs_total'] / 1e6:.2f} M MACs "
          f"(one image per domain), {len(results['shared_nodes'])} shared node(s)")


def _cmd_data_list(args: argparse.Namespace) -> int:
    from mpnas.data.commands import data_list

    return data_list(args)


def _cmd_data_preview(args: argparse.Namespace) -> int:
    from mpnas.data.commands import data_preview

    return data_preview(args)


def _cmd_space_show(args: argparse.Namespace) -> int:
    import json

    from mpnas.space.cost import path_cost
    from mpnas.space.presets import get_space

    if args.num_classes < 1:
        raise MpnasError(f"--num-classes must be >= 1, got {args.num_classes}")
    space = get_space(args.preset, args.resolution, args.width_mult)
    ref, big = path_cost(space, space.reference_path(), args.num_classes), path_cost(space, space.largest_path(), args.num_classes)
    n = space.num_architectures()
    info = {
        "preset": space.name,
        "resolution": space.resolution,
        "num_classes": args.num_classes,
        "params": ref.params,
        "macs": ref.macs,
        "num_architectures": n,
        "largest_params": big.params,
        "largest_macs": big.macs,
        "decisions": len(space.decisions()),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    what = "the model" if n == 1 else "reference path (middle option of every decision, no skips)"
    print(f"space {space.name} at {space.resolution} px, {args.num_classes} classes")
    print(f"  {what}: {ref.params:,} parameters, {ref.macs / 1e6:,.1f} M MACs")
    print(f"  stem: filters {list(space.stem_filters)}, kernels {list(space.stem_kernels)}, stride {space.stem_stride}, "
          f"{space.stem_act}; head: {space.head_filters} -> {space.head_hidden or 'none'}, {space.head_act} (fixed)")
    if n > 1:
        print(f"  largest path: {big.params:,} parameters, {big.macs / 1e6:,.1f} M MACs")
    print(f"  architectures: {n:.3e} ({info['decisions']} decisions)" if n > 1 else "  architectures: 1")
    for b, block in enumerate(space.blocks):
        layer = block.layers[0]
        print(
            f"  block {b}: filters {list(block.filters)}{' (its input width: tied to the stem)' if block.keeps_width else ''}, "
            f"{len(block.layers)} layer(s){', skippable' if block.layers[0].skippable else ''}, stride {layer.stride}, {layer.act}, "
            f"kernels {list(layer.kernels)}, expansions {[round(e, 3) for e in layer.expansions]}, se {list(layer.se)}"
        )
    return 0


def _cmd_latency_table(args: argparse.Namespace) -> int:
    import torch

    from mpnas.console import progress
    from mpnas.space.latency import BACKENDS, candidate_geometries, measure_table, save_table
    from mpnas.space.presets import get_space

    if args.repeats < 1:
        raise MpnasError(f"--repeats must be >= 1, got {args.repeats}")
    if args.backend not in BACKENDS:
        raise MpnasError(f"--backend: {args.backend!r} unknown; choose from {', '.join(BACKENDS)}")
    if args.backend == "onnxruntime":
        from mpnas.deploy.export import _need_onnx

        _need_onnx()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    space = get_space(args.space, args.resolution, args.width_mult)
    total = sum(1 for _ in candidate_geometries(space))
    with progress(total, f"timing {space.name} ops ({args.backend})", unit="op") as bar:
        table = measure_table(space, args.repeats, lambda i, n: bar.update(1), backend=args.backend)
    save_table(table, args.out)
    print(f"wrote {args.out}: {len(table['entries'])} entries ({args.backend}), {table['threads']} threads, {table['device']}")
    return 0


TORCHRUN_COMMANDS = ("run", "search", "train", "bench")
LOGGED_COMMANDS = ("run", "search", "train", "evaluate", "report", "bench")  # each keeps log.txt in its directory
# A file system's refusal (no permission, read-only, full, a file where a folder belongs) is the user's to mend:
# one line and exit 2 like any MpnasError, wherever a writer did not name it more precisely itself.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTDIR,
                errno.EISDIR}


def main(argv: list[str] | None = None) -> int:
    from mpnas import distributed
    from mpnas.console import transcript

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
