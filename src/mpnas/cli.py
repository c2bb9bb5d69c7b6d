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

    space = sub.add_parser("space", help="inspect a search space").add_subparsers(dest="space_command", required=True)
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
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=_cmd_latency_table)
    return parser


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
    if n > 1:
        print(f"  largest path: {big.params:,} parameters, {big.macs / 1e6:,.1f} M MACs")
    print(f"  architectures: {n:.3e} ({info['decisions']} decisions)" if n > 1 else "  architectures: 1")
    for b, block in enumerate(space.blocks):
        layer = block.layers[0]
        print(
            f"  block {b}: filters {list(block.filters)}, {len(block.layers)} layer(s), stride {layer.stride}, {layer.act}, "
            f"kernels {list(layer.kernels)}, expansions {[round(e, 3) for e in layer.expansions]}, se {list(layer.se)}"
        )
    return 0


def _cmd_latency_table(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from mpnas.space.latency import candidate_geometries, measure_table, save_table
    from mpnas.space.presets import get_space

    if args.repeats < 1:
        raise MpnasError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    space = get_space(args.space, args.resolution, args.width_mult)
    total = sum(1 for _ in candidate_geometries(space))
    with tqdm(total=total, desc=f"timing {space.name} ops", unit="op", file=sys.stderr) as bar:
        table = measure_table(space, args.repeats, lambda i, n: bar.update(1))
    save_table(table, args.out)
    print(f"wrote {args.out}: {len(table['entries'])} entries, {table['threads']} threads, {table['device']}")
    return 0


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
