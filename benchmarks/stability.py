"""Training that does not depend on luck (issue 24): one fixed architecture trained with several seeds under named
recipes. Per recipe, seed and domain: test top-1, and the step at which validation top-1 first reaches 3x chance
(the take-off), from a learning curve probed during training without changing it.

    # a whole recipe, every seed (each (recipe, seed) is one resumable piece; start several processes to split)
    python benchmarks/stability.py run --recipe before --seeds 0,1,2,3,4 --out runs/stability --threads 1
    # only the first steps of the default schedule: the take-off of a candidate recipe, in a minute a seed
    python benchmarks/stability.py run --recipe zero-init --seeds 0,1,2 --until 300 --out runs/stability-screen
    # std over seeds, take-off per domain; writes benchmarks/stability/stability.json with --write
    python benchmarks/stability.py collect --out runs/stability --write benchmarks/stability/stability.json

A recipe is a list of `--set` overrides on the `default` budget. `before` pins the recipe that issue 13's benches
used, so it still means the same after the defaults change; `after` is the current default (no overrides).
The fixed architecture is `benchmarks/stability/architecture.json` (MPNAS, seed 0, default budget).

"3x chance" is 3 / classes; for two classes that is above 100%, so the take-off of faces is halfway from chance
to 100% (75%).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from mpnas.baselines.bench import claimed
from mpnas.config import resolve_config
from mpnas.data import DomainSet
from mpnas.io import read_json, write_json
from mpnas.nn.merged import MultiPathModel
from mpnas.rundir import load_data
from mpnas.train.optim import apply_threads
from mpnas.space.arch import Architecture
from mpnas.train.evaluate import evaluate
from mpnas.train.trainer import train_architecture

HERE = Path(__file__).resolve().parent
ARCH = HERE / "stability" / "architecture.json"

# The training recipe of the `default` budget before issue 24, pinned field by field.
BEFORE = ["train.optim.lr=0.002", "train.optim.warmup_frac=0.025", "train.label_smoothing=0.1", "train.dropout=0.2",
          "train.batch_size=32", "loss.kind=exp_dec", "model.zero_init_residual=false", "model.bn_momentum=0.1",
          "model.init=pytorch", "train.batch_per_class=0"]
RECIPES: dict[str, list[str]] = {
    "before": BEFORE,
    "after": [],
    # candidates, each one change from `before`
    "lr-4e-3": BEFORE + ["train.optim.lr=0.004"],
    "lr-1e-3": BEFORE + ["train.optim.lr=0.001"],
    "warmup-0.1": BEFORE + ["train.optim.warmup_frac=0.1"],
    "zero-init": BEFORE + ["model.zero_init_residual=true"],
    "bn-momentum-0.01": BEFORE + ["model.bn_momentum=0.01"],
    "bn-momentum-0.3": BEFORE + ["model.bn_momentum=0.3"],
    "no-smoothing-dropout": BEFORE + ["train.label_smoothing=0.0", "train.dropout=0.0"],
    "loss-identity": BEFORE + ["loss.kind=x"],
    "batch-64": BEFORE + ["train.batch_size=64"],
    "init-torchvision": BEFORE + ["model.init=torchvision"],
    "batch-128": BEFORE + ["train.batch_size=128"],
    "batch-64-zero-init": BEFORE + ["train.batch_size=64", "model.zero_init_residual=true"],
    "class-batch-2": BEFORE + ["train.batch_per_class=2"],
    "class-batch-2-zero-init": BEFORE + ["train.batch_per_class=2", "model.zero_init_residual=true"],
}


def threshold(num_classes: int) -> float:
    """Validation top-1 (percent) that counts as having left chance: 3x chance, or halfway to 100% for 2 classes."""
    chance = 100.0 / num_classes
    return min(3 * chance, (chance + 100.0) / 2)


def probe_steps(total: int, until: int | None) -> set[int]:
    """Every 25 steps through the first 30% of training (where take-off happens), then every 100."""
    end = until or total
    early = set(range(25, min(end, int(0.3 * total)) + 1, 25))
    return early | set(range(100, end + 1, 100))


class _Enough(Exception):
    """Raised by the probe to stop a screening run after `--until` steps."""


def run_piece(recipe: str, seed: int, out: Path, threads: int | None, until: int | None, extra: list[str],
              only: list[str] | None = None) -> dict[str, Any]:
    overrides = RECIPES[recipe] + extra + [f"seed={seed}"] + ([f"threads={threads}"] if threads else [])
    cfg = resolve_config("default", overrides=overrides)
    apply_threads(cfg)
    domains = load_data(cfg, progress=False)
    arch = Architecture.load(ARCH)
    if only:  # those domains' paths alone (as SD-NAS trains them): a cheap screen of a recipe
        domains = DomainSet(domains.source, [domains[d] for d in only])
        arch = Architecture(arch.space, {d: arch.paths[d] for d in only}, {d: arch.num_classes[d] for d in only})
    piece = out / recipe / f"seed{seed}"
    piece.mkdir(parents=True, exist_ok=True)
    at = probe_steps(cfg.train.steps, until)
    curve: list[dict[str, Any]] = []

    def probe(step: int, model: MultiPathModel) -> None:
        if step in at:
            curve.append({"step": step, "val_top1": evaluate(model, domains, "val", cfg.train.eval_batch_size)})
        if until is not None and step >= until:
            raise _Enough

    t0 = time.perf_counter()
    result: dict[str, Any] = {"recipe": recipe, "overrides": RECIPES[recipe] + extra, "seed": seed, "until": until}
    try:
        model, state = train_architecture(cfg, domains, arch, piece / "model.safetensors", progress=False,
                                          log=lambda row: None, probe=probe)
        result["top1"] = evaluate(model, domains, None, cfg.train.eval_batch_size)
        result["val_top1"] = evaluate(model, domains, "val", cfg.train.eval_batch_size)
        result["best_step"] = state.best_step
    except _Enough:
        pass
    result["wall_time_s"] = round(time.perf_counter() - t0, 1)
    result["curve"] = curve
    result["takeoff"] = {d.name: next((c["step"] for c in curve if c["val_top1"][d.name] >= threshold(d.num_classes)), None)
                         for d in domains}
    result["steps"] = cfg.train.steps
    write_json(piece / "result.json", result)
    return result


def cmd_run(args: argparse.Namespace) -> None:
    for recipe in args.recipe.split(","):
        if recipe not in RECIPES:
            raise SystemExit(f"recipe {recipe!r} unknown; choose from {', '.join(RECIPES)}")
        for seed in [int(s) for s in args.seeds.split(",")]:
            piece = args.out / recipe / f"seed{seed}"
            if (piece / "result.json").is_file():
                continue
            with claimed(piece) as mine:
                if not mine:
                    continue
                r = run_piece(recipe, seed, args.out, args.threads, args.until, args.set,
                              args.domains.split(",") if args.domains else None)
            print(f"{recipe} seed {seed}: take-off {r['takeoff']} top1 {r.get('top1')} ({r['wall_time_s']} s)", flush=True)


def summarise(out: Path) -> dict[str, Any]:
    recipes: dict[str, Any] = {}
    for rdir in sorted(p for p in out.iterdir() if p.is_dir()):
        pieces = [read_json(f, "result") for f in sorted(rdir.glob("seed*/result.json"))]
        if not pieces:
            continue
        domains = list(pieces[0]["takeoff"])
        entry: dict[str, Any] = {"seeds": [p["seed"] for p in pieces], "overrides": pieces[0]["overrides"],
                                 "steps": pieces[0]["steps"], "takeoff": {}, "top1": {}, "std": {}}
        for d in domains:
            entry["takeoff"][d] = [p["takeoff"][d] for p in pieces]
            if all("top1" in p for p in pieces):
                vals = [round(p["top1"][d], 3) for p in pieces]
                entry["top1"][d] = vals
                entry["std"][d] = round(statistics.stdev(vals), 3) if len(vals) > 1 else None
        if all("top1" in p for p in pieces):
            means = [statistics.mean(p["top1"].values()) for p in pieces]
            entry["mean_top1"] = [round(m, 3) for m in means]
        recipes[rdir.name] = entry
    return recipes


def cmd_collect(args: argparse.Namespace) -> None:
    recipes = summarise(args.out)
    for name, e in recipes.items():
        print(f"\n{name} (seeds {e['seeds']}, {e['steps']} steps)")
        for d, t in e["takeoff"].items():
            top = e["top1"].get(d)
            cell = f"  top1 {top} std {e['std'][d]}" if top else ""
            print(f"  {d:9s} take-off {t}{cell}")
    if args.write:
        write_json(args.write, {"architecture": str(ARCH.relative_to(HERE.parent)), "budget": "default",
                                "recipes": {k: v for k, v in recipes.items() if not args.only or k in args.only.split(",")}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--recipe", required=True, help="recipe name(s), comma-separated")
    r.add_argument("--seeds", default="0,1,2,3,4")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--until", type=int, default=None, help="stop after this many steps (take-off only)")
    r.add_argument("--set", action="append", default=[], help="extra override on top of the recipe")
    r.add_argument("--domains", default=None, help="train only these domains' paths, each alone in one model")
    c = sub.add_parser("collect")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--write", type=Path, default=None)
    c.add_argument("--only", default=None, help="recipes to write, comma-separated (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads) if getattr(args, "threads", None) else None
    {"run": cmd_run, "collect": cmd_collect}[args.cmd](args)


if __name__ == "__main__":
    main()
