"""`mpnas export`: each domain's path as an ONNX file checked in onnxruntime, an int8 variant, and a manifest.

    EXPORT_DIR/<domain>.onnx        the extracted plain path (`MultiPathModel.extract`), input `image`
                                    (N x 3 x R x R, batch axis dynamic), output `logits`
    EXPORT_DIR/<domain>.int8.onnx   --int8: static post-training quantisation (onnxruntime, QDQ, per-channel
                                    int8 weights, uint8 activations), calibrated on the domain's training images
    EXPORT_DIR/model.pte            --format onnx,pte: ExecuTorch, one XNNPACK method per domain, shared weights
                                    stored once (`mpnas.deploy.pte`); EXPORT_DIR/pte/<domain>.pte, each alone
    EXPORT_DIR/model.int8.pte       --format onnx,pte --int8: the same methods quantised by PT2E with the XNNPACK
                                    quantizer (int8 weights and activations), calibrated on training images
    EXPORT_DIR/export.json          the manifest (`mpnas.export/1`): how to feed each file, its classes, cost,
                                    accuracy and latency; everything an app needs without mpnas

Every file is run by onnxruntime on the domain's evaluation images before the manifest is written: the largest
logit difference against PyTorch (eval mode) and the top-1 agreement are recorded, and a difference above
`MAX_ABS_DIFF` stops the export before any manifest is written. Per-domain files are what a phone loads
(onnxruntime has no multi-entry model); a shared node's weights are therefore stored once per domain that uses
it, and the manifest says how much that costs against the merged model's weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mpnas.data import DomainSet
from mpnas.data.info import RESIZE_RULE, infos_from_domains
from mpnas.data.loader import iterate_split
from mpnas.deploy.pte import PteProgram, need_executorch, write_pte
from mpnas.deploy.pte import quantize_int8 as quantize_pte_int8
from mpnas.errors import MpnasError
from mpnas.io import check_writable, write_json
from mpnas.rundir import load_data, read_config
from mpnas.runtime import export_onnx, need_onnx, session
from mpnas.space.cost import architecture_cost, domain_costs
from mpnas.space.widths import read_config_widths, slim_architecture
from mpnas.train.evaluate import evaluate, load_trained_model
from mpnas.train.slimmable import apply_widths

FORMAT = "mpnas.export/1"
MAX_ABS_DIFF = 1e-3  # fp32 ONNX against PyTorch; observed differences are ~1e-5
FORMATS = ("onnx", "pte")


def run_split(sess: Any, domain: Any, split: str, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a whole split through an onnxruntime session."""
    logits, labels = [], []
    for x, y in iterate_split(domain, split, batch_size):
        assert y is not None  # the evaluation split is labelled (export checks top-1 on it)
        logits.append(sess.run(["logits"], {"image": x.numpy()})[0])
        labels.append(y.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def quantize_int8(src: Path, dst: Path, domain: Any, calibration_images: int = 256) -> None:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on `calibration_images` training images."""
    need_onnx()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            batches = []
            seen = 0
            for x, _ in iterate_split(domain, "train", 32):
                batches.append({"image": x.numpy()})
                seen += len(x)
                if seen >= calibration_images:
                    break
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    pre = dst.with_name(f".{dst.stem}.pre.onnx")
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(tmp, dst)
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def latency(path: Path, net: nn.Module, resolution: int, repeats: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Batch-1 median latency (ms) of the ONNX file in onnxruntime and of the module in eager PyTorch, with one thread
    and with all of this machine's threads. The two runtimes alternate run by run, so that a change in the machine's
    load affects both sides of their ratio alike."""
    x = np.zeros((1, 3, resolution, resolution), np.float32)
    xt = torch.from_numpy(x)
    out: dict[str, dict[str, float]] = {"onnxruntime": {}, "torch": {}}
    before = torch.get_num_threads()
    try:
        for label, threads in (("threads_1", 1), ("threads_all", os.cpu_count() or 1)):
            sess = session(path, threads)
            torch.set_num_threads(threads)
            times: dict[str, list[float]] = {"onnxruntime": [], "torch": []}
            with torch.no_grad():
                for i in range(warmup + repeats):
                    a = _timed(lambda: sess.run(["logits"], {"image": x}))
                    b = _timed(lambda: net(xt))
                    if i >= warmup:
                        times["onnxruntime"].append(a)
                        times["torch"].append(b)
            for k, v in times.items():
                out[k][label] = round(statistics.median(v), 4)
    finally:
        torch.set_num_threads(before)
    return out


def export_run(run_dir: Path, out: Path, int8: bool = False, domains: DomainSet | None = None,
               latency_repeats: int = 50, say: Any = None, formats: tuple[str, ...] = ("onnx",),
               widths_config: Path | None = None) -> dict[str, Any]:
    """Export a trained run directory; returns the manifest (also written to `out/export.json`). With
    `widths_config` (a slimmable run's `mpnas configure` output), every domain is exported at those widths, its
    batch norm recalibrated for them."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or "onnx" not in formats:
        raise MpnasError(f"export formats {', '.join(formats)}: choose from {', '.join(FORMATS)}; onnx is always written "
                         "(it is the checked fallback)")
    if "pte" in formats:
        need_executorch()
    say = say or (lambda msg: None)
    need_onnx()
    cfg = replace(read_config(run_dir), device="cpu")
    model = load_trained_model(cfg, run_dir).eval()
    arch = model.arch
    domains = domains or load_data(cfg, progress=False)
    widths = None
    if widths_config is not None:
        if not cfg.train.slimmable:
            raise MpnasError(f"export --config: run {run_dir} was not trained with train.slimmable=true")
        widths = read_config_widths(widths_config, arch, cfg.train.slim_multipliers)
        apply_widths(model, widths, domains, cfg)
        model.eval()
        arch = slim_architecture(arch, widths)
    infos = infos_from_domains(domains)
    costs = domain_costs(arch)
    torch_top1 = evaluate(model, domains, None, cfg.train.eval_batch_size)
    manifest: dict[str, Any] = {"format": FORMAT, "run": str(run_dir), "input_name": "image", "output_name": "logits",
                                "layout": "NCHW, RGB, float32", "domains": {}}
    if widths is not None:
        manifest["widths"] = {"config": str(widths_config), "multipliers": widths.to_dict()}
    check_writable(out)  # a read-only or misplaced --out fails here, before the first file, as one line
    files_bytes = 0
    for dom in domains:
        name = dom.name
        info = infos[name]
        net = model.extract(name).eval()
        onnx_path = out / f"{name}.onnx"
        say(f"export: {name} -> {onnx_path}")
        export_onnx(net, onnx_path, info.resolution)
        split = dom.eval_split()
        sess = session(onnx_path)
        logits, labels = run_split(sess, dom, split)
        with torch.no_grad():
            ref = torch.cat([net(x) for x, _ in iterate_split(dom, split, 256)]).numpy()
        diff = float(np.abs(logits - ref).max())
        if diff > MAX_ABS_DIFF:
            raise MpnasError(f"export of domain {name}: onnxruntime's logits differ from PyTorch's by {diff:.3g} "
                             f"(more than {MAX_ABS_DIFF}); the file {onnx_path} is not trustworthy")
        entry: dict[str, Any] = {
            "onnx": onnx_path.name,
            "input": [1, 3, info.resolution, info.resolution],
            "resize": RESIZE_RULE,
            "resolution": info.resolution,
            "mean": list(info.mean),
            "std": list(info.std),
            "pixel_scale": "RGB pixel values divided by 255, then (x - mean) / std per channel",
            "classes": list(info.classes),
            "params": costs[name].params,
            "macs": costs[name].macs,
            "eval_split": split,
            "top1": round(100.0 * float((logits.argmax(1) == labels).mean()), 3),
            "top1_torch": round(torch_top1[name], 3),
            "top1_agreement": round(float((logits.argmax(1) == ref.argmax(1)).mean()), 6),
            "max_abs_diff": diff,
            "bytes": onnx_path.stat().st_size,
            "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        }
        files_bytes += entry["bytes"]
        lat = latency(onnx_path, net, info.resolution, latency_repeats)
        entry["latency_ms"] = {"onnx": lat["onnxruntime"], "torch_eager": lat["torch"]}
        if int8:
            q_path = out / f"{name}.int8.onnx"
            say(f"export: {name} int8 -> {q_path}")
            quantize_int8(onnx_path, q_path, dom)
            q_logits, _ = run_split(session(q_path), dom, split)
            entry["onnx_int8"] = q_path.name
            entry["top1_int8"] = round(100.0 * float((q_logits.argmax(1) == labels).mean()), 3)
            entry["top1_int8_drop"] = round(entry["top1"] - entry["top1_int8"], 3)
            entry["bytes_int8"] = q_path.stat().st_size
            q_lat = latency(q_path, net, info.resolution, latency_repeats)
            entry["latency_ms"]["onnx_int8"] = q_lat["onnxruntime"]
        manifest["domains"][name] = entry
    merged = architecture_cost(arch, cfg.train.bn_per_domain)
    manifest["merged_model"] = {"params": merged.params, "fp32_bytes": 4 * merged.params,
                                "onnx_files_bytes": files_bytes,
                                "note": "one ONNX file per domain stores a shared node once per domain that uses it"}
    if "pte" in formats:
        manifest["pte"] = _export_pte(model, domains, out, latency_repeats, manifest, say, int8)
    added = model.arch.meta.get("added")
    if isinstance(added, dict):
        manifest["delta"] = _delta(added, manifest, formats, int8)
    write_json(out / "export.json", manifest)
    return manifest


def _delta(added: dict[str, Any], manifest: dict[str, Any], formats: tuple[str, ...], int8: bool) -> dict[str, Any]:
    """What changed against the trained run the domains were added to (`mpnas add-domain`): the unchanged domains'
    files hold that run's weights as they were (byte for byte, for ONNX: compare `sha256`), so an app that ships
    that run's export needs only the changed files."""
    new = [d for d in added["new_domains"] if d in manifest["domains"]]
    changed = [manifest["domains"][d]["onnx"] for d in new]
    if int8:
        changed += [manifest["domains"][d]["onnx_int8"] for d in new]
    if "pte" in formats:
        changed += ["model.pte", *(["model.int8.pte"] if int8 else []), *(f"pte/{d}.pte" for d in new)]
    return {"from_run": added["from_run"], "unchanged_domains": list(added["frozen_domains"]), "new_domains": new,
            "changed_files": changed,
            "note": "the unchanged domains' outputs and weights are those of from_run; model.pte holds every domain, "
                    "so it changes whole"}


def _export_pte(model: Any, domains: DomainSet, out: Path, repeats: int, manifest: dict[str, Any], say: Any,
                int8: bool = False) -> dict[str, Any]:
    """model.pte (every domain a method) and pte/<domain>.pte; each method checked image by image against PyTorch
    with ExecuTorch's runtime, and timed at batch 1. With `int8`, also model.int8.pte (PT2E, XNNPACK quantizer,
    calibrated on each domain's training images), checked against the converted module that simulates it and
    measured on the evaluation split."""
    nets = {d.name: model.extract(d.name).eval() for d in domains}
    resolution = next(iter(manifest["domains"].values()))["resolution"]
    say(f"export: {len(nets)} methods -> {out / 'model.pte'}")
    total = write_pte(nets, out / "model.pte", resolution)
    alone = {}
    (out / "pte").mkdir(exist_ok=True)
    for name, net in nets.items():
        alone[name] = write_pte({name: net}, out / "pte" / f"{name}.pte", resolution)
    program = PteProgram(out / "model.pte")
    for dom in domains:
        name = dom.name
        entry = manifest["domains"][name]
        check = _check_program(program, name, nets[name], dom, entry["eval_split"])
        if check["max_abs_diff"] > MAX_ABS_DIFF:
            raise MpnasError(f"export of domain {name}: ExecuTorch's logits differ from PyTorch's by {check['max_abs_diff']:.3g} "
                             f"(more than {MAX_ABS_DIFF}; logits up to {check['scale']:.3g}); the file {out / 'model.pte'} "
                             "is not trustworthy")
        entry["pte_method"] = name
        entry["pte_max_abs_diff"] = check["max_abs_diff"]
        entry["pte_top1"] = check["top1"]
        entry["pte_top1_agreement"] = check["agreement"]
        entry["bytes_pte_alone"] = alone[name]
    files = ["model.pte"]
    mm = manifest["merged_model"]
    info: dict[str, Any] = {"file": "model.pte", "methods": list(nets), "input": [1, 3, resolution, resolution],
                            "bytes": total, "per_domain_files_bytes": sum(alone.values()),
                            "bytes_over_merged_fp32": round(total / mm["fp32_bytes"], 3), "delegate": "XNNPACK",
                            "batch_norm": "per-domain affine after the convolution (not folded, so shared weights dedupe)"}
    if int8:
        say(f"export: {len(nets)} int8 methods -> {out / 'model.int8.pte'}")
        qnets = {d.name: quantize_pte_int8(nets[d.name], resolution, _calibration_batches(d)) for d in domains}
        info["int8_file"] = "model.int8.pte"
        info["int8_bytes"] = write_pte(qnets, out / "model.int8.pte", resolution, int8=True)
        info["int8"] = ("PT2E static post-training quantisation, XNNPACK quantizer: per-channel symmetric int8 weights "
                        "(batch norm folded in), per-tensor int8 activations, calibrated on training images")
        files.append("model.int8.pte")
        qprogram = PteProgram(out / "model.int8.pte")
        for dom in domains:
            entry = manifest["domains"][dom.name]
            check = _check_program(qprogram, dom.name, qnets[dom.name], dom, entry["eval_split"])
            entry["pte_int8_top1"] = check["top1"]
            entry["pte_int8_top1_drop"] = round(entry["pte_top1"] - check["top1"], 3)
            entry["pte_int8_max_abs_diff_simulated"] = check["max_abs_diff"]
    timed = _pte_latency([out / f for f in files], list(nets), resolution, repeats)
    for file, per_method in timed.items():
        key = "pte_int8" if file.endswith(".int8.pte") else "pte"
        for name, lat in per_method.items():
            manifest["domains"][name]["latency_ms"][key] = lat
    return info


def _calibration_batches(domain: Any, images: int = 256, batch_size: int = 32) -> list[torch.Tensor]:
    """The first `images` training images of a domain (training transform off: evaluation preprocessing)."""
    batches, seen = [], 0
    for x, _ in iterate_split(domain, "train", batch_size):
        batches.append(x)
        seen += len(x)
        if seen >= images:
            break
    return batches


def _check_program(program: Any, method: str, net: nn.Module, domain: Any, split: str) -> dict[str, float]:
    """Run a `.pte` method image by image over a split against `net` in PyTorch: the largest logit difference, the
    largest logit, the top-1 agreement and the top-1 accuracy."""
    diff, agree, correct, n, scale = 0.0, 0, 0, 0, 0.0
    with torch.no_grad():
        for x, y in iterate_split(domain, split, 64):
            assert y is not None  # the evaluation split is labelled
            ref = torch.cat([net(x[i:i + 1]) for i in range(len(x))])  # int8 programs are exported for batch 1
            got = torch.stack([program(method, x[i:i + 1])[0] for i in range(len(x))])
            diff = max(diff, float((got - ref).abs().max()))
            scale = max(scale, float(ref.abs().max()))
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
            correct += int((got.argmax(1) == y).sum())
            n += len(y)
    return {"max_abs_diff": diff, "scale": scale, "agreement": round(agree / n, 6), "top1": round(100.0 * correct / n, 3)}


def _pte_latency(paths: list[Path], methods: list[str], resolution: int, repeats: int) -> dict[str, dict[str, dict[str, float]]]:
    """Batch-1 median latency (ms) of every method of each `.pte`, with one thread and with all threads:
    {file name: {method: {"threads_1": ms, "threads_all": ms}}}.

    ExecuTorch sizes its thread pool once per process; resizing it after methods have run aborted the process
    (a pthread assertion) here, so each thread count is timed in a fresh child process."""
    out: dict[str, dict[str, dict[str, float]]] = {p.name: {m: {} for m in methods} for p in paths}
    for label, threads in (("threads_1", 1), ("threads_all", os.cpu_count() or 1)):
        spec = json.dumps({"files": [str(p) for p in paths], "methods": methods, "resolution": resolution,
                           "repeats": repeats, "threads": threads})
        proc = subprocess.run([sys.executable, "-m", "mpnas.deploy.pte", spec], capture_output=True, text=True)
        if proc.returncode != 0:
            raise MpnasError(f"timing {', '.join(p.name for p in paths)} with {threads} thread(s) failed: "
                             f"{proc.stderr.strip().splitlines()[-1:]}")
        for path, per_method in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            for m, ms in per_method.items():
                out[Path(path).name][m][label] = ms
    return out


__all__ = ["FORMAT", "export_run", "latency", "quantize_int8", "run_split"]
