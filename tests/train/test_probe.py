"""A probe that evaluates during training (learning curves for benchmarks) leaves training exactly as it was."""

from __future__ import annotations

import torch

from mpnas.baselines.methods import random_architecture
from mpnas.rundir import load_data
from mpnas.train.evaluate import evaluate
from mpnas.train.trainer import train_architecture


def test_a_probed_run_trains_bit_for_bit_as_an_unprobed_one(tiny_cfg, tmp_path):
    domains = load_data(tiny_cfg, progress=False)
    arch = random_architecture(tiny_cfg, domains, seed=3)
    plain, _ = train_architecture(tiny_cfg, domains, arch, tmp_path / "a.safetensors", progress=False, log=lambda r: None)
    seen = []

    def probe(step, model):
        seen.append((step, evaluate(model, domains, "val", 4)))

    probed, _ = train_architecture(tiny_cfg, domains, arch, tmp_path / "b.safetensors", progress=False,
                                   log=lambda r: None, probe=probe)
    assert [s for s, _ in seen] == list(range(1, tiny_cfg.train.steps + 1))
    for (name, a), b in zip(plain.state_dict().items(), probed.state_dict().values()):
        assert torch.equal(a, b), name
