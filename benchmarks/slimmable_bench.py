"""Issue 17's bench: one slimmable model against models of the same widths trained from scratch (seed 003).

For each seed, with that seed's searched architecture (ARCHS/seed<N>/architecture.json, e.g. the `mpnas` runs of
a `mpnas bench`):
  1. train the merged model with `train.slimmable=true` (default budget otherwise) and evaluate it at full widths;
  2. `configure` it at 100%, 85%, 70% and 50% of its full MACs and at its smallest widths (equal preferences),
     and measure each configuration on the test split (`evaluate --config`);
  3. train the same widths from scratch, not slimmable (at 100% that is the plain, non-slimmable model);
  4. at 70% (and, added after the first collection showed little at 70%, at 50%) of the MACs, configure once per
     domain with that domain's weight raised to 4 and measure it.
Every step is skipped when its output exists, so the bench can be split over processes (`--seeds`) and resumed.

    python benchmarks/slimmable_bench.py --archs runs/final/mpnas --seeds 0,1,2 --out runs/b17 --threads 1
    python benchmarks/slimmable_bench.py --out runs/b17 --collect benchmarks/bench-17-slimmable

`--collect` writes bench.json, bench.md and figures/ from whatever finished, with paired intervals over seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

FRACS = ("1.0", "0.85", "0.7", "0.5", "min")
PREFER_FRACS, PREFER_WEIGHT = (0.7, 0.5), 4.0


SETTINGS: dict[str, Any] = {"budget": "default", "sets": []}  # from the command line, for every run


def _cfg(seed: int, threads: int | None, slimmable: bool) -> Any:
    from mpnas.config import resolve_config

    sets = [*SETTINGS["sets"], f"seed={seed}", f"train.slimmable={'true' if slimmable else 'false'}"]
    if threads:
        sets.append(f"threads={threads}")
    return resolve_config(SETTINGS["budget"], overrides=sets)


def _train_and_evaluate(cfg: Any, run_dir: Path, arch: Any, domains: Any) -> dict[str, Any]:
    from mpnas.io import read_json
    from mpnas.pipeline import stage_evaluate, stage_train
    from mpnas.rundir import ARCH, RESULTS, write_config

    if (run_dir / RESULTS).is_file():
        return read_json(run_dir / RESULTS)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)
    if not (run_dir / ARCH).is_file():
        arch.save(run_dir / ARCH)
    model = stage_train(cfg, run_dir, domains, progress=False, resume=True)
    return stage_evaluate(cfg, run_dir, domains, model)


def run_seed(seed: int, archs: Path, out: Path, threads: int | None) -> None:
    from mpnas.space.configure import configure
    from mpnas.io import read_json, write_json
    from mpnas.pipeline import evaluate_widths
    from mpnas.rundir import load_data, read_slim_table
    from mpnas.train.optim import apply_threads
    from mpnas.space.arch import Architecture
    from mpnas.space.widths import Widths, slim_architecture, widths_cost

    arch = Architecture.load(archs / f"seed{seed}" / "architecture.json")
    cfg = _cfg(seed, threads, True)
    apply_threads(cfg)
    domains = load_data(cfg, progress=False)
    slim_dir = out / "slim" / f"seed{seed}"
    t0 = time.perf_counter()
    _train_and_evaluate(cfg, slim_dir, arch, domains)
    print(f"seed {seed}: slimmable model trained and profiled ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    table = read_slim_table(slim_dir, arch)
    options = sorted(cfg.train.slim_multipliers)
    full = widths_cost(arch, Widths.uniform(arch, 1.0))[0].macs
    smallest = widths_cost(arch, Widths.uniform(arch, options[0]))[0].macs
    jobs = [(f"f{f}", full * float(f) if f != "min" else smallest, {}) for f in FRACS]
    for frac in PREFER_FRACS:
        suffix = "" if frac == PREFER_FRACS[0] else f"@{frac}"
        jobs += [(f"prefer-{d}{suffix}", frac * full, {d: PREFER_WEIGHT}) for d in arch.domains]
    configs = slim_dir / "configs"
    configs.mkdir(exist_ok=True)
    for name, limit, prefer in jobs:
        path = configs / f"{name}.json"
        if path.is_file() and "mean_top1_measured_test" in read_json(path):
            continue
        chosen = configure(arch, table, "macs", limit, prefer)
        write_json(path, chosen)
        evaluate_widths(cfg, slim_dir, path)
    for f in FRACS:
        widths = Widths.from_dict(read_json(configs / f"f{f}.json")["widths"], arch, options, f"f{f}")
        t0 = time.perf_counter()
        _train_and_evaluate(_cfg(seed, threads, False), out / "scratch" / f"seed{seed}" / f"f{f}",
                            slim_architecture(arch, widths), domains)
        print(f"seed {seed}: from scratch at {f} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------
# Collecting.


def collect(out: Path, dest: Path) -> dict[str, Any]:
    from mpnas.analysis.stats import paired_difference
    from mpnas.io import read_json, write_json

    seeds = sorted(int(p.name[4:]) for p in (out / "slim").glob("seed*") if (p / "results.json").is_file())
    rows: dict[str, Any] = {"seeds": seeds, "budgets": {}, "preferences": {}, "profile": {}}
    for f in FRACS:
        slim, scratch, macs = {}, {}, {}
        for s in seeds:
            c = out / "slim" / f"seed{s}" / "configs" / f"f{f}.json"
            r = out / "scratch" / f"seed{s}" / f"f{f}" / "results.json"
            if c.is_file() and r.is_file():
                cj = read_json(c)
                slim[s], scratch[s], macs[s] = cj["mean_top1_measured_test"], read_json(r)["mean_top1"], cj["macs_total"]
        if not slim:
            continue
        full = {s: read_json(out / "slim" / f"seed{s}" / "results.json")["macs_total"] for s in slim}
        rows["budgets"][f] = {
            "macs": macs, "macs_frac": {s: macs[s] / full[s] for s in macs},
            "slimmable": slim, "scratch": scratch,
            "slimmable_minus_scratch": paired_difference(slim, scratch).to_dict(),
        }
    for s in seeds:
        for frac in PREFER_FRACS:
            suffix = "" if frac == PREFER_FRACS[0] else f"@{frac}"
            base = out / "slim" / f"seed{s}" / "configs" / f"f{frac}.json"
            if not base.is_file():
                continue
            equal = read_json(base)
            for d in equal["domains"]:
                p = out / "slim" / f"seed{s}" / "configs" / f"prefer-{d}{suffix}.json"
                cj = read_json(p) if p.is_file() else {}
                if "mean_top1_measured_test" not in cj:
                    continue
                entry = rows["preferences"].setdefault(f"{frac}", {}).setdefault(d, {
                    "preferred": {}, "equal": {}, "mean_preferred": {}, "mean_equal": {}, "macs_preferred": {},
                    "macs_equal": {}})
                entry["preferred"][s] = cj["domains"][d]["top1_measured_test"]
                entry["equal"][s] = equal["domains"][d]["top1_measured_test"]
                entry["mean_preferred"][s] = cj["mean_top1_measured_test"]
                entry["mean_equal"][s] = equal["mean_top1_measured_test"]
                entry["macs_preferred"][s] = cj["domains"][d]["macs"]
                entry["macs_equal"][s] = equal["domains"][d]["macs"]
        table = read_json(out / "slim" / f"seed{s}" / "slim_table.json")
        stages = read_json(out / "slim" / f"seed{s}" / "stages.json")
        plain = out / "scratch" / f"seed{s}" / "f1.0" / "stages.json"
        rows["profile"][s] = {
            "bn": [{"widths": r["widths"][next(iter(r["widths"]))]["stem"], "recalibrated": r["recalibrated"],
                    "mean_val_top1": r["mean_val_top1"]} for r in table["rows"] if r["kind"] in ("full", "uniform")],
            "profile_s": table["seconds"],
            "train_s": stages["train"]["wall_time_s"],
            "plain_train_s": read_json(plain)["train"]["wall_time_s"] if plain.is_file() else None,
        }
    for e in (e for by in rows["preferences"].values() for e in by.values()):
        e["preferred_minus_equal"] = paired_difference(e["preferred"], e["equal"]).to_dict()
        e["mean_cost"] = paired_difference(e["mean_preferred"], e["mean_equal"]).to_dict()
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "bench.json", rows)
    figure = _figure(rows, dest / "figures")
    (dest / "bench.md").write_text(_markdown(rows, figure))
    return rows


def _mean(values: dict[Any, float]) -> float:
    return sum(values.values()) / len(values)


def _interval(p: dict[str, Any]) -> str:
    if p["low"] is None:
        return f"{p['mean']:+.2f}"
    return f"{p['mean']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]"


def _markdown(rows: dict[str, Any], figure: str | None) -> str:
    seeds = rows["seeds"]
    lines = [
        "# Slimmable multi-path model against the same widths trained from scratch (issue 17)",
        "",
        f"Seeds {', '.join(map(str, seeds))}; default budget; test top-1 (%), mean over the six built-in domains.",
        "Slimmable: one model per seed, trained with `train.slimmable=true`, configured by `mpnas configure` for each",
        "budget (equal preferences) and measured at those widths after batch-norm recalibration. From scratch: the same",
        "widths as a plain architecture, trained alone with the same seed and steps. Differences are paired by seed,",
        "with 95% t intervals.",
        "",
        "## Controllability: mean top-1 against MACs",
        "",
        "| budget | MACs (M, mean) | of full | slimmable | from scratch | slimmable - scratch |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for f, b in rows["budgets"].items():
        lines.append(f"| {f} | {_mean(b['macs']) / 1e6:.2f} | {_mean(b['macs_frac']):.2f} | {_mean(b['slimmable']):.2f} | "
                     f"{_mean(b['scratch']):.2f} | {_interval(b['slimmable_minus_scratch'])} |")
    if figure:
        lines += ["", f"![mean top-1 against MACs]({figure})"]
    for frac, by in rows["preferences"].items():
        lines += [
            "",
            f"## Preferences: at {float(frac):.0%} of the full MACs, one domain's weight raised to {PREFER_WEIGHT:g}",
            "",
            "| domain | its top-1, equal | its top-1, preferred | gain | its MACs, equal → preferred (M) | mean top-1 change |",
            "| --- | ---: | ---: | --- | --- | --- |",
        ]
        for d, e in by.items():
            lines.append(f"| {d} | {_mean(e['equal']):.2f} | {_mean(e['preferred']):.2f} | "
                         f"{_interval(e['preferred_minus_equal'])} | {_mean(e['macs_equal']) / 1e6:.2f} → "
                         f"{_mean(e['macs_preferred']) / 1e6:.2f} | {_interval(e['mean_cost'])} |")
    lines += ["", "## Batch norm: statistics sliced from the full widths, or recalibrated (validation top-1)", "",
              "| seed | uniform multiplier | sliced | recalibrated |", "| --- | ---: | ---: | ---: |"]
    for s, p in rows["profile"].items():
        by: dict[Any, dict[bool, float]] = {}
        for r in p["bn"]:
            by.setdefault(r["widths"], {})[r["recalibrated"]] = r["mean_val_top1"]
        for m, v in sorted(by.items()):
            if False in v:
                lines.append(f"| {s} | {m} | {v[False]:.2f} | {v[True]:.2f} |")
    lines += ["", "## Wall time (s)", "", "| seed | slimmable training | its profiling | plain training |",
              "| --- | ---: | ---: | ---: |"]
    for s, p in rows["profile"].items():
        plain = "-" if p["plain_train_s"] is None else f"{p['plain_train_s']:.0f}"
        lines.append(f"| {s} | {p['train_s'] - p['profile_s']:.0f} | {p['profile_s']:.0f} | {plain} |")
    return "\n".join(lines) + "\n"


def _figure(rows: dict[str, Any], folder: Path) -> str | None:
    if not rows["budgets"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, marker in (("slimmable", "one slimmable model, configured", "o"), ("scratch", "same widths, from scratch", "s")):
        xs = [_mean(b["macs"]) / 1e6 for b in rows["budgets"].values()]
        ys = [_mean(b[key]) for b in rows["budgets"].values()]
        (line,) = ax.plot(xs, ys, marker=marker, label=f"{label} (mean; faint: each seed)")
        for b in rows["budgets"].values():
            ax.scatter([b["macs"][s] / 1e6 for s in b[key]], list(b[key].values()), marker=marker, alpha=0.3, s=14,
                       color=line.get_color())
    ax.set_xlabel("MACs, one image per domain (M)")
    ax.set_ylabel("mean test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "controllability.png", dpi=120)
    plt.close(fig)
    return "figures/controllability.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=Path, help="folder with seed<N>/architecture.json")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, required=True, help="where the runs go")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--collect", type=Path, default=None, help="write bench.json, bench.md and figures here")
    parser.add_argument("--budget", default="default")
    parser.add_argument("--set", action="append", default=[], help="config override for every run (smoke tests)")
    args = parser.parse_args()
    SETTINGS.update(budget=args.budget, sets=args.set)
    if args.collect:
        collect(args.out, args.collect)
        print((args.collect / "bench.md").read_text())
        return
    if args.archs is None:
        parser.error("--archs is needed to run the bench")
    for s in (int(x) for x in args.seeds.split(",")):
        run_seed(s, args.archs, args.out, args.threads)


if __name__ == "__main__":
    main()
