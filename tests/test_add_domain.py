"""`mpnas add-domain`: a new domain added to a trained run leaves the trained domains bit-identical (logits and
tensors), reuses trained nodes only where they fit, counts what it adds exactly, resumes bit for bit, exports a
delta, and refuses bad input with one line while RUN stays untouched."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import mpnas
from mpnas.cli import main
from mpnas.config import dump_yaml
from mpnas.nn.dynamic import domain_key
from mpnas.nn.extend import ExtensionSupernet, load_frozen
from mpnas.nn.merged import MultiPathModel
from mpnas.rundir import read_architecture, read_config
from mpnas.search.controller import Controller
from mpnas.search.extend import Extension, ExtensionCost
from mpnas.errors import MpnasError
from mpnas.search.loop import load_final_search, warm_up
from mpnas.space.cost import geometry_cost
from mpnas.space.extension import Frozen
from mpnas.train.evaluate import load_trained_model
from runlog import logged

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cfg_file(tiny_cfg, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("add-cfg") / "cfg.yaml"
    path.write_text(dump_yaml(tiny_cfg))
    return path


@pytest.fixture(scope="module")
def base_run(cfg_file, tmp_path_factory) -> Path:
    """A finished run of one domain ('colours') that 'bars' is added to."""
    out = tmp_path_factory.mktemp("add-base") / "base"
    assert main(["run", "--config", str(cfg_file), "--budget", "quick", "--domains", "colours", "--out", str(out),
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def added(base_run, cfg_file, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """NEWRUN ('bars' added to base_run) and base_run's files before it was made."""
    before = _snapshot(base_run)
    out = tmp_path_factory.mktemp("add-new") / "new"
    assert main(["add-domain", "--run", str(base_run), "--domains", "bars", "--config", str(cfg_file), "--budget",
                 "quick", "--out", str(out), "--quiet"]) == 0
    return out, before


def _model(run: Path) -> MultiPathModel:
    return load_trained_model(read_config(run), run).eval()


def test_old_domains_logits_and_tensors_are_bit_identical(base_run, added):
    new_run, before = added
    assert _snapshot(base_run) == before  # RUN is only read
    old, new = _model(base_run), _model(new_run)
    torch.manual_seed(0)
    x = torch.randn(16, 3, 16, 16) * 2
    with torch.no_grad():
        for d in read_architecture(base_run).domains:
            assert torch.equal(old(x, d), new(x, d)), d
    old_w, new_w = load_file(base_run / "model.safetensors"), load_file(new_run / "model.safetensors")
    assert set(old_w) < set(new_w)
    for k, v in old_w.items():
        assert torch.equal(v, new_w[k]), k
    # The new domain learnt: its own tensors moved away from any trained one's and it is evaluated.
    results = json.loads((new_run / "results.json").read_text())
    assert set(results["domains"]) == {"colours", "bars"}
    old_results = json.loads((base_run / "results.json").read_text())
    assert results["domains"]["colours"] == old_results["domains"]["colours"]


def test_architecture_says_what_came_from_run_and_what_it_adds(base_run, added):
    new_run, _ = added
    base_arch, arch = read_architecture(base_run), read_architecture(new_run)
    assert arch.domains == ["colours", "bars"] and arch.paths["colours"] == base_arch.paths["colours"]
    meta = arch.meta["added"]
    assert meta["from_run"] == str(base_run) and meta["frozen_domains"] == ["colours"] and meta["new_domains"] == ["bars"]
    geo = arch.space.geometry(arch.paths["bars"])
    info = meta["domains"]["bars"]
    assert sorted(info["reused_nodes"] + info["new_nodes"]) == sorted(geo.nodes())
    assert set(info["reused_nodes"]) <= set(meta["frozen_nodes"]) and not set(info["new_nodes"]) & set(meta["frozen_nodes"])
    assert meta["cost"]["t0"] == 1.0 and "added params" in meta["cost"]["T"]
    # The cap on what it adds: add_domain.params_budget (0.5) times RUN's parameters per domain (one domain here).
    per_domain = sum(p.numel() for p in _model(base_run).parameters())
    assert meta["cost"]["trained_per_domain"]["params"] == per_domain
    assert meta["cost"]["max_added_params"] == round(0.5 * per_domain) >= info["added_params"]
    assert arch.meta["method"] == "add-domain"
    # What it adds is the merged model's real growth in parameters.
    count = lambda run: sum(p.numel() for p in _model(run).parameters())  # noqa: E731
    assert meta["added_params"] == info["added_params"] == count(new_run) - count(base_run)
    assert Frozen.of(base_arch).fits(geo)


def test_new_run_is_a_normal_run(base_run, added, tiny_root, capsys):
    new_run, _ = added
    assert (new_run / "report.md").is_file()
    assert main(["evaluate", "--run", str(new_run)]) == 0
    predictor = mpnas.load(new_run)
    assert predictor.domains == ["colours", "bars"]
    image = next((tiny_root / "bars" / "test" / "class1").iterdir())
    assert predictor.predict(image, "bars")[0][0] in ("class0", "class1", "class2")
    colours = sorted((tiny_root / "colours" / "test").rglob("*.png"))
    assert (predictor.probabilities(colours, "colours") == mpnas.load(base_run).probabilities(colours, "colours")).all()
    capsys.readouterr()
    assert main(["predict", "--run", str(new_run), "--domain", "bars", "--json", str(image)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["top"][0]["class"].startswith("class")


def test_fitting_paths_load_the_trained_tensors_and_add_what_growth_counts(base_run):
    """Every random path that `Frozen.fits` accepts can take the trained tensors as they are, and its added
    parameters are exactly the merged model's growth; one that is too wide for a trained node cannot."""
    base_arch = read_architecture(base_run)
    frozen, space = Frozen.of(base_arch), base_arch.space
    trained = _model(base_run).state_dict()
    rng = random.Random(0)
    fitting = too_wide = 0
    for i in range(60):
        path = base_arch.paths["colours"] if i == 0 else space.random_path(rng)
        geo = space.geometry(path)
        combined = frozen.combined({"new": path}, {"new": 5})
        model = MultiPathModel(combined)
        why = frozen.misfit(geo)
        if why is None:
            fitting += 1
            assert frozen.added_params(geo, 5) == frozen.growth({"new": path}, {"new": 5})
            new_names = load_frozen(model, trained)
            assert new_names and not set(new_names) & set(trained)
            assert not any(p.requires_grad for n, p in model.named_parameters() if n in trained)
        elif "expands" not in why and "stem kernel" not in why:
            too_wide += 1
            with pytest.raises(ValueError, match="does not fit"):
                load_frozen(model, trained)
    assert fitting >= 2 and too_wide >= 5, (fitting, too_wide)


def test_frozen_parts_take_no_gradient_in_the_extension_supernet(base_run):
    base_arch = read_architecture(base_run)
    base = _model(base_run)
    ext = Extension(Frozen.of(base_arch), base, {"bars": 3})
    net = ext.supernet(base_arch.space, {"bars": 3}, "torchvision", True, 0.1).train()
    assert isinstance(net, ExtensionSupernet)
    geo = base_arch.space.geometry(base_arch.paths["colours"])  # fits: runs the trained modules only
    loss = net.forward_geometry(torch.randn(4, 3, 16, 16), geo, "bars").logsumexp(1).sum()
    loss.backward()
    frozen_params = [*net.base_stem.named_parameters(), *net.base_nodes.named_parameters(),
                     *net.base_head.named_parameters()]
    key = domain_key("bars")
    mine = [(n, p) for n, p in frozen_params if key in n.split(".")]
    theirs = [(n, p) for n, p in frozen_params if key not in n.split(".")]
    assert mine and theirs
    assert all(not p.requires_grad and p.grad is None for _, p in theirs)
    assert all(p.requires_grad for _, p in mine) and any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in mine)
    # The trained copies hold the trained model's tensors.
    for name, t in base.nodes.state_dict().items():
        assert torch.equal(net.base_nodes.state_dict()[name], t), name
    # A trained domain's own path adds only batch norms and a classifier: it costs less than the same path all new.
    cost = ext.costs
    assert isinstance(cost, ExtensionCost)
    own = geometry_cost(geo, 3)
    assert cost("bars", geo) < 0.5 * (own.macs / cost.macs_per_domain + own.params / cost.params_per_domain)


def _refused(capsys, argv: list[str], *needles: str) -> None:
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("case", ["existing", "unknown", "resolution", "unfinished", "slimmable", "itself"])
def test_bad_input_is_one_line_exit_2_and_run_untouched(case, base_run, cfg_file, tmp_path, capsys):
    run, out = base_run, tmp_path / "new"
    domains, extra, needles = "bars", [], []
    if case == "existing":
        domains, needles = "colours", ["'colours' already exists"]
    elif case == "unknown":
        domains, needles = "nosuch", ["nosuch"]
    elif case == "resolution":
        extra, needles = ["--resolution", "24"], ["--resolution", "24", "16"]
    elif case == "unfinished":
        run = tmp_path / "half"
        assert main(["search", "--config", str(cfg_file), "--budget", "quick", "--domains", "colours", "--out",
                     str(run), "--quiet"]) == 0
        needles = ["has not finished"]
    elif case == "slimmable":
        run = tmp_path / "slim"
        shutil.copytree(base_run, run)
        text = (run / "config.yaml").read_text()
        assert "slimmable: false" in text
        (run / "config.yaml").write_text(text.replace("slimmable: false", "slimmable: true", 1))
        needles = ["slimmable"]
    else:
        out, needles = base_run, ["is RUN itself"]
    before = _snapshot(run)
    capsys.readouterr()
    _refused(capsys, ["add-domain", "--run", str(run), "--domains", domains, "--config", str(cfg_file), "--budget",
                      "quick", "--out", str(out), "--quiet", *extra], *needles)
    assert _snapshot(run) == before
    if out != base_run:
        assert not out.exists() or not any(out.iterdir())


def test_export_keeps_old_domain_files_byte_identical_and_lists_the_delta(base_run, added, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    new_run, _ = added
    for run, out in ((base_run, tmp_path / "old"), (new_run, tmp_path / "new")):
        assert main(["export", "--run", str(run), "--out", str(out), "--latency-repeats", "1"]) == 0
    old = json.loads((tmp_path / "old" / "export.json").read_text())
    new = json.loads((tmp_path / "new" / "export.json").read_text())
    assert "delta" not in old
    assert new["domains"]["colours"]["sha256"] == old["domains"]["colours"]["sha256"]
    assert (tmp_path / "new" / new["domains"]["colours"]["onnx"]).read_bytes() == \
        (tmp_path / "old" / old["domains"]["colours"]["onnx"]).read_bytes()
    delta = new["delta"]
    assert delta["unchanged_domains"] == ["colours"] and delta["new_domains"] == ["bars"]
    assert delta["changed_files"] == [new["domains"]["bars"]["onnx"]]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _comparable(run: Path) -> dict:
    arch = json.loads((run / "architecture.json").read_text())
    arch["meta"].pop("wall_time_s", None)
    results = json.loads((run / "results.json").read_text())
    results.pop("wall_time_s", None)
    return {"arch": arch, "results": results, "metrics": (run / "metrics.jsonl").read_text().splitlines(),
            "weights": load_file(run / "model.safetensors")}


def test_killed_in_search_and_in_training_then_resumed_is_bit_identical(base_run, cfg_file, tmp_path):
    sets = ["--set", "search.steps=30", "--set", "train.steps=40", "--set", "train.eval_every=10", "--set",
            "checkpoint_every=3"]

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "mpnas", "add-domain", "--run", str(base_run), "--domains", "bars", "--config",
                str(cfg_file), "--budget", "quick", *sets, "--out", str(out), "--quiet", "--resume"]

    ref = tmp_path / "ref"
    subprocess.run(command(ref), env=_env(), check=True, capture_output=True)
    out = tmp_path / "killed"
    for stage, step in (("search", 10), ("train", 14)):
        proc = subprocess.Popen(command(out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while not logged(out, stage, step):
            assert proc.poll() is None, f"ended before the kill point: {proc.stderr.read().decode()[-500:]}"
            assert time.time() < deadline
            time.sleep(0.002)
        proc.kill()
        proc.wait(timeout=120)
    assert not (out / "results.json").is_file()
    done = subprocess.run(command(out), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train: resuming after step" in done.stderr
    a, b = _comparable(out), _comparable(ref)
    a["arch"]["meta"]["added"].pop("from_run")
    b["arch"]["meta"]["added"].pop("from_run")
    assert a["arch"] == b["arch"] and a["results"] == b["results"] and a["metrics"] == b["metrics"]
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k


@pytest.mark.parametrize("setting", ["search.strategy=gradient", "train.from_supernet=true", "search.fair_sampling=true"])
def test_unsupported_options_are_refused_before_anything_is_written(setting, base_run, cfg_file, tmp_path, capsys):
    out = tmp_path / "new"
    _refused(capsys, ["add-domain", "--run", str(base_run), "--domains", "bars", "--config", str(cfg_file), "--budget",
                      "quick", "--set", setting, "--out", str(out), "--quiet"], setting.split("=")[0])
    assert not out.exists()


def test_resume_needs_no_options_and_writes_a_missing_report(added, tmp_path, capsys):
    new_run, _ = added
    copy = tmp_path / "copy"
    shutil.copytree(new_run, copy)
    (copy / "report.md").unlink()
    stages = json.loads((copy / "stages.json").read_text())
    stages.pop("report")
    (copy / "stages.json").write_text(json.dumps(stages))
    weights = (copy / "model.safetensors").read_bytes()
    run = read_architecture(copy).meta["added"]["from_run"]
    assert main(["add-domain", "--run", run, "--domains", "bars", "--out", str(copy), "--resume", "--quiet"]) == 0
    assert (copy / "report.md").is_file() and (copy / "model.safetensors").read_bytes() == weights
    capsys.readouterr()
    _refused(capsys, ["add-domain", "--run", run, "--domains", "other", "--out", str(copy), "--resume"], "adds bars")


@pytest.mark.parametrize("command", ["train", "run"])
def test_run_and_train_refuse_a_directory_add_domain_made(command, added, capsys):
    new_run, _ = added
    argv = ["train", "--run", str(new_run), "--resume"] if command == "train" else ["run", "--out", str(new_run), "--resume"]
    before = _snapshot(new_run)
    _refused(capsys, argv, "made by `mpnas add-domain`")
    assert _snapshot(new_run) == before


def test_the_space_defaults_to_runs_own(cfg_file, tmp_path, capsys):
    """A RUN in another space than the options' budget: add-domain searches in RUN's space unless the options name
    space.* (a --set, or a --config that has a space section)."""
    base = tmp_path / "base"
    assert main(["run", "--config", str(cfg_file), "--budget", "quick", "--domains", "colours", "--set",
                 "space.preset=default-4x4", "--set", "search.steps=2", "--set", "train.steps=2", "--out", str(base),
                 "--quiet"]) == 0
    no_space = {k: v for k, v in yaml.safe_load(cfg_file.read_text()).items() if k != "space"}
    (tmp_path / "no-space.yaml").write_text(yaml.safe_dump(no_space))
    common = ["add-domain", "--run", str(base), "--domains", "bars", "--config", str(tmp_path / "no-space.yaml"),
              "--budget", "quick", "--set", "search.steps=2", "--set", "train.steps=2", "--quiet"]
    capsys.readouterr()
    _refused(capsys, [*common, "--set", "space.preset=default", "--out", str(tmp_path / "other")], "search space")
    assert main([*common, "--out", str(tmp_path / "new")]) == 0
    assert read_architecture(tmp_path / "new").space.name == "default-4x4"


def test_a_path_that_does_not_fit_or_breaks_the_cap_is_never_drawn_or_chosen(base_run):
    """The new domain's controller is masked (`Admissible`): even one that prefers the widest options, which no
    trained module can run, draws and returns only admitted paths, and it draws them itself (every draw is one
    REINFORCE learns from; the earlier redraw-then-stand-in scheme mostly learnt nothing)."""
    base_arch = read_architecture(base_run)
    frozen, space = Frozen.of(base_arch), base_arch.space
    gen = torch.Generator().manual_seed(0)
    roomy = Extension(frozen, _model(base_run), {"bars": 3}, params_budget=100.0)
    tight = Extension(frozen, _model(base_run), {"bars": 3}, params_budget=0.3)
    plain = Controller(space)
    with torch.no_grad():
        for logits in plain.logits:
            logits[-1] += 5.0
    assert not frozen.fits(space.geometry(plain.most_likely_path()))
    uncapped = [plain.sample(gen) for _ in range(40)]
    added = [tight.costs.added("bars", space.geometry(space.path_from_choices(c))) for c in uncapped]
    assert max(added) > tight.costs.budget  # the cap bites on what an unmasked controller draws
    for ext in (roomy, tight):
        ctrl = ext.controller(space, "bars")
        ctrl.load_state_dict(plain.state_dict())
        for _ in range(20):
            choices = ctrl.sample(gen)
            assert ext.admits("bars", space.path_from_choices(choices))
            for p in (0.5, 1.0):  # whole, so the warm-up can un-skip any layer
                warmed, _ = warm_up(space.decisions(), choices, p, random.Random(1))
                space.path_from_choices(warmed)
        assert ext.admits("bars", ctrl.most_likely_path())
    # a cap below every path: the draws add the least any fitting path can
    nothing = Extension(frozen, _model(base_run), {"bars": 3}, params_budget=1e-9)
    ctrl = nothing.controller(space, "bars")
    floor = min(nothing.costs.added("bars", space.geometry(p)) for p in nothing.fallbacks())
    for _ in range(10):
        geo = space.geometry(space.path_from_choices(ctrl.sample(gen)))
        assert frozen.fits(geo) and nothing.costs.added("bars", geo) <= floor


def test_probing_an_add_domain_search_is_refused_by_file(added, base_run):
    """The benchmarks' probes load a search's supernet as a plain `Supernet`; an add-domain search's also holds
    RUN's frozen nodes, so the probe names the file instead of loading a wrong supernet."""
    new, _ = added
    arch = read_architecture(new)
    with pytest.raises(MpnasError, match="search_state.pt: not the supernet of a plain search"):
        load_final_search(new, arch.space, arch.num_classes)
    base = read_architecture(base_run)  # RUN's own, plain search loads, with its trained controller
    supernet, controllers, _ = load_final_search(base_run, base.space, base.num_classes)
    assert set(controllers) == {"colours"} and supernet.training
