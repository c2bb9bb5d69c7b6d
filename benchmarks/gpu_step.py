"""Training-step throughput on a GPU (or the CPU): what the dynamic modules cost against plain static ones.

Two ratios, each measured side by side in one process, alternating the order of the two steps:

1. merged / static: images/s of a training step of the merged multi-path model (every domain's batch through
   its own path, losses summed, one AdamW step) against the same architecture built from plain static modules
   (each domain's path extracted as a `PathNet`, trained in the same step). Goal: at least 0.9.
2. supernet / standalone: seconds per training step of the supernet running a sampled path against that path
   extracted as a standalone module, on the same batch. Goal: at most 1.05.

Both use the run's settings for the GPU step: `--precision bf16` (autocast, losses in float32) and
`--channels-last`, so the script also shows whether each helps (run it with and without).

    python benchmarks/gpu_step.py --device cuda --precision bf16 --batch 128
    python benchmarks/gpu_step.py --device cuda --precision bf16 --channels-last --batch 128
    python benchmarks/gpu_step.py --device cpu --precision fp32 --batch 32 --repeats 5   # a CPU check of the script
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mpnas.nn.merged import MultiPathModel
from mpnas.nn.supernet import Supernet
from mpnas.space.arch import Architecture
from mpnas.space.presets import get_space
from mpnas.train.optim import autocast, compute_dtype


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _step(params: list[nn.Parameter], opt: torch.optim.Optimizer, losses: Callable[[], list[torch.Tensor]]) -> None:
    opt.zero_grad(set_to_none=True)
    torch.stack(losses()).sum().backward()
    opt.step()


def _alternate(a: Callable[[], None], b: Callable[[], None], repeats: int, device: torch.device) -> list[float]:
    """Per-repeat ratios time(a) / time(b), the order alternating so that neither always runs second."""
    for _ in range(3):  # warm-up: allocator, cuDNN autotuning, optimiser state
        a()
        b()
    ratios = []
    for r in range(repeats):
        first, second = (a, b) if r % 2 else (b, a)
        t0 = _clock(device)
        first()
        t1 = _clock(device)
        second()
        t2 = _clock(device)
        ta, tb = (t1 - t0, t2 - t1) if r % 2 else (t2 - t1, t1 - t0)
        ratios.append(ta / tb)
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--domains", type=int, default=6)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128, help="images per domain per step")
    ap.add_argument("--paths", type=int, default=4, help="sampled paths for the supernet ratio")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="auto", help="auto | fp32 | bf16")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = compute_dtype(args.precision, device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    space = get_space(args.preset, args.resolution)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    names = [f"d{i}" for i in range(args.domains)]
    arch = Architecture(space, {d: space.random_path(rng) for d in names}, {d: args.classes for d in names})
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, args.classes, (args.batch,), device=device)

    def losses_of(forward: Callable[[str], torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
        def run() -> list[torch.Tensor]:
            out = []
            for d in names:
                with autocast(device, dtype):
                    logits = forward(d)
                out.append(F.cross_entropy(logits.float(), y))
            return out
        return run

    merged = MultiPathModel(arch, dropout=0.0).to(device).to(memory_format=fmt)
    static = nn.ModuleDict({d: merged.extract(d) for d in names}).to(device).to(memory_format=fmt)
    m_opt = torch.optim.AdamW(merged.parameters(), lr=1e-3)
    s_opt = torch.optim.AdamW(static.parameters(), lr=1e-3)
    merged_step = lambda: _step(list(merged.parameters()), m_opt, losses_of(lambda d: merged(x, d)))  # noqa: E731
    static_step = lambda: _step(list(static.parameters()), s_opt, losses_of(lambda d: static[d](x)))  # noqa: E731
    r1 = statistics.median(_alternate(static_step, merged_step, args.repeats, device))  # t_static / t_merged
    images = args.batch * args.domains

    supernet = Supernet(space, {"x": args.classes}, dropout=0.0).to(device).to(memory_format=fmt)
    sn_opt = torch.optim.AdamW(supernet.parameters(), lr=1e-3)
    ratios = []
    for _ in range(args.paths):
        path = space.random_path(rng)
        geo = space.geometry(path)
        plain = supernet.extract(path).to(device).to(memory_format=fmt)
        p_opt = torch.optim.AdamW(plain.parameters(), lr=1e-3)

        def one(forward: Callable[[], torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
            def run() -> list[torch.Tensor]:
                with autocast(device, dtype):
                    logits = forward()
                return [F.cross_entropy(logits.float(), y)]
            return run

        sup = lambda: _step(list(supernet.parameters()), sn_opt, one(lambda: supernet.forward_geometry(x, geo)))  # noqa: E731
        std = lambda: _step(list(plain.parameters()), p_opt, one(lambda: plain(x)))  # noqa: E731
        ratios += _alternate(sup, std, args.repeats, device)
    r2 = statistics.median(ratios)

    print(f"device {device}, precision {dtype or torch.float32}, channels_last {args.channels_last}, "
          f"{args.domains} domains x {args.batch} images at {args.resolution} px, space {args.preset}")
    t0 = _clock(device)
    for _ in range(args.repeats):
        merged_step()
    rate = images * args.repeats / (_clock(device) - t0)
    print(f"merged model: {rate:,.0f} images/s")
    print(f"merged / static images/s (goal >= 0.9): {r1:.3f}")
    print(f"supernet / standalone step time, median over {len(ratios)} steps on {args.paths} paths (goal <= 1.05): {r2:.3f}")


if __name__ == "__main__":
    main()
