"""`mpnas data list` and `mpnas data preview`: what a data source holds, as a table, JSON or a picture."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mpnas.data.domain import SPLITS, DomainSet
from mpnas.data.preview import save_preview
from mpnas.data.sources import load_domains


def _load(args: argparse.Namespace) -> DomainSet:
    names = [n.strip() for n in args.domains.split(",") if n.strip()] if args.domains else None
    resolution = 32 if args.resolution is None else args.resolution  # 0 is refused like everywhere, not read as "unset"
    return load_domains(args.data, names, resolution, skip_bad_images=args.skip_bad_images,
                        cache_dir=args.cache_dir, progress=sys.stderr.isatty())


def describe(domains: DomainSet) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "num_classes": d.num_classes,
            "splits": {s: len(d.splits[s]) if s in d.splits else 0 for s in SPLITS},
            "test_labelled": "test" in d.splits and d.splits["test"].labelled,
            "resolution": d.resolution,
            "flip": d.augment.flip,
            "crop": d.augment.crop,
            "class_names": d.class_names,
            "description": d.description,
        }
        for d in domains
    ]


def data_list(args: argparse.Namespace) -> int:
    rows = describe(_load(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("domain", "classes", "train", "val", "test", "res", "flip", "crop")]
    for r in rows:
        counts = r["splits"]
        test = f"{counts['test']:,}" + ("" if r["test_labelled"] or not counts["test"] else " (unlabelled)")
        table.append((r["name"], str(r["num_classes"]), f"{counts['train']:,}", f"{counts['val']:,}", test,
                      str(r["resolution"]), "yes" if r["flip"] else "no", r["crop"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    total = sum(sum(r["splits"].values()) for r in rows)
    print(f"{len(rows)} domain(s), {total:,} images")
    return 0


def data_preview(args: argparse.Namespace) -> int:
    out = save_preview(_load(args), args.out, args.per_domain)
    print(f"wrote {out}")
    return 0
