"""Is glyphs' late take-off a property of the data or of mpnas's networks? (issue 24)

A plain three-layer CNN (conv-BN-ReLU x3, two max-pools, global average pool, linear), AdamW at 2e-3, batch 32,
trained on one built-in domain; prints training loss and validation top-1 (1,000 images) every 25 steps.

    python benchmarks/takeoff_plain_cnn.py --domain glyphs                 # mpnas's augmentation
    python benchmarks/takeoff_plain_cnn.py --domain glyphs --no-augment
    python benchmarks/takeoff_plain_cnn.py --domain glyphs --input grey     # colour removed
    python benchmarks/takeoff_plain_cnn.py --domain glyphs --input per-image   # each image standardised alone
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from mpnas.data import DomainSet, MultiDomainLoader, iterate_split, load_domains


def prepare(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "grey":
        return x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    if mode == "per-image":
        return (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1e-5)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="glyphs")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--input", choices=("as-is", "grey", "per-image"), default="as-is")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    all_domains = load_domains("builtin", [args.domain], resolution=32, progress=False)
    dom = all_domains[args.domain]
    loader = MultiDomainLoader(DomainSet(all_domains.source, [dom]), args.batch, split="train", seed=args.seed,
                               augment=not args.no_augment)

    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

    model = nn.Sequential(block(3, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2), block(64, 128),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, dom.num_classes))
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.01)
    xv, yv = next(iterate_split(dom, "val", 1000))
    for step in range(args.steps + 1):
        x, y = loader.next()[args.domain]
        loss = F.cross_entropy(model(prepare(x, args.input)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(prepare(xv, args.input)).argmax(1) == yv).float().mean().item() * 100
            model.train()
            print(f"step {step:4d}  loss {loss.item():.3f}  val top-1 {acc:.1f}", flush=True)


if __name__ == "__main__":
    main()
