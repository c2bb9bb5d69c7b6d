"""Does the supernet cost what the path it runs costs?

Time: a training step (forward, backward, optimiser step) of the supernet on a sampled path against the same
path extracted as a plain standalone module, on the same batch, alternated in one process so that machine
noise hits both alike; the median of the per-step ratios over several paths is printed (goal <= 1.05).

Memory: peak resident memory of a fresh process that runs two supernet training steps on the space's largest
path, against a fresh process that runs the largest path as a standalone module (goal <= 1.2). Each process
reports its peak RSS minus its RSS after importing torch, so the figure includes weights, gradients,
optimiser state and activations. On a GPU (--device cuda) peak allocated memory is used instead.

With `--strategy gradient` the supernet's step is the gradient strategy's relaxed step on the path: the
straight-through gates and FBNetV2 width masks built for it, the gated forward, and the backward into both
the weights and the architecture logits (what the masks and gates cost over the plain path).

    python benchmarks/supernet_vs_standalone.py --preset default --resolution 32 --batch 64
    python benchmarks/supernet_vs_standalone.py --preset default --resolution 32 --batch 64 --strategy gradient --skip-memory
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time

import torch

from mpnas.nn.blocks import PathNet
from mpnas.nn.supernet import Supernet
from mpnas.search.controller import Controller
from mpnas.search.relax import make_gates, relaxed_for
from mpnas.space.presets import get_space


def train_step(model, opt, x, y, fwd):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(fwd(model, x), y)
    loss.backward()
    opt.step()


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_ratio(args) -> None:
    device = torch.device(args.device)
    space = get_space(args.preset, args.resolution)
    torch.manual_seed(0)
    supernet = Supernet(space, {"x": args.classes}).to(device)
    s_opt = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)
    rng = random.Random(args.seed)
    x = torch.randn(args.batch, 3, space.resolution, space.resolution, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    ratios, per_path = [], []
    ctrl = Controller(space).to(device)
    for i in range(args.paths):
        path = space.random_path(rng)
        plain = supernet.extract(path).to(device)
        p_opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
        geo = space.geometry(path)
        if args.strategy == "gradient":
            choices = {**{d.key: d.options[0] for d in ctrl.decisions}, **space.choices_of(path)}

            def relaxed(m, a, geo=geo, choices=choices):
                return m.forward_geometry(a, geo, None, None, make_gates(space, geo, choices, relaxed_for(ctrl, choices, 1.0)))

            sup_step = lambda: train_step(supernet, s_opt, x, y, relaxed)  # noqa: E731
        else:
            sup_step = lambda: train_step(supernet, s_opt, x, y, lambda m, a: m.forward_geometry(a, geo))  # noqa: E731
        std_step = lambda: train_step(plain, p_opt, x, y, lambda m, a: m(a))  # noqa: E731
        for _ in range(2):  # warm-up: allocator, optimiser state
            sup_step()
            std_step()
        path_ratios = []
        for r in range(args.repeats):
            # alternate the order so that neither always runs second
            if r % 2:
                ts, tp = timed(sup_step, device), timed(std_step, device)
            else:
                tp, ts = timed(std_step, device), timed(sup_step, device)
            path_ratios.append(ts / tp)
        ratios += path_ratios
        per_path.append((i, statistics.median(path_ratios), tp * 1e3))
    for i, r, ms in per_path:
        print(f"  path {i}: supernet/standalone step time {r:.3f} (standalone {ms:.1f} ms)")
    print(f"step time ratio, median over {len(ratios)} steps on {args.paths} paths: {statistics.median(ratios):.3f}")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(args) -> None:
    """Runs in a fresh process: two training steps of one model on the largest path, prints peak memory."""
    device = torch.device(args.device)
    base = _rss_mb()
    space = get_space(args.preset, args.resolution)
    torch.manual_seed(0)
    path = space.largest_path()
    geo = space.geometry(path)
    # build only the model measured: a supernet built and freed first would stay in the peak RSS
    model = Supernet(space, {"x": args.classes}) if args.child == "supernet" else PathNet.build(geo, args.classes)
    model = model.to(device)
    fwd = (lambda m, a: m.forward_geometry(a, geo)) if args.child == "supernet" else (lambda m, a: m(a))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, space.resolution, space.resolution, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        train_step(model, opt, x, y, fwd)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"peak_mb": peak, "params": params}))


def memory_ratio(args) -> None:
    out = {}
    for which in ("supernet", "standalone"):
        cmd = [sys.executable, __file__, "--child", which, "--preset", args.preset, "--resolution", str(args.resolution),
               "--batch", str(args.batch), "--device", args.device, "--classes", str(args.classes)]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        out[which] = json.loads(res.stdout.strip().splitlines()[-1])
    s, p = out["supernet"], out["standalone"]
    print(f"  supernet: {s['params']:,} parameters, peak {s['peak_mb']:.1f} MiB")
    print(f"  largest path standalone: {p['params']:,} parameters, peak {p['peak_mb']:.1f} MiB")
    print(f"peak memory ratio supernet/largest path: {s['peak_mb'] / p['peak_mb']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--paths", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--strategy", choices=["rl", "gradient"], default="rl",
                    help="gradient: time the gradient strategy's gated step (see the docstring)")
    ap.add_argument("--skip-memory", action="store_true", help="time only")
    ap.add_argument("--child", choices=["supernet", "standalone"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        memory_child(args)
        return
    print(f"space {args.preset} at {args.resolution} px, batch {args.batch}, device {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"strategy {args.strategy}")
    time_ratio(args)
    if not args.skip_memory:
        memory_ratio(args)


if __name__ == "__main__":
    main()
