"""Deployment latency and accuracy of a trained run's export (issue 14's targets), measured side by side.

Exports RUN with `mpnas export --int8` into a temporary directory (or uses `--export DIR`), then times each
domain at batch 1 on one thread, alternating onnxruntime fp32, onnxruntime int8 and eager PyTorch run by run, and
prints per domain:

    onnx/torch   onnxruntime fp32 median over eager PyTorch median     (goal: at most 1.0)
    int8/fp32    onnxruntime int8 median over fp32 median              (goal: at most 0.6)
    drop         top-1 of the fp32 file minus the int8 file, in points (goal: at most 1.0)

Where ExecuTorch is installed it also exports `model.pte` and `model.int8.pte` (PT2E, XNNPACK quantizer) and times
their methods alternately in this process (one thread), printing the same ratio and drop for ExecuTorch, and the
file sizes against the merged model's fp32 weights (goal for model.pte: at most 1.1).

    python benchmarks/export_latency.py runs/builtin --repeats 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from mpnas.deploy.export import _timed, export_run
from mpnas.runtime import session
from mpnas.deploy.predictor import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--export", type=Path, default=None, help="an existing export directory (with --int8 files)")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.export or Path(tmp)
        pte = _have_executorch()
        if pte:  # sized before any program runs: ExecuTorch's pool cannot be resized later
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(1)
        if args.export is None:
            export_run(args.run, out, int8=True, latency_repeats=5, say=print,
                       formats=("onnx", "pte") if pte else ("onnx",))
        manifest = json.loads((out / "export.json").read_text())
        model = load(args.run)
        print(f"{'domain':<10}{'torch ms':>10}{'onnx ms':>9}{'int8 ms':>9}{'onnx/torch':>12}{'int8/fp32':>11}"
              f"{'top-1':>8}{'int8':>8}{'drop':>7}")
        ratios = {"onnx/torch": [], "int8/fp32": []}
        for d, e in manifest["domains"].items():
            r = e["resolution"]
            x = np.zeros((1, 3, r, r), np.float32)
            xt = torch.from_numpy(x)
            fp32, int8 = session(out / e["onnx"], 1), session(out / e["onnx_int8"], 1)
            net = model.extract(d)
            t: dict[str, list[float]] = {"torch": [], "fp32": [], "int8": []}
            with torch.no_grad():
                for i in range(args.repeats + 5):
                    a = _timed(lambda: net(xt))
                    b = _timed(lambda: fp32.run(["logits"], {"image": x}))
                    c = _timed(lambda: int8.run(["logits"], {"image": x}))
                    if i >= 5:
                        t["torch"].append(a)
                        t["fp32"].append(b)
                        t["int8"].append(c)
            m = {k: statistics.median(v) for k, v in t.items()}
            ratios["onnx/torch"].append(m["fp32"] / m["torch"])
            ratios["int8/fp32"].append(m["int8"] / m["fp32"])
            print(f"{d:<10}{m['torch']:10.3f}{m['fp32']:9.3f}{m['int8']:9.3f}{m['fp32'] / m['torch']:12.2f}"
                  f"{m['int8'] / m['fp32']:11.2f}{e['top1']:8.2f}{e['top1_int8']:8.2f}{e['top1_int8_drop']:7.2f}", flush=True)
        for k, v in ratios.items():
            print(f"{k}: worst {max(v):.2f}, median {statistics.median(v):.2f}")
        mm = manifest["merged_model"]
        print(f"merged model fp32 weights {mm['fp32_bytes'] / 1e6:.2f} MB; per-domain ONNX files together "
              f"{mm['onnx_files_bytes'] / 1e6:.2f} MB")
        if (out / "model.int8.pte").is_file():
            _pte_side_by_side(out, manifest, args.repeats)


def _have_executorch() -> bool:
    from mpnas.deploy.pte import need_executorch
    from mpnas.errors import MpnasError

    try:
        need_executorch()
    except MpnasError:  # ExecuTorch (the pte extra) is not installed
        return False
    return True


def _pte_side_by_side(out: Path, manifest: dict, repeats: int) -> None:
    from mpnas.deploy.pte import PteProgram

    fp32, int8 = PteProgram(out / "model.pte"), PteProgram(out / "model.int8.pte")
    print(f"{'domain':<10}{'pte ms':>9}{'int8 ms':>9}{'int8/fp32':>11}{'top-1':>8}{'int8':>8}{'drop':>7}")
    ratios = []
    for d, e in manifest["domains"].items():
        x = torch.zeros(1, 3, e["resolution"], e["resolution"])
        t: dict[str, list[float]] = {"fp32": [], "int8": []}
        for i in range(repeats + 5):
            a = _timed(lambda: fp32(d, x))
            b = _timed(lambda: int8(d, x))
            if i >= 5:
                t["fp32"].append(a)
                t["int8"].append(b)
        m = {k: statistics.median(v) for k, v in t.items()}
        ratios.append(m["int8"] / m["fp32"])
        print(f"{d:<10}{m['fp32']:9.3f}{m['int8']:9.3f}{ratios[-1]:11.2f}{e['pte_top1']:8.2f}{e['pte_int8_top1']:8.2f}"
              f"{e['pte_int8_top1_drop']:7.2f}", flush=True)
    print(f"pte int8/fp32: worst {max(ratios):.2f}, median {statistics.median(ratios):.2f}")
    p, mm = manifest["pte"], manifest["merged_model"]
    print(f"model.pte {p['bytes'] / 1e6:.2f} MB ({p['bytes'] / mm['fp32_bytes']:.2f}x the merged fp32 weights), "
          f"model.int8.pte {p['int8_bytes'] / 1e6:.2f} MB ({p['int8_bytes'] / mm['fp32_bytes']:.2f}x), "
          f"per-domain .pte files {p['per_domain_files_bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
