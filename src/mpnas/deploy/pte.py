"""ExecuTorch export: one `model.pte` with one method per domain, XNNPACK-delegated, shared weights stored once.

Each method is a domain's extracted path (`MultiPathModel.extract`), exported by `torch.export` with a static
1 x 3 x R x R input and lowered together with the others (`to_edge_transform_and_lower` takes a dict of
programs). XNNPACK stores constant tensors by content, so two methods whose convolutions hold the same weights
share one copy. That only works if batch norm is not folded into the convolutions: every domain has its own
batch norm, even inside a shared node, so folded weights would differ per domain and be stored once per domain
(measured: two methods sharing a 3x3 conv of 590 KB gave 1.19 MB with batch norm folded, 0.60 MB without).
Before export each batch norm therefore becomes a frozen per-channel affine (`x * scale + shift`), which
XNNPACK runs as its own multiply-add, and the convolution weights stay the bytes the merged model shares.
A convolution is shared only where two domains use the same width of a node: a narrower user's weight is a
slice, which is other bytes.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from mpnas.errors import MpnasError


def need_executorch() -> Any:
    """ExecuTorch's runtime class; importing it pulls in torchao, which logs a line for every optional kernel
    library this machine lacks (CUDA ones on a CPU machine) and for a deprecated pytree call: none of them
    concerns a user, so they are silenced while it loads."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        from executorch import exir  # noqa: F401
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise MpnasError(f"--format pte needs ExecuTorch: pip install 'mpnas[pte]' ({exc.name} is missing)") from None
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
    return Runtime


class FrozenAffine(nn.Module):
    """Batch norm in eval mode as `x * scale + shift` with constant per-channel tensors."""

    scale: Tensor  # buffers, registered in __init__
    shift: Tensor

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale.view(1, -1, 1, 1).clone())
        self.register_buffer("shift", (bn.bias.detach() - bn.running_mean * scale).view(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def unfold_batch_norm(net: nn.Module) -> nn.Module:
    """A copy of `net` with every BatchNorm2d replaced by its `FrozenAffine` (eval-mode outputs unchanged)."""
    net = copy.deepcopy(net).eval()
    _replace_batch_norm(net)
    return net


def _replace_batch_norm(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenAffine(child))
        else:
            _replace_batch_norm(child)


def lower(nets: dict[str, nn.Module], resolution: int) -> bytes:
    """The ExecuTorch program with one XNNPACK-delegated method per entry of `nets` (fp32, batch norm unfolded)."""
    need_executorch()
    import warnings

    example = (torch.zeros(1, 3, resolution, resolution),)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        programs = {name: torch.export.export(unfold_batch_norm(net), example) for name, net in nets.items()}
    return lower_programs(programs)


def lower_programs(programs: dict[str, Any]) -> bytes:
    """Lower exported programs (one method each) together to XNNPACK; constants with equal bytes are stored once."""
    import warnings

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def quantize_int8(net: nn.Module, resolution: int, calibration: Iterable[Tensor]) -> nn.Module:
    """Post-training static int8 for XNNPACK (PT2E): per-channel symmetric int8 weights, per-tensor int8 activations,
    observers calibrated on the images of `calibration` (normalised N x 3 x R x R batches, run one image at a time
    because the program is exported for batch 1). Returns the converted module, whose quantize/dequantize pairs
    simulate in PyTorch what the delegate computes in integers; `lower_programs` turns its export into int8 kernels.

    Batch norm is folded into the convolutions here (the quantizer's conv-bn patterns), so a shared node's int8
    weights differ per domain and are not deduplicated as the fp32 ones are. Hard-swish and the squeeze-excite gate
    are not int8 ops in the XNNPACK quantizer: they run in fp32 between a dequantize and a quantize."""
    need_executorch()
    import warnings

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = (torch.zeros(1, 3, resolution, resolution),)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(torch.export.export(copy.deepcopy(net).eval(), example).module(), quantizer)
        for batch in calibration:
            for i in range(len(batch)):
                prepared(batch[i:i + 1])
        return convert_pt2e(prepared)


def lower_int8(nets: dict[str, nn.Module], resolution: int) -> bytes:
    """The ExecuTorch program of `quantize_int8` modules, one XNNPACK-delegated int8 method per entry."""
    import warnings

    example = (torch.zeros(1, 3, resolution, resolution),)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        programs = {name: torch.export.export(net, example) for name, net in nets.items()}
    return lower_programs(programs)


def write_pte(nets: dict[str, nn.Module], path: Path, resolution: int, int8: bool = False) -> int:
    """Write the program of `nets` (fp32 modules, or `quantize_int8` modules with int8=True) atomically; its size."""
    data = lower_int8(nets, resolution) if int8 else lower(nets, resolution)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


class PteProgram:
    """A `.pte` loaded by ExecuTorch's Python runtime (what the phone's runtime runs, on this machine)."""

    def __init__(self, path: Path) -> None:
        runtime = need_executorch().get()
        self.program = runtime.load_program(str(path))
        self._methods: dict[str, Any] = {}

    def __call__(self, method: str, x: Tensor) -> Tensor:
        if method not in self._methods:
            self._methods[method] = self.program.load_method(method)
        # A fresh input (a view into a batch was read from the start of its storage) and a copy of the output (the
        # runtime reuses its output buffer on the next call).
        return self._methods[method].execute([x.clone(memory_format=torch.contiguous_format)])[0].clone()


def _time_methods(spec: str) -> None:
    """`python -m mpnas.deploy.pte SPEC`: batch-1 median ms of every method of every file, as JSON on stdout.

    SPEC is JSON: {"files": [...], "methods": [...], "resolution": R, "repeats": N, "threads": T}. Run in a fresh
    process by `mpnas.deploy.export`: the thread pool is sized before anything executes."""
    import json
    import statistics
    import time

    args = json.loads(spec)
    need_executorch()
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(int(args["threads"]))
    x = torch.zeros(1, 3, int(args["resolution"]), int(args["resolution"]))
    out: dict[str, dict[str, float]] = {}
    for path in args["files"]:
        program = PteProgram(Path(path))
        out[path] = {}
        for m in args["methods"]:
            times = []
            for i in range(int(args["repeats"]) + 3):
                t0 = time.perf_counter()
                program(m, x)
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1e3)
            out[path][m] = round(statistics.median(times), 4)
    print(json.dumps(out))


__all__ = ["FrozenAffine", "PteProgram", "lower", "lower_int8", "lower_programs", "need_executorch", "quantize_int8",
           "unfold_batch_norm", "write_pte"]


if __name__ == "__main__":
    import sys

    _time_methods(sys.argv[1])
