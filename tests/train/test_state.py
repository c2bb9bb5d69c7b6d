import math
from dataclasses import replace

import pytest
import torch

from mpnas.errors import MpnasError
from mpnas.rundir import load_data
from mpnas.space.presets import build_space
from mpnas.search.loop import run_search
from mpnas.rundir import load_checkpoint, save_checkpoint
from mpnas.train.optim import check_finite


def test_non_finite_loss_names_the_domain_and_step():
    with pytest.raises(MpnasError, match=r"loss of domain\(s\) glyphs is not finite at step 7"):
        check_finite(torch.tensor([0.5, math.nan]), ["digits", "glyphs"], 7, "train")
    with pytest.raises(MpnasError, match="signs"):
        check_finite(torch.tensor([math.inf]), ["signs"], 0, "search")
    check_finite(torch.tensor([0.1, 2.0]), ["a", "b"], 0, "train")


def test_search_state_survives_a_weights_only_checkpoint(tiny_cfg, tmp_path):
    domains = load_data(tiny_cfg, progress=False)
    arch, state = run_search(tiny_cfg, domains, build_space(tiny_cfg), tmp_path, progress=False, log=lambda r: None)
    save_checkpoint(tmp_path / "state.pt", state.state_dict())
    loaded = load_checkpoint(tmp_path / "state.pt")  # torch.load(weights_only=True) inside
    other = replace(tiny_cfg, seed=tiny_cfg.seed + 5)  # a different state, so equality below comes from the file
    _, fresh = run_search(other, domains, build_space(other), tmp_path / "b", progress=False, log=lambda r: None)
    assert not torch.equal(fresh.generator.get_state(), state.generator.get_state())
    fresh.load_state_dict(loaded)
    assert fresh.step == state.step and fresh.baselines == state.baselines
    for a, b in zip(fresh.supernet.state_dict().values(), state.supernet.state_dict().values()):
        assert torch.equal(a, b)
    for g in state.controllers:
        assert fresh.controllers[g].most_likely_path() == state.controllers[g].most_likely_path() == arch.paths[g]
    assert fresh.train_loader.state_dict() == state.train_loader.state_dict()
    assert torch.equal(fresh.generator.get_state(), state.generator.get_state())
    assert fresh.warm_rng.random() == state.warm_rng.random()  # the warm-up draws continue where they stopped


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MpnasError, match="bad.pt: cannot be read"):
        load_checkpoint(tmp_path / "bad.pt")
