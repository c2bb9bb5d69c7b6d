"""Slimmable training: the sandwich step trains every configuration it draws, only the full widths move batch
norm's running statistics, the draws depend on (seed, step) alone, and measuring a configuration leaves the
model as it was."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from mpnas.config import apply_overrides
from mpnas.nn.dynamic import DynamicBatchNorm2d
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.space.arch import Architecture
from mpnas.space.widths import Widths
from mpnas.train import trainer
from mpnas.train.checkpoint import Checkpointer
from mpnas.train.optim import progress_bar
from mpnas.train.slimmable import measure_widths, sandwich

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tiny_cfg):
    cfg = apply_overrides(tiny_cfg, ["train.slimmable=true", "train.slim_random=2", "train.recalibrate_batches=2"])
    domains = load_data(cfg, progress=False)
    space = build_space(cfg)
    rng = random.Random(1)
    arch = Architecture(space, {d.name: space.random_path(rng) for d in domains}, {d.name: d.num_classes for d in domains})
    return cfg, domains, arch


def _one_step(cfg, domains, arch, record: list | None = None):
    state = trainer._new_state(cfg, domains, arch, 10, torch.device("cpu"))
    if record is not None:
        forward = state.model.forward

        def spy(x, d, geometry=None):
            record.append((d, geometry or state.model.active[d]))
            return forward(x, d, geometry)

        state.model.forward = spy
    quiet = Checkpointer(Path("unused"), "train", 0, "", None)
    tc = cfg.train
    trainer._train_steps(state, domains, arch, Path("unused"), 10, tc, lambda row: None, progress_bar(1, "", False), quiet,
                         until=1)
    return state


def test_the_sandwich_step_trains_every_configuration(setup):
    cfg, domains, arch = setup
    calls: list = []
    slim_state = _one_step(cfg, domains, arch, calls)
    model = slim_state.model
    drawn = sandwich(model, cfg.train.slim_multipliers, cfg.seed, 0, cfg.train.slim_random)
    smallest = model.slimmed(Widths.uniform(arch, 0.5))
    for d in arch.domains:
        seen = [g for dom, g in calls if dom == d]
        # the full widths, then the smallest, then the random draws: 1 + 1 + slim_random passes per domain
        assert seen == [model.geometries[d]] + [c[d] for c in drawn]
        assert seen[1] == smallest[d]
        assert len(seen) == 2 + cfg.train.slim_random

    plain_cfg = apply_overrides(cfg, ["train.slimmable=false"])
    plain_state = _one_step(plain_cfg, domains, arch)
    slim_w, plain_w = slim_state.model.state_dict(), plain_state.model.state_dict()
    stats = [k for k in slim_w if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in slim_w if k not in stats]
    # the slimmed passes change the step's update of the weights ...
    assert any(not torch.equal(slim_w[k], plain_w[k]) for k in weights)
    # ... but not batch norm's running statistics: only the full widths move those
    assert all(torch.equal(slim_w[k], plain_w[k]) for k in stats)


def test_the_smallest_configuration_gets_gradients_from_its_own_pass(setup):
    """With the teacher's pass alone a narrow prefix gets gradient too, so compare against the full pass only:
    adding the slimmed passes must change the gradient of the channels the smallest configuration uses."""
    cfg, domains, arch = setup
    model = trainer._new_state(cfg, domains, arch, 10, torch.device("cpu")).model
    from mpnas.train.slimmable import slim_losses

    batch = {d.name: (torch.randn(4, 3, 16, 16), torch.randint(0, d.num_classes, (4,))) for d in domains}
    teacher = {d: model(x, d).detach() for d, (x, _) in batch.items()}
    configs = sandwich(model, cfg.train.slim_multipliers, 0, 0, 0)  # the smallest only
    slim_losses(model, batch, teacher, configs, 0.5, 0.0).sum().backward()
    stem_conv = model.stem.conv.weight if hasattr(model.stem, "conv") else next(iter(model.stem.options.values())).conv.weight
    smallest_stem = configs[0][arch.domains[0]].stem.out_ch
    assert stem_conv.grad[:smallest_stem].abs().sum() > 0
    assert stem_conv.grad[smallest_stem:].abs().sum() == 0  # nothing beyond the smallest prefix ran


def test_draws_depend_on_seed_and_step_only(setup):
    cfg, domains, arch = setup
    model = trainer._new_state(cfg, domains, arch, 10, torch.device("cpu")).model
    a = sandwich(model, [0.5, 0.75, 1.0], 3, 7, 4)
    assert a == sandwich(model, [0.5, 0.75, 1.0], 3, 7, 4)
    assert a != sandwich(model, [0.5, 0.75, 1.0], 3, 8, 4)
    assert a != sandwich(model, [0.5, 0.75, 1.0], 4, 7, 4)


def test_measuring_a_configuration_leaves_the_model_unchanged(setup):
    cfg, domains, arch = setup
    model = trainer._new_state(cfg, domains, arch, 10, torch.device("cpu")).model
    before = copy.deepcopy(model.state_dict())
    top1 = measure_widths(model, Widths.uniform(arch, 0.5), domains, cfg)
    assert set(top1) == set(arch.domains)
    assert model.active == model.geometries
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m.frozen for m in model.modules() if isinstance(m, DynamicBatchNorm2d))
