"""Does a brief stand-alone training rank paths as the full one does? (issue 27: the shortlist lever's premise)

The final supernets rank the ground-truth set's paths no better than chance (tau near 0, RESULTS.md issue 24). A
shortlist step would train the search's top few candidates alone for a few steps and keep the best. That pays only
if a brief training ranks equal-cost paths the way the full `default` training does. This probe measures it on the
set itself: every set path trained alone for `--steps` steps (the stable recipe's schedule compressed to those
steps, seed 0 by default), its validation top-1 (what a shortlist would select on) against the set's full top-1 (mean over
its 2 seeds), as Kendall tau per domain, next to the set's own seed tau. With `--seed 0` the brief run shares its initialisation and
first batches with the set's seed-0 run, which can only raise tau; `--seed 2` shares nothing with the set.

    python benchmarks/brief_rank.py run --steps 100 --out runs/brief --threads 1 [--domains textures,signs]   # resumable
    python benchmarks/brief_rank.py collect --steps 100 --out runs/brief [--write benchmarks/rankset/brief-100.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from mpnas.analysis.ranking import kendall_tau
from mpnas.baselines.bench import claimed
from mpnas.baselines.rankset import RESULT, train_path_alone
from mpnas.io import read_json, write_json
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.space.space import Path as SpacePath

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rankset import set_config  # noqa: E402  (the set's own recipe)

SET = HERE / "rankset" / "rankset.json"


def brief_config(seed: int, steps: int, threads: int | None) -> Any:
    return set_config(seed, threads, [f"train.steps={steps}", f"train.eval_every={steps}", f"train.log_every={steps}"])


def cmd_run(args: argparse.Namespace) -> None:
    the_set = read_json(SET, "rank set")
    cfg = brief_config(args.seed, args.steps, args.threads)
    torch.set_num_threads(args.threads or 1)
    domains, space = load_data(cfg, progress=False), build_space(cfg)
    for d, entry in the_set["domains"].items():
        if args.domains and d not in args.domains.split(","):
            continue
        for i, p in enumerate(entry["paths"]):
            piece = Path(args.out) / _folder(args.steps, args.seed) / d / f"p{i:02d}"
            if (piece / RESULT).is_file():
                continue
            with claimed(piece) as mine:
                if not mine or (piece / RESULT).is_file():
                    continue
                r = train_path_alone(cfg, domains, d, SpacePath.from_dict(p["path"], space, f"set path {d} p{i:02d}"),
                                     space, piece)
            print(f"{d} p{i:02d}: val {r['val_top1']:.2f} test {r['top1']:.2f} ({r['wall_time_s']} s)", flush=True)


def _folder(steps: int, seed: int) -> str:
    return f"steps{steps}" if seed == 0 else f"steps{steps}-seed{seed}"


def summarise(out: Path, steps: int, seed: int = 0) -> dict[str, Any]:
    the_set = read_json(SET, "rank set")
    result: dict[str, Any] = {"steps": steps, "seed": seed, "domains": {}}
    for d, entry in the_set["domains"].items():
        rows = []
        for i, p in enumerate(entry["paths"]):
            f = out / _folder(steps, seed) / d / f"p{i:02d}" / RESULT
            if f.is_file():
                r = read_json(f, "brief piece")
                rows.append((statistics.mean(p["top1"].values()), r["val_top1"], r["top1"], r["wall_time_s"]))
        if len(rows) < 2:
            continue
        full, val, test, wall = zip(*rows)
        tau_val, p_val = kendall_tau(list(val), list(full))
        tau_test, _ = kendall_tau(list(test), list(full))
        result["domains"][d] = {"paths": len(rows), "tau_val": round(tau_val, 4), "tau_val_p": round(p_val, 4),
                                "tau_test": round(tau_test, 4), "seed_tau": entry["summary"]["seed_tau"],
                                "brief_val_median": round(statistics.median(val), 2),
                                "wall_s_per_path": round(statistics.mean(wall), 1)}
    return result


def cmd_collect(args: argparse.Namespace) -> None:
    result = summarise(Path(args.out), args.steps, args.seed)
    for d, r in result["domains"].items():
        print(d, r)
    if args.write:
        write_json(Path(args.write), result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn in (("run", cmd_run), ("collect", cmd_collect)):
        p = sub.add_parser(name)
        p.add_argument("--steps", type=int, default=100)
        p.add_argument("--out", required=True)
        p.add_argument("--seed", type=int, default=0,
                       help="the brief training's seed; the set's own seeds are 0 and 1, so 2 shares no initialisation")
        if name == "run":
            p.add_argument("--threads", type=int, default=1)
            p.add_argument("--domains", default=None, help="only these set domains (default: all)")
        else:
            p.add_argument("--write", default=None)
        p.set_defaults(func=fn)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
