"""Running a plain network outside training: ONNX export, onnxruntime sessions, and timing one forward pass.

Both the latency tables of the search space (`mpnas.nn.measure`, which times every candidate op) and the
deployment (`mpnas.deploy`, which exports and checks whole paths) run networks this way, so it sits below
both: an op is timed by the same exporter and the same session settings as the files a user ships.

onnxruntime and onnxscript are the optional `export` extra: they are imported only when a session or an export
is asked for (`need_onnx`), so that everything else runs without them.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from mpnas.errors import MpnasError


def need_onnx() -> Any:
    """The onnxruntime module, or one error saying which extra to install."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as exc:
        raise MpnasError(f"export needs the export extra: pip install 'mpnas[export]' ({exc.name} is missing)") from None
    return onnxruntime


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx logs a line per optional op library it does not find (torchvision); a user needs none of them."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export_onnx(net: nn.Module, path: Path, resolution: int, channels: int = 3) -> None:
    """Export a plain network (normalised N x C x R x R -> logits) with a dynamic batch axis; input `image`,
    output `logits`."""
    net = net.eval()
    example = torch.zeros(2, channels, resolution, resolution)  # batch >= 2, so the batch axis stays symbolic (timm)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with torch.no_grad(), _quiet_exporter(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(tmp), input_names=["image"], output_names=["logits"], dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},), external_data=False,
                          verbose=False)
    os.replace(tmp, path)


def session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of `path`; `threads` intra-op threads (None: onnxruntime's default)."""
    ort = need_onnx()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_module(module: nn.Module, shape: tuple[int, ...], repeats: int, warmup: int = 3) -> float:
    """Median wall time of one forward pass in milliseconds (eager PyTorch, eval mode, no autograd)."""
    module.eval()
    x = torch.randn(shape)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_onnxruntime(module: nn.Module, shape: tuple[int, ...], repeats: int, warmup: int = 3) -> float:
    """Median wall time (ms) of one run of the module exported to ONNX, in an onnxruntime session with torch's
    thread count."""
    module.eval()
    x = torch.randn(shape).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "op.onnx"
        export_onnx(module, path, shape[-1], channels=shape[1])
        sess = session(path, torch.get_num_threads())
        times = []
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            sess.run(["logits"], {"image": x})
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


__all__ = ["export_onnx", "need_onnx", "session", "time_module", "time_onnxruntime"]
