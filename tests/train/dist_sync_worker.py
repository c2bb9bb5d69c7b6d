"""Run under torchrun by test_distributed.py: search and train on the tiny fixture, then dump this rank's state.

Usage: torchrun --nproc_per_node 2 dist_sync_worker.py CONFIG.yaml OUT_DIR
Each rank writes OUT_DIR/rank{r}.pt with its controllers' logits, supernet weights and merged-model weights, so
the test can check that the ranks hold identical states (files are written here directly, not through mpnas.io,
which writes on rank 0 only).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mpnas import distributed
from mpnas.config import load_yaml
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.search.loop import run_search
from mpnas.train.trainer import train_architecture


def main(cfg_path: str, out: str) -> None:
    cfg = load_yaml(Path(cfg_path))
    ranks = distributed.init("cpu")
    torch.set_num_threads(1)
    out_dir = Path(out)
    domains = load_data(cfg, progress=False)
    arch, search = run_search(cfg, domains, build_space(cfg), out_dir / "run", progress=False)
    model, _ = train_architecture(cfg, domains, arch, out_dir / "run" / "model.safetensors", progress=False)
    state = {
        "controllers": {g: c.state_dict() for g, c in search.controllers.items()},
        "supernet": search.supernet.state_dict(),
        "model": model.state_dict(),
        "domains": arch.to_dict()["domains"],
    }
    torch.save(state, out_dir / f"rank{ranks.rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
