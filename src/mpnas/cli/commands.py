"""What each `mpnas` subcommand does (`mpnas.cli.parser` describes their options).

A handler imports what it runs when it runs: the modules behind the subcommands (models, data sources, export,
the bench) take seconds to import together, and `mpnas --help`, `mpnas --version` or a usage mistake should not
wait for them. These imports only run downward (every module is below the CLI), so they hide no dependency.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from mpnas.config import RunConfig, apply_overrides, read_yaml_mapping, resolve_config, validate
from mpnas.errors import MpnasError


# Flags that shape the config of a run (whose equality --resume checks): the config's own fields and files.
_CONFIG_FLAGS = ("data", "domains", "resolution", "cache_dir", "config", "seed", "budget")


def _explicit(args: argparse.Namespace) -> bool:
    """Whether the command line gives any option that shapes the config (not --threads, --device)."""
    return (any(getattr(args, f, None) is not None for f in _CONFIG_FLAGS) or bool(getattr(args, "set", None))
            or bool(getattr(args, "skip_bad_images", False)))


def _run_config(args: argparse.Namespace) -> RunConfig:
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


def _refuse_added(run_dir: Path, command: str) -> None:
    """A run directory made by `mpnas add-domain` is continued by add-domain alone: `run`, `search` or `train`
    would search or train its trained domains again, and their outputs would no longer be RUN's."""
    from mpnas.rundir import ARCH, read_architecture

    if (run_dir / ARCH).is_file() and read_architecture(run_dir).meta.get("method") == "add-domain":
        raise MpnasError(f"run directory {run_dir}: made by `mpnas add-domain`, whose trained domains `mpnas {command}` "
                         f"would train again; continue it with `mpnas add-domain --run RUN --domains NEW --resume --out "
                         f"{run_dir}`, or start a run afresh there with `mpnas run --overwrite`")


def _open_run(args: argparse.Namespace, run_dir: Path, stage: str) -> tuple[RunConfig, bool]:
    """The config `run` or `search` runs with in `run_dir` and whether it continues the run there (`open_run`)."""
    from mpnas.pipeline import open_run

    if not args.overwrite:
        _refuse_added(run_dir, stage)
    return open_run(run_dir, stage, _run_config(args), explicit=_explicit(args), resume=args.resume,
                    overwrite=args.overwrite, threads=args.threads, device=args.device)


def _run_dir_config(args: argparse.Namespace) -> tuple[Path, RunConfig]:
    """A later stage's config: the run directory's own, with --set, --threads and --device applied."""
    from mpnas.rundir import read_config

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


def cmd_search(args: argparse.Namespace) -> int:
    from mpnas.pipeline import check_run, prepare_run_dir, stage_search
    from mpnas.rundir import ARCH

    run_dir = Path(args.out)
    cfg, resuming = _open_run(args, run_dir, "search")
    domains = check_run(cfg, ("search",), run_dir, progress=not args.quiet)
    prepare_run_dir(run_dir, "search", cfg, args.overwrite)
    arch = stage_search(cfg, run_dir, domains, progress=not args.quiet, resume=resuming)
    print(f"wrote {run_dir / ARCH}: {len(arch.domains)} domains, "
          f"{len(arch.node_users())} nodes, {len(arch.shared_nodes())} shared")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mpnas.pipeline import check_run, open_run, prepare_run_dir, stage_train
    from mpnas.rundir import WEIGHTS, read_architecture

    run_dir, given = _run_dir_config(args)
    _refuse_added(run_dir, "train")
    cfg, resuming = open_run(run_dir, "train", given, explicit=bool(args.set), resume=args.resume,
                             overwrite=args.overwrite, threads=args.threads, device=args.device)
    arch = read_architecture(run_dir)
    domains = check_run(cfg, ("train",), run_dir, progress=not args.quiet, arch=arch)
    prepare_run_dir(run_dir, "train", cfg, args.overwrite)  # the run directory records the config training used
    stage_train(cfg, run_dir, domains, progress=not args.quiet, arch=arch, resume=resuming)
    print(f"wrote {run_dir / WEIGHTS}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mpnas.console import log_to
    from mpnas.pipeline import check_run, evaluate_widths, stage_evaluate
    from mpnas.rundir import LOG, read_architecture, write_config

    run_dir, cfg = _run_dir_config(args)
    arch = read_architecture(run_dir)
    domains = check_run(cfg, (), None, progress=False, arch=arch)
    if args.set:
        write_config(run_dir, cfg)  # the run directory records the config its stages actually used
    log_to(run_dir / LOG)
    if args.config:
        _print_results(evaluate_widths(cfg, run_dir, Path(args.config)))
        print(f"measured top-1 added to {args.config}")
        return 0
    _print_results(stage_evaluate(cfg, run_dir, domains))
    return 0


def cmd_configure(args: argparse.Namespace) -> int:
    import json
    import time

    from mpnas.io import write_json
    from mpnas.rundir import load_data, read_architecture, read_slim_table
    from mpnas.space.configure import add_measured, configure, parse_prefer
    from mpnas.space.widths import Widths
    from mpnas.train.evaluate import load_trained_model
    from mpnas.train.optim import apply_threads
    from mpnas.train.slimmable import measure_widths

    t0 = time.perf_counter()
    run_dir, cfg = _run_dir_config(args)
    arch = read_architecture(run_dir)
    if not cfg.train.slimmable:
        raise MpnasError(f"run {run_dir}: was not trained with train.slimmable=true, so it cannot be slimmed")
    kind, limit = next((k, v) for k, v in (("macs", args.max_macs), ("params", args.max_params),
                                           ("latency", args.max_latency_ms)) if v is not None)
    if not limit > 0:
        raise MpnasError(f"configure: the limit must be positive, got {limit}")
    out = configure(arch, read_slim_table(run_dir, arch), kind, limit, parse_prefer(args.prefer), cfg.train.bn_per_domain)
    out["run"] = str(run_dir)
    if args.measure:
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


def cmd_report(args: argparse.Namespace) -> int:
    from mpnas.console import log_to
    from mpnas.pipeline import stage_report
    from mpnas.rundir import LOG, read_config

    run_dir = Path(args.run)
    read_config(run_dir)  # a run directory, before log.txt is added to it
    path = stage_report(run_dir)
    log_to(run_dir / LOG)
    print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mpnas.pipeline import run_all
    from mpnas.rundir import REPORT

    if args.dry_run:
        return _dry_run(_run_config(args))
    if args.out is None:
        raise MpnasError("run: --out is required (the run directory to write)")
    run_dir = Path(args.out)
    cfg, resuming = _open_run(args, run_dir, "run")
    results = run_all(cfg, run_dir, progress=not args.quiet, resume=resuming, overwrite=args.overwrite)
    _print_results(results)
    print(f"report: {run_dir / REPORT}")
    return 0


def cmd_add_domain(args: argparse.Namespace) -> int:
    from mpnas.add_domain import add_domain
    from mpnas.rundir import CONFIG, REPORT, read_config

    run = Path(args.run)
    base = read_config(run)
    new = [d.strip() for d in args.domains.split(",") if d.strip()]
    # --domains names what to add, so it does not count as an option that must match on --resume.
    explicit = (any(getattr(args, f, None) is not None for f in _CONFIG_FLAGS if f != "domains") or bool(args.set)
                or bool(args.skip_bad_images))
    # Every option defaults to RUN's own: its config is the base unless --budget or --config is given; the data
    # source, resolution and data seed are RUN's unless given (and then must equal them), and so is the space
    # unless the options name space.* themselves.
    names_space = any(item.split("=", 1)[0].strip().startswith("space.") for item in args.set or [])
    if args.config is not None:
        names_space = names_space or "space" in (read_yaml_mapping(Path(args.config)) or {})
    if args.budget is None and args.config is None:
        args.config = str(run / CONFIG)
    args.data = args.data or base.data.spec
    args.resolution = args.resolution or base.data.resolution
    args.skip_bad_images = args.skip_bad_images or base.data.skip_bad_images
    args.domains = None
    given = _run_config(args)
    names_seed = any(item.split("=", 1)[0].strip() == "data.seed" for item in args.set or [])
    given = replace(given, data=replace(given.data, seed=given.data.seed if names_seed else base.data.seed,
                                        cache_dir=given.data.cache_dir or base.data.cache_dir),
                    space=given.space if names_space else base.space)
    results = add_domain(run, given, new, Path(args.out), explicit=explicit, resume=args.resume,
                         overwrite=args.overwrite, threads=args.threads, device=args.device, progress=not args.quiet)
    _print_results(results)
    print(f"report: {Path(args.out) / REPORT}")
    return 0


def _dry_run(cfg: RunConfig) -> int:
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


def cmd_bench(args: argparse.Namespace) -> int:
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


def cmd_export(args: argparse.Namespace) -> int:
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


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from mpnas.deploy.predictor import ExportedPredictor, Predictor, collect_images, load

    if args.top_k < 1:
        raise MpnasError(f"--top-k must be >= 1, got {args.top_k}")
    if args.int8 and not args.export:
        raise MpnasError("--int8 needs --export")
    _check_threads(args.threads)
    if args.export and args.device not in (None, "cpu"):
        raise MpnasError(f"--device {args.device}: an export runs in onnxruntime on the CPU; --device is for --run")
    model: Predictor | ExportedPredictor
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


def _print_results(results: dict[str, Any]) -> None:
    print(f"{'domain':<16}{'top-1':>8}{'params':>12}{'MACs':>12}")
    for name, r in results["domains"].items():
        print(f"{name:<16}{r['top1']:>8.2f}{r['params']:>12,}{r['macs'] / 1e6:>11.2f}M")
    print(f"{'mean':<16}{results['mean_top1']:>8.2f}")
    print(f"merged model: {results['params_total']:,} parameters, {results['macs_total'] / 1e6:.2f} M MACs "
          f"(one image per domain), {len(results['shared_nodes'])} shared node(s)")


def cmd_data_list(args: argparse.Namespace) -> int:
    from mpnas.data.commands import data_list

    return data_list(args)


def cmd_data_preview(args: argparse.Namespace) -> int:
    from mpnas.data.commands import data_preview

    return data_preview(args)


def cmd_space_show(args: argparse.Namespace) -> int:
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


def cmd_latency_table(args: argparse.Namespace) -> int:
    import torch

    from mpnas.console import progress
    from mpnas.nn.measure import BACKENDS, measure_table
    from mpnas.runtime import need_onnx
    from mpnas.space.latency import candidate_geometries, save_table
    from mpnas.space.presets import get_space

    if args.repeats < 1:
        raise MpnasError(f"--repeats must be >= 1, got {args.repeats}")
    if args.backend not in BACKENDS:
        raise MpnasError(f"--backend: {args.backend!r} unknown; choose from {', '.join(BACKENDS)}")
    if args.backend == "onnxruntime":
        need_onnx()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    space = get_space(args.space, args.resolution, args.width_mult)
    total = sum(1 for _ in candidate_geometries(space))
    with progress(total, f"timing {space.name} ops ({args.backend})", unit="op") as bar:
        table = measure_table(space, args.repeats, lambda i, n: bar.update(1), backend=args.backend)
    save_table(table, args.out)
    print(f"wrote {args.out}: {len(table['entries'])} entries ({args.backend}), {table['threads']} threads, {table['device']}")
    return 0
