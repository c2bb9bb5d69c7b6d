"""Deployment: ONNX export equals PyTorch, the manifest alone is enough to reproduce the evaluation, int8 is
measured, `predict` and `mpnas.load` classify files, and bad input gets one clear line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mpnas
from mpnas.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


@pytest.fixture(scope="module")
def export_dir(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--int8", "--latency-repeats", "2"]) == 0
    return out


def manifest(export_dir):
    return json.loads((export_dir / "export.json").read_text())


def test_onnx_equals_pytorch_for_every_domain(run_dir, export_dir):
    results = json.loads((run_dir / "results.json").read_text())
    m = manifest(export_dir)
    assert m["format"] == "mpnas.export/1" and set(m["domains"]) == {"bars", "colours"}
    for d, e in m["domains"].items():
        assert e["max_abs_diff"] < 1e-4
        assert e["top1_agreement"] == 1.0
        assert e["top1"] == pytest.approx(results["domains"][d]["top1"], abs=1e-3)  # the run's own evaluation
    # the file's batch axis is dynamic: 1 and 7 images both run
    import onnxruntime as ort

    sess = ort.InferenceSession(str(export_dir / m["domains"]["bars"]["onnx"]))
    for n in (1, 7):
        assert sess.run(["logits"], {"image": np.zeros((n, 3, 16, 16), np.float32)})[0].shape == (n, 3)


def test_manifest_alone_reproduces_the_evaluation_top1(run_dir, export_dir, tiny_root):
    """What an app does: decode each test file, resize and normalise by the manifest, run onnxruntime."""
    results = json.loads((run_dir / "results.json").read_text())
    m = manifest(export_dir)
    for d, e in m["domains"].items():
        for key in ("onnx", "input", "resize", "resolution", "mean", "std", "classes", "params", "macs", "top1",
                    "top1_int8", "max_abs_diff", "latency_ms"):
            assert key in e, (d, key)
        assert e["input"] == [1, 3, e["resolution"], e["resolution"]] and e["resize"] == "shorter_side_then_center_crop"
        for fmt in ("onnx", "onnx_int8"):
            assert set(e["latency_ms"][fmt]) == {"threads_1", "threads_all"}
        assert manifest_top1(export_dir, m, d, tiny_root, "onnx") == pytest.approx(results["domains"][d]["top1"], abs=1e-3)


def manifest_top1(export_dir, m, d, tiny_root, key):
    """Top-1 of the file `m["domains"][d][key]` on the domain's test images, each decoded, resized, cropped and
    normalised from the manifest alone and run by onnxruntime: what an app would measure."""
    import onnxruntime as ort

    e = m["domains"][d]
    r = e["resolution"]
    mean, std = np.array(e["mean"], np.float32)[:, None, None], np.array(e["std"], np.float32)[:, None, None]
    sess = ort.InferenceSession(str(export_dir / e[key]))
    correct = total = 0
    for f in sorted((tiny_root / d / "test").rglob("*.png")):
        im = Image.open(f).convert("RGB")
        w, h = im.size
        s = r / min(w, h)
        nw, nh = max(r, round(w * s)), max(r, round(h * s))
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - r) // 2, (nh - r) // 2
        x = np.asarray(im.crop((left, top, left + r, top + r)), np.float32).transpose(2, 0, 1) / 255.0
        logits = sess.run([m["output_name"]], {m["input_name"]: ((x - mean) / std)[None].astype(np.float32)})[0]
        correct += e["classes"][int(logits.argmax())] == f.parent.name
        total += 1
    return 100.0 * correct / total


def test_int8_files_are_measured(run_dir, export_dir, tiny_root):
    results = json.loads((run_dir / "results.json").read_text())
    m = manifest(export_dir)
    for d, e in m["domains"].items():
        assert (export_dir / e["onnx_int8"]).is_file()
        # The int8 file's accuracy as an app measures it, and its drop from the run's own (PyTorch) evaluation.
        measured = manifest_top1(export_dir, m, d, tiny_root, "onnx_int8")
        assert e["top1_int8"] == pytest.approx(measured, abs=1e-3)
        assert e["top1_int8_drop"] == pytest.approx(results["domains"][d]["top1"] - measured, abs=1e-3)
        assert e["bytes_int8"] < e["bytes"]


def test_load_predicts_pil_images_arrays_and_files_like_the_model(run_dir, tiny_root):
    model = mpnas.load(run_dir)
    assert model.domains == ["bars", "colours"]  # the folder source's order: domain folders sorted by name
    files = sorted((tiny_root / "bars" / "test").rglob("*.png"))
    pil = [Image.open(f) for f in files]
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    a, b, c = (model.probabilities(x, "bars") for x in (pil, arrays, files))
    assert np.allclose(a, b) and np.allclose(a, c) and np.allclose(a.sum(1), 1.0, atol=1e-5)
    top = model.predict(files, "bars", 2)
    assert [t[0][0] for t in top] == [model.info("bars").classes[i] for i in a.argmax(1)]
    net = model.extract("bars")
    with torch.no_grad():
        assert torch.allclose(torch.softmax(net(model.preprocess(files, "bars")), 1), torch.from_numpy(a), atol=1e-5)
    with pytest.raises(mpnas.errors.MpnasError, match="domain 'cars' unknown"):
        model.predict(files, "cars")


def test_predict_cli_from_a_run_and_from_an_export_agree(run_dir, export_dir, tiny_root, capsys):
    folder = tiny_root / "colours" / "test"
    assert main(["predict", "--run", str(run_dir), "--domain", "colours", "--json", "--top-k", "2", str(folder)]) == 0
    from_run = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(from_run) == len(list(folder.rglob("*.png"))) and all(len(r["top"]) == 2 for r in from_run)
    assert main(["predict", "--export", str(export_dir), "--domain", "colours", "--json", str(folder)]) == 0
    from_export = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["top"][0]["class"] for r in from_run] == [r["top"][0]["class"] for r in from_export]
    for a, b in zip(from_run, from_export):
        assert a["top"][0]["probability"] == pytest.approx(b["top"][0]["probability"], abs=1e-4)


@pytest.mark.parametrize("case", ["domain", "not_image", "empty", "missing"])
def test_predict_bad_input_is_one_line_and_exit_2(run_dir, tmp_path, tiny_root, capsys, case):
    good = str(next((tiny_root / "bars" / "test").rglob("*.png")))
    if case == "domain":
        argv, expect = ["--domain", "cars", good], "domain 'cars' unknown"
    elif case == "not_image":
        (tmp_path / "notes.png").write_text("not an image")
        argv, expect = ["--domain", "bars", str(tmp_path / "notes.png")], f"image {tmp_path / 'notes.png'}: not a readable image"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        argv, expect = ["--domain", "bars", str(tmp_path / "empty")], "no image files in it"
    else:
        argv, expect = ["--domain", "bars", str(tmp_path / "nope.png")], "not found"
    assert main(["predict", "--run", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mpnas: error:") and expect in err[0]


def test_export_rejects_an_unknown_format(run_dir, tmp_path, capsys):
    assert main(["export", "--run", str(run_dir), "--out", str(tmp_path), "--format", "tflite"]) == 2
    assert "tflite not available" in capsys.readouterr().err


def test_onnxruntime_latency_table_drives_a_search(tiny_cfg, tmp_path):
    """Every candidate op timed by onnxruntime, and a search whose cost is that table."""
    from dataclasses import replace

    from mpnas.io import write_json
    from mpnas.rundir import load_data
    from mpnas.search.loop import run_search
    from mpnas.nn.measure import measure_table
    from mpnas.space.latency import LatencyTable, candidate_geometries
    from mpnas.space.space import BlockSpace, LayerSpace, SearchSpace

    space = SearchSpace(name="tiny-ort", resolution=16, stem_filters=(8,),
                        blocks=(BlockSpace((8, 16), (LayerSpace(2, "relu", (3, 5), (1.0,), (False,), False),)),),
                        head_filters=16, head_hidden=0)
    table = measure_table(space, repeats=2, backend="onnxruntime")
    assert table["backend"] == "onnxruntime"
    assert len(table["entries"]) == len(list(candidate_geometries(space))) and all(v > 0 for v in table["entries"].values())
    write_json(tmp_path / "ort.json", table)
    cfg = replace(tiny_cfg, search=replace(tiny_cfg.search, latency_table=str(tmp_path / "ort.json")))
    arch, _ = run_search(cfg, load_data(cfg, progress=False), space, tmp_path, progress=False, log=lambda r: None)
    assert arch.meta["cost_unit"] == "ms"
    lat = LatencyTable.load(tmp_path / "ort.json")
    assert arch.meta["targets"]["bars"] == pytest.approx(lat.path_latency(space, space.reference_path()))


def test_affine_batch_norm_keeps_eval_outputs():
    from mpnas.deploy.pte import FrozenAffine, unfold_batch_norm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.BatchNorm2d(8)).eval()
    for m in net:
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    unfolded = unfold_batch_norm(net)
    assert sum(isinstance(m, FrozenAffine) for m in unfolded.modules()) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules())
    x = torch.randn(4, 3, 10, 10)
    with torch.no_grad():
        assert torch.allclose(unfolded(x), net(x), atol=1e-5)


def test_pte_has_one_method_per_domain_equal_to_pytorch(run_dir, tmp_path, tiny_root):
    pytest.importorskip("executorch")
    from mpnas.deploy.export import export_run
    from mpnas.deploy.pte import PteProgram

    m = export_run(run_dir, tmp_path, formats=("onnx", "pte"), latency_repeats=2, int8=True)
    assert set(m["pte"]["methods"]) == {"bars", "colours"} and (tmp_path / "model.pte").stat().st_size == m["pte"]["bytes"]
    assert m["pte"]["per_domain_files_bytes"] == sum(e["bytes_pte_alone"] for e in m["domains"].values())
    model = mpnas.load(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    program, qprogram = PteProgram(tmp_path / "model.pte"), PteProgram(tmp_path / "model.int8.pte")
    for d, e in m["domains"].items():
        assert e["pte_max_abs_diff"] < 1e-4 and e["pte_top1_agreement"] == 1.0 and e["pte_top1"] == e["top1"]
        assert set(e["latency_ms"]["pte"]) == {"threads_1", "threads_all"}
        x = model.preprocess(sorted((tiny_root / d / "test").rglob("*.png"))[:3], d)
        with torch.no_grad():
            ref = model.extract(d)(x)
        assert torch.allclose(torch.cat([program(d, x[i:i + 1]) for i in range(3)]), ref, atol=1e-4)
        # The int8 program's accuracy measured here, image by image as the export does, and its drop from the
        # run's own evaluation (which the fp32 program matches: pte_top1 == top1 above).
        files = sorted((tiny_root / d / "test").rglob("*.png"))
        images = model.preprocess(files, d)
        with torch.no_grad():
            got = [int(qprogram(d, images[i:i + 1])[0].argmax()) for i in range(len(files))]
        int8_top1 = 100.0 * sum(e["classes"][g] == f.parent.name for g, f in zip(got, files)) / len(files)
        assert e["pte_int8_top1"] == pytest.approx(int8_top1, abs=1e-3)
        assert e["pte_int8_top1_drop"] == pytest.approx(results["domains"][d]["top1"] - int8_top1, abs=1e-3)
        assert e["pte_int8_max_abs_diff_simulated"] < 1e-2 and set(e["latency_ms"]["pte_int8"]) == {"threads_1", "threads_all"}
    assert (tmp_path / "model.int8.pte").stat().st_size == m["pte"]["int8_bytes"]


def test_int8_pte_runs_what_the_converted_module_simulates(run_dir, tmp_path):
    pytest.importorskip("executorch")
    from mpnas.deploy.pte import PteProgram, quantize_int8, write_pte

    model = mpnas.load(run_dir)
    torch.manual_seed(0)
    calib = [torch.randn(8, 3, 16, 16)]
    nets = {d: quantize_int8(model.extract(d), 16, calib) for d in ("bars",)}
    write_pte(nets, tmp_path / "q.pte", 16, int8=True)
    program = PteProgram(tmp_path / "q.pte")
    x = torch.randn(1, 3, 16, 16)
    for d, net in nets.items():
        with torch.no_grad():
            ref, fp32 = net(x), model.extract(d)(x)
        got = program(d, x)
        assert (fp32 - ref).abs().max() > 0  # the module really is quantised
        assert torch.allclose(got, ref, atol=0.02 * float(ref.abs().max()) + 1e-6)  # within about a quantisation step


def test_pte_stores_weights_shared_by_two_methods_once():
    pytest.importorskip("executorch")
    from mpnas.deploy.pte import lower

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1, bias=False), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
                              torch.nn.Conv2d(64, 128, 3, padding=1, bias=False), torch.nn.BatchNorm2d(128)).eval()
    other = __import__("copy").deepcopy(net)
    other[1].running_mean.fill_(0.5)  # a domain's own batch norm on the same convolutions
    one, two = len(lower({"a": net}, 16)), len(lower({"a": net, "b": other}, 16))
    weights = 4 * sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight") and p.dim() == 4)
    assert one > weights and two - one < 0.1 * weights  # the convolutions are stored once
