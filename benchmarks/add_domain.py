"""Adding a domain to a trained model (issue 28): hold out one built-in domain, run MPNAS on the other five, then
`mpnas add-domain` the held-out one, and compare with a full MPNAS run on all six and a stand-alone SD-NAS model
of the held-out domain, paired by seed.

    # each (held-out domain, seed) is one resumable piece; start the same command in two processes to use both cores
    python benchmarks/add_domain.py run --held-out textures,signs,mnist --seeds 0,1,2 --out runs/bench28 --threads 1
    # (--stage base runs only the five-domain runs; a later plain `run` adds the domains)
    # the stand-alone SD-NAS model of each held-out domain: `mpnas run --domains <held-out>`, searched and trained
    # alone, as SD-NAS does each domain
    python benchmarks/add_domain.py run --stage sd --held-out textures,signs,mnist --seeds 0,1,2 --out runs/bench28
    # a variant of add-domain on the same five-domain runs (e.g. another parameter cap), collected with --variant
    python benchmarks/add_domain.py run --stage variant --variant budget-1 --set add_domain.params_budget=1.0 \
        --held-out textures,signs,mnist --seeds 0,1,2 --out runs/bench28
    # the comparison; --full holds the full six-domain MPNAS runs: an `mpnas bench` directory, or a committed
    # bench.json (issue 24's end-to-end bench: same budget and seeds)
    python benchmarks/add_domain.py collect --out runs/bench28 --full benchmarks/bench-24/bench.json \
        --write benchmarks/bench-28
    # collect also writes the stand-alone models it used (sd-nas.json); they do not depend on add-domain, so a
    # rerun of the add-domain pieces can keep them instead of `run --stage sd`: --sd-nas benchmarks/bench-28/sd-nas.json

A piece is two commands a user would type, `mpnas run --domains <five>` and `mpnas add-domain --run ... --domains
<held-out>`, each with `--resume`, so a killed piece continues where it stopped. After both, the old domains'
logits on their whole evaluation split are compared, bit for bit, between the five-domain run and the new run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from mpnas.baselines.bench import claimed
from mpnas.data import iterate_split
from mpnas.io import read_json, write_json
from mpnas.rundir import load_data, read_architecture, read_config
from mpnas.search.controller import Controller
from mpnas.search.extend import ExtensionCost
from mpnas.space.extension import Admissible, Frozen
from mpnas.train.evaluate import load_trained_model

BUILTIN = ("digits", "mnist", "faces", "glyphs", "textures", "signs")


def _mpnas(*args: str) -> None:
    cmd = [sys.executable, "-c", "import sys; from mpnas.cli import main; sys.argv[0] = 'mpnas'; sys.exit(main())", *args]
    subprocess.run(cmd, check=True, env=os.environ.copy())


def identical_logits(base: Path, new: Path) -> dict[str, bool]:
    """Per old domain: whether the new run's logits on the domain's evaluation split equal the base run's, bit for
    bit."""
    cfg = read_config(base)
    old, added = load_trained_model(cfg, base).eval(), load_trained_model(read_config(new), new).eval()
    out = {}
    with torch.no_grad():
        for dom in load_data(cfg, progress=False):
            out[dom.name] = all(torch.equal(old(x, dom.name), added(x, dom.name))
                                for x, _ in iterate_split(dom, dom.eval_split(), 512))
    return out


def run_variant(piece: Path, held: str, seed: int, name: str, sets: list[str], common: list[str]) -> None:
    """Add the held-out domain again to the piece's finished five-domain run with `--set` overrides (a variant of
    add-domain, e.g. another `add_domain.params_budget`), into `variant-<name>/added`."""
    home = piece / f"variant-{name}"
    if not (piece / "base" / "results.json").is_file():
        print(f"{held} seed {seed}: no finished five-domain run yet, variant {name} skipped", flush=True)
        return
    with claimed(home) as mine:
        if not mine or (home / "piece.json").is_file():
            return
        extra = [a for kv in sets for a in ("--set", kv)]
        _mpnas("add-domain", "--run", str(piece / "base"), "--domains", held, *common, *extra, "--out", str(home / "added"))
        write_json(home / "piece.json", {"held_out": held, "seed": seed, "variant": name, "sets": sets,
                                         "old_logits_identical": identical_logits(piece / "base", home / "added")})
        print(f"{held} seed {seed}: variant {name} done", flush=True)


def run_piece(held: str, seed: int, out: Path, budget: str, threads: int, stage: str = "all",
              variant: str | None = None, sets: list[str] | None = None) -> None:
    piece = out / held / f"seed{seed}"
    others = ",".join(d for d in BUILTIN if d != held)
    common = ["--budget", budget, "--seed", str(seed), "--threads", str(threads), "--quiet", "--resume"]
    if stage == "variant":
        run_variant(piece, held, seed, variant or "", sets or [], common)
        return
    if stage == "sd":
        # the SD-NAS model: the domain searched alone, then trained from scratch (`mpnas run` of one domain); its
        # directory keeps the name of its first stage, which the bench once ran alone
        with claimed(piece / "sd") as mine:
            if mine and not (piece / "sd" / "search" / "results.json").is_file():
                _mpnas("run", "--data", "builtin", "--domains", held, *common, "--out", str(piece / "sd" / "search"))
        return
    base_only = stage == "base"
    with claimed(piece) as mine:
        if not mine:
            print(f"{held} seed {seed}: another process has it, skipped", flush=True)
            return
        if (piece / "piece.json").is_file():
            return
        _mpnas("run", "--data", "builtin", "--domains", others, *common, "--out", str(piece / "base"))
        if base_only:
            return
        _mpnas("add-domain", "--run", str(piece / "base"), "--domains", held, *common, "--out", str(piece / "added"))
        write_json(piece / "piece.json", {"held_out": held, "seed": seed, "budget": budget,
                                          "old_logits_identical": identical_logits(piece / "base", piece / "added")})
        print(f"{held} seed {seed}: done", flush=True)


def cmd_run(args: argparse.Namespace) -> None:
    if args.stage == "variant" and not args.variant:
        raise SystemExit("--stage variant needs --variant NAME (and its --set overrides)")
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: a partial bench has every domain paired
        for held in args.held_out.split(","):
            run_piece(held, seed, Path(args.out), args.budget, args.threads, args.stage, args.variant, args.set)


def _seconds(run: Path, stages: tuple[str, ...] = ("search", "train", "evaluate")) -> float:
    times = read_json(run / "stages.json", "stages file")
    return sum(float(times[s]["wall_time_s"]) for s in stages if s in times)


def _interval(diffs: list[float]) -> list[float] | None:
    if len(diffs) < 2:
        return None
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    m = statistics.mean(diffs)
    return [round(m - half, 3), round(m + half, 3)]


def full_runs(reference: Path) -> dict[int, dict[str, Any]]:
    """Per seed, the full six-domain MPNAS run's top-1 per domain and its wall time (search, train, evaluate): from
    an `mpnas bench` directory (its `mpnas/seed<n>` runs), or from a committed bench's `bench.json`."""
    if reference.is_file():
        bench = read_json(reference, "bench file")
        sd = {int(r["seed"]): r["top1"] for r in bench["methods"].get("sd-nas", {}).get("per_seed", [])}
        return {int(r["seed"]): {"top1": r["top1"], "wall_s": sum(float(v) for v in r["wall_time_s"].values()),
                                 "sd_nas_top1": sd.get(int(r["seed"]))}
                for r in bench["methods"]["mpnas"]["per_seed"]}
    out = {}
    for run in sorted((reference / "mpnas").glob("seed*")):
        if (run / "results.json").is_file():
            res = read_json(run / "results.json", "results")
            out[int(res["seed"])] = {"top1": {d: v["top1"] for d, v in res["domains"].items()}, "wall_s": _seconds(run)}
    return out


def stand_alone(held: str, seed: int, piece: Path, sd_ref: Path | None, full: dict[str, Any]) -> dict[str, Any] | None:
    """The held-out domain's SD-NAS model at `seed` (top-1, parameters, search and training time): from an `mpnas
    bench` directory with sd-nas, from the `sd-nas.json` an earlier collect wrote (the stand-alone models do not
    depend on add-domain, so a rerun of add-domain can keep them), or else the piece's own (`run --stage sd`);
    None when none is there. Beside it, the full bench's SD-NAS top-1 of that domain and seed, where it has one
    (a separate run of the same method, budget and seed)."""
    beside = {"top1_in_full_bench": (full.get("sd_nas_top1") or {}).get(held)}
    if sd_ref is not None and sd_ref.is_file():
        kept = read_json(sd_ref, "stand-alone SD-NAS file").get(f"{held}/seed{seed}")
        # its "from" already names the run it came from; the file itself is named in bench.json's "sd_nas"
        return None if kept is None else {**kept, **beside}
    sd = piece / "sd" / "search"
    if sd_ref is not None and (sd_ref / "sd-nas" / f"seed{seed}" / "domains" / held / "results.json").is_file():
        sd = sd_ref / "sd-nas" / f"seed{seed}" / "domains" / held
    if not (sd / "results.json").is_file():
        return None
    r = read_json(sd / "results.json", "results")["domains"][held]
    return {"top1": r["top1"], "params": r["params"], "wall_s": _seconds(sd), "from": str(sd), **beside}


def summarise(out: Path, full_ref: Path, sd_ref: Path | None, variant: str | None = None) -> dict[str, Any]:
    fulls = full_runs(full_ref)
    table: dict[str, Any] = {}
    used: dict[str, dict[str, Any]] = {}  # the stand-alone models, by "held/seed<n>", written as sd-nas.json
    for held_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        held, rows = held_dir.name, []
        for piece in sorted(held_dir.glob("seed*")):
            home = piece / f"variant-{variant}" if variant else piece
            if not (home / "piece.json").is_file():
                continue
            info = read_json(home / "piece.json", "piece")
            seed = info["seed"]
            if seed not in fulls:
                continue
            full = fulls[seed]
            sd_r = stand_alone(held, seed, piece, sd_ref, full)
            if sd_r is None:
                continue
            used[f"{held}/seed{seed}"] = {k: sd_r[k] for k in ("top1", "params", "wall_s", "from")}
            added = read_json(home / "added" / "results.json", "results")
            arch = read_architecture(home / "added")
            rows.append({
                "seed": seed,
                "top1": {"add_domain": added["domains"][held]["top1"], "full": full["top1"][held],
                         "sd_nas": sd_r["top1"]},
                "added_params": arch.meta["added"]["added_params"],
                "sd_nas_params": sd_r["params"], "sd_nas_from": sd_r["from"],
                "sd_nas_top1_in_full_bench": sd_r["top1_in_full_bench"],
                "reused_nodes": len(arch.meta["added"]["domains"][held]["reused_nodes"]),
                "new_nodes": len(arch.meta["added"]["domains"][held]["new_nodes"]),
                "wall_s": {"add_domain": round(_seconds(home / "added"), 1), "base": round(_seconds(piece / "base"), 1),
                           "full": round(full["wall_s"], 1), "sd_nas": round(sd_r["wall_s"], 1)},
                "old_logits_identical": all(info["old_logits_identical"].values()),
                # a trained domain whose path the new domain took whole, or None (before the masked sampler, the
                # stand-in of a search whose own draws never kept to the cap; now only a path the search chose)
                "took_path_of": next((d for d in arch.domains if d != held and arch.paths[d] == arch.paths[held]), None),
            })
        if not rows:
            continue
        gap = [r["top1"]["add_domain"] - r["top1"]["full"] for r in rows]
        ratio = [r["added_params"] / r["sd_nas_params"] for r in rows]
        time_ratio = [r["wall_s"]["add_domain"] / r["wall_s"]["full"] for r in rows]
        table[held] = {
            "seeds": [r["seed"] for r in rows], "rows": rows,
            "add_minus_full": {"mean": round(statistics.mean(gap), 3), "ci95": _interval(gap)},
            "add_minus_sd_nas": {"mean": round(statistics.mean(r["top1"]["add_domain"] - r["top1"]["sd_nas"] for r in rows), 3),
                                 "ci95": _interval([r["top1"]["add_domain"] - r["top1"]["sd_nas"] for r in rows])},
            "params_vs_sd_nas": round(statistics.mean(ratio), 4),
            "wall_vs_full": round(statistics.mean(time_ratio), 4),
            "old_logits_identical": all(r["old_logits_identical"] for r in rows),
            "targets": {"top1_within_1pt_of_full": statistics.mean(gap) >= -1.0,
                        "params_at_most_half_sd_nas": max(ratio) <= 0.5,
                        "wall_at_most_0.4x_full": max(time_ratio) <= 0.4},
        }
    return {"full": str(full_ref), "sd_nas": str(sd_ref) if sd_ref else "each piece's sd/search", "variant": variant,
            "held_out": table, "stand_alone": used}


def markdown(summary: dict[str, Any], command: str) -> str:
    title = "# Adding a domain to a trained model (issue 28)" + (f", variant `{summary['variant']}`" if summary.get("variant") else "")
    lines = [title, "", f"`{command}`", "",
             "Per held-out domain, mean over seeds (paired by seed; 95% t interval). `full` is MPNAS on all six "
             f"domains (from `{summary['full']}`), `sd-nas` a stand-alone searched model of the held-out domain "
             f"(from `{summary['sd_nas']}`), at the same budget and seeds.", "",
             "| held out | seeds | add-domain top-1 | full top-1 | add − full [95% CI] | SD-NAS top-1 | "
             "added params / SD-NAS params | wall add / full | old logits identical |",
             "|---|---|---|---|---|---|---|---|---|"]
    for held, t in summary["held_out"].items():
        rows = t["rows"]
        mean = lambda k: statistics.mean(r["top1"][k] for r in rows)  # noqa: E731
        ci = t["add_minus_full"]["ci95"]
        lines.append(f"| {held} | {len(rows)} | {mean('add_domain'):.2f} | {mean('full'):.2f} | "
                     f"{t['add_minus_full']['mean']:+.2f} {f'[{ci[0]:+.2f}, {ci[1]:+.2f}]' if ci else ''} | {mean('sd_nas'):.2f} | "
                     f"{t['params_vs_sd_nas']:.3f} | {t['wall_vs_full']:.3f} | {t['old_logits_identical']} |")
    lines += ["", "Per seed:", "", "| held out | seed | add | full | SD-NAS | added params | SD-NAS params | reused / new "
              "nodes | took the path of | wall add / base / full / SD-NAS (s) | add / base |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for held, t in summary["held_out"].items():
        for r in t["rows"]:
            w = r["wall_s"]
            lines.append(f"| {held} | {r['seed']} | {r['top1']['add_domain']:.2f} | {r['top1']['full']:.2f} | "
                         f"{r['top1']['sd_nas']:.2f} | {r['added_params']:,} | {r['sd_nas_params']:,} | "
                         f"{r['reused_nodes']} / {r['new_nodes']} | {r['took_path_of'] or '-'} | "
                         f"{w['add_domain']:.0f} / {w['base']:.0f} / {w['full']:.0f} / {w['sd_nas']:.0f} | "
                         f"{w['add_domain'] / w['base']:.3f} |")
    return "\n".join(lines) + "\n"


def cmd_collect(args: argparse.Namespace) -> None:
    summary = summarise(Path(args.out), Path(args.full), Path(args.sd_nas) if args.sd_nas else None, args.variant)
    text = markdown(summary, " ".join(["python benchmarks/add_domain.py", *sys.argv[1:]]))
    print(text)
    if args.write:
        dest = Path(args.write)
        dest.mkdir(parents=True, exist_ok=True)
        write_json(dest / "bench.json", {k: v for k, v in summary.items() if k != "stand_alone"})
        write_json(dest / "sd-nas.json", summary["stand_alone"])
        (dest / "bench.md").write_text(text)


def cmd_admitted(args: argparse.Namespace) -> None:
    """Why the new domain's controller samples through a mask, on a finished piece's base run: the share of an
    unconstrained, uniform controller's draws that fit RUN's modules, and that also keep to the parameter cap
    (the draws an unmasked search could train and learn from); beside it, the share of the masked controller's
    draws that are admitted (1 by construction) and the time a masked draw takes."""
    for held in args.held_out.split(","):
        piece = Path(args.out) / held / f"seed{args.seed}"
        base = read_architecture(piece / "base")
        frozen = Frozen.of(base)
        classes = read_architecture(piece / "added").num_classes[held]  # the held-out domain's, from the piece's add
        cost = ExtensionCost(base.space, {held: classes}, frozen, args.params_budget)
        masked = Controller(base.space, Admissible(frozen, classes, cost.budget))
        counts = {}
        for name, ctrl in (("uniform", Controller(base.space)), ("masked", masked)):
            gen, fits, admitted, t0 = torch.Generator().manual_seed(0), 0, 0, time.perf_counter()
            for _ in range(args.draws):
                geo = base.space.geometry(base.space.path_from_choices(ctrl.sample(gen)))
                ok = frozen.fits(geo)
                fits += ok
                admitted += ok and cost.added(held, geo) <= cost.budget
            counts[name] = (fits / args.draws, admitted / args.draws, (time.perf_counter() - t0) / args.draws * 1e3)
        (uf, ua, ut), (mf, ma, mt) = counts["uniform"], counts["masked"]
        print(f"{held} seed {args.seed} (cap {cost.budget:,} parameters): uniform draws fit {uf:.4f}, fit and keep "
              f"to the cap {ua:.4f} ({ut:.1f} ms a draw); masked draws fit {mf:.4f}, keep to the cap {ma:.4f} "
              f"({mt:.1f} ms a draw)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--held-out", default="textures,signs,mnist")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--variant", default=None, help="with --stage variant: its name (variant-<name>/ in each piece)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with --stage variant: add-domain's overrides")
    p.add_argument("--stage", choices=("base", "all", "sd", "variant"), default="all",
                   help="base: only the five-domain runs (the long part), so add-domain can be changed and run after; "
                        "sd: only the stand-alone SD-NAS models of the held-out domains; variant: add-domain again "
                        "on each finished five-domain run, with --set")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("admitted", help="how often an unmasked controller's draw would be admitted on a piece's "
                                        "base run, beside the masked controller's")
    p.add_argument("--out", required=True)
    p.add_argument("--held-out", default="textures,signs,mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params-budget", type=float, default=0.5)
    p.add_argument("--draws", type=int, default=2000)
    p.set_defaults(func=cmd_admitted)
    p = sub.add_parser("collect")
    p.add_argument("--out", required=True)
    p.add_argument("--full", required=True,
                   help="the full six-domain MPNAS runs: an `mpnas bench` directory or a bench.json")
    p.add_argument("--sd-nas", default=None,
                   help="an `mpnas bench` directory with sd-nas, or the sd-nas.json an earlier collect wrote "
                        "(default: each piece's `run --stage sd` search)")
    p.add_argument("--write", default=None)
    p.add_argument("--variant", default=None, help="collect a `run --stage variant` variant instead of the plain add-domain")
    p.set_defaults(func=cmd_collect)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
