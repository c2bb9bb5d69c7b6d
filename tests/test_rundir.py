"""The run directory's files read back as written, and a foreign file is refused by name."""

import pytest
import torch
from safetensors.torch import save_file

from mpnas.errors import MpnasError
from mpnas.rundir import WEIGHTS_FORMAT, load_weights, save_weights
from mpnas.space.arch import Architecture
from mpnas.space.presets import get_space


def test_weights_round_trip_and_a_foreign_file_is_refused(tmp_path):
    space = get_space("default", resolution=16)
    arch = Architecture(space, {"a": space.reference_path()}, {"a": 3})
    net = torch.nn.Linear(4, 2)
    save_weights(net, tmp_path / "w.safetensors", arch, {"step": 3})
    other = torch.nn.Linear(4, 2)
    load_weights(other, tmp_path / "w.safetensors")
    assert torch.equal(other.weight, net.weight) and torch.equal(other.bias, net.bias)
    # Same tensor names, no mpnas format tag: another tool's file, not loaded into whatever happens to match.
    save_file({k: v.detach() for k, v in net.state_dict().items()}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(MpnasError, match=f"not an mpnas weights file .*{WEIGHTS_FORMAT}"):
        load_weights(other, tmp_path / "foreign.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:20])
    with pytest.raises(MpnasError, match="not a readable safetensors file"):
        load_weights(other, tmp_path / "cut.safetensors")
