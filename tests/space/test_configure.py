"""`mpnas configure` on a toy measured table: the constraint holds, preferences move capacity, an unreachable
budget is one clear error naming the smallest reachable cost; `evaluate --config` and `export --config` on a
tiny slimmable run."""

from __future__ import annotations

import json
import random

import pytest

from mpnas.cli import main
from mpnas.config import apply_overrides, resolve_config
from mpnas.space.configure import Table, configure, parse_prefer
from mpnas.errors import MpnasError
from mpnas.io import write_json
from mpnas.rundir import write_config
from mpnas.space.arch import Architecture
from mpnas.space.presets import get_space
from mpnas.space.widths import Widths, width_units, widths_cost

OPTIONS = [0.5, 0.75, 1.0]
# Ground truth of the toy table: top-1 = base + slope x (sum of the domain's multipliers).
TRUTH = {"a": (40.0, 6.0), "b": (60.0, 2.0), "c": (50.0, 4.0)}


@pytest.fixture(scope="module")
def arch():
    space = get_space("default", resolution=32)
    rng = random.Random(5)
    return Architecture(space, {d: space.random_path(rng) for d in TRUTH}, {d: 5 for d in TRUTH})


def toy_table(arch, rows: int = 30) -> dict:
    rng = random.Random(0)
    out = []
    for i in range(rows):
        w = Widths.uniform(arch, 1.0) if i == 0 else Widths.sample(arch, OPTIONS, rng)
        top1 = {d: TRUTH[d][0] + TRUTH[d][1] * sum(w.multipliers[d].values()) for d in arch.domains}
        total, per_domain = widths_cost(arch, w)
        out.append({"kind": "random", "recalibrated": True, "widths": w.to_dict(), "val_top1": top1,
                    "mean_val_top1": sum(top1.values()) / 3, "macs": {d: c.macs for d, c in per_domain.items()},
                    "macs_total": total.macs, "params_total": total.params})
    latency = {d: [[widths_cost(arch, Widths.uniform(arch, m))[1][d].macs, 1.0 + m] for m in OPTIONS] for d in arch.domains}
    return {"format": "mpnas.slim_table/1", "multipliers": OPTIONS, "units": width_units(arch.space), "rows": out,
            "latency_ms": latency}


def test_the_fitted_predictor_recovers_a_linear_truth(arch):
    table = Table.from_dict(toy_table(arch), arch, "toy")
    w = Widths.uniform(arch, 0.75).multipliers
    for d, (base, slope) in TRUTH.items():
        assert table.predict(d, w[d], measured=False) == pytest.approx(base + slope * 0.75 * 6, abs=0.1)
        assert table.loo_rmse[d] < 0.1


@pytest.mark.parametrize("kind", ["macs", "params", "latency"])
def test_configure_meets_the_constraint_and_uses_the_budget(arch, kind):
    table = Table.from_dict(toy_table(arch), arch, "toy")
    full = widths_cost(arch, Widths.uniform(arch, 1.0))[0]
    limits = {"macs": 0.6 * full.macs, "params": 0.7 * full.params, "latency": 2.0 * 3 * 0.8}
    out = configure(arch, table, kind, limits[kind], {})
    w = Widths.from_dict(out["widths"], arch, OPTIONS, "out")

    def cost(widths):
        total, per_domain = widths_cost(arch, widths)
        if kind == "latency":
            return sum(table.latency_ms(d, c.macs) for d, c in per_domain.items())
        return total.macs if kind == "macs" else total.params

    assert cost(w) <= limits[kind]
    if kind == "latency":
        assert cost(w) == pytest.approx(out["latency_ms_predicted"], abs=1e-3)
    total = widths_cost(arch, w)[0]
    assert out["macs_total"] == total.macs and out["params_total"] == total.params
    assert {"widths", "macs_total", "params_total", "mean_top1"} <= set(out)
    # every width predicts a gain here, so no unit can be widened one step within the limit
    assert not w.is_full()
    for d, ms in w.multipliers.items():
        for u, m in ms.items():
            if m < 1.0:
                wider = {k: dict(v) for k, v in w.multipliers.items()}
                wider[d][u] = OPTIONS[OPTIONS.index(m) + 1]
                assert cost(Widths(wider)) > limits[kind], (d, u)


def test_a_preferred_domain_keeps_more_of_its_capacity(arch):
    table = Table.from_dict(toy_table(arch), arch, "toy")
    limit = 0.6 * widths_cost(arch, Widths.uniform(arch, 1.0))[0].macs
    equal = configure(arch, table, "macs", limit, {})
    for d in arch.domains:
        preferred = configure(arch, table, "macs", limit, {d: 8.0})
        assert preferred["domains"][d]["top1_predicted"] >= equal["domains"][d]["top1_predicted"]
        assert preferred["domains"][d]["macs"] >= equal["domains"][d]["macs"]
    # b gains least per width, so with equal weights it is narrowed first; preferring it must change that
    assert configure(arch, table, "macs", limit, {"b": 8.0})["domains"]["b"]["macs"] > equal["domains"]["b"]["macs"]


def test_an_unreachable_budget_names_the_smallest_reachable_cost(arch):
    table = Table.from_dict(toy_table(arch), arch, "toy")
    smallest = widths_cost(arch, Widths.uniform(arch, 0.5))[0].macs
    with pytest.raises(MpnasError, match=f"smallest configuration .* costs {smallest / 1e6:.3f} M MACs"):
        configure(arch, table, "macs", smallest - 1, {})
    assert configure(arch, table, "macs", smallest, {})["macs_total"] == smallest


def test_bad_preferences_and_tables_are_refused_by_name(arch):
    table = Table.from_dict(toy_table(arch), arch, "toy")
    with pytest.raises(MpnasError, match="unknown domain.*zebra"):
        configure(arch, table, "macs", 1e9, {"zebra": 2.0})
    with pytest.raises(MpnasError, match="'a=x' is not domain=weight"):
        parse_prefer("a=x")
    with pytest.raises(MpnasError, match="weight must be positive"):
        configure(arch, table, "macs", 1e9, {"a": 0.0})
    bad = toy_table(arch)
    bad["units"] = ["stem"]
    with pytest.raises(MpnasError, match="toy: units"):
        Table.from_dict(bad, arch, "toy")
    for key, value, message in (("multipliers", None, "needs 'multipliers'"), ("rows", [], "0 measured row"),
                                ("latency_ms", {"a": [[1, "x"]]}, "latency_ms of domain 'a'")):
        bad = {**toy_table(arch), key: value}
        with pytest.raises(MpnasError, match=message):
            Table.from_dict(bad, arch, "toy")


@pytest.fixture()
def fake_run(arch, tmp_path):
    """A run directory with what configure reads: config, architecture and a measured table (no weights)."""
    run = tmp_path / "run"
    run.mkdir()
    write_config(run, resolve_config("quick", overrides=["train.slimmable=true"]))
    arch.save(run / "architecture.json")
    write_json(run / "slim_table.json", toy_table(arch))
    return run


def test_the_command_writes_a_config_or_one_clear_error(fake_run, tmp_path, capsys):
    out = tmp_path / "c.json"
    limit = int(0.6 * widths_cost(arch_of(fake_run), Widths.uniform(arch_of(fake_run), 1.0))[0].macs)
    assert main(["configure", "--run", str(fake_run), "--max-macs", str(limit), "--prefer", "b=3", "--out", str(out)]) == 0
    config = json.loads(out.read_text())
    assert config["macs_total"] <= limit and config["domains"]["b"]["weight"] == pytest.approx(3 / (5 / 3))
    assert config["configure_s"] < 10
    capsys.readouterr()
    assert main(["configure", "--run", str(fake_run), "--max-macs", "1000", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be met" in err[0] and "smallest configuration" in err[0]
    assert not (tmp_path / "x.json").exists()


def arch_of(run):
    return Architecture.load(run / "architecture.json")


def test_a_run_that_was_not_slimmable_is_refused(fake_run, tmp_path, capsys):
    write_config(fake_run, resolve_config("quick"))
    assert main(["configure", "--run", str(fake_run), "--max-macs", "1e9", "--out", str(tmp_path / "c.json")]) == 2
    assert "train.slimmable" in capsys.readouterr().err


def test_evaluate_and_export_a_configuration_of_a_tiny_slimmable_run(tiny_cfg, tmp_path, capsys):
    """The whole path on real weights: train slimmable, configure, evaluate --config (measured figures added to
    the file), export --config (ONNX at the slimmed widths, checked against PyTorch by the exporter)."""
    from mpnas.pipeline import run_all

    cfg = apply_overrides(tiny_cfg, ["search.steps=4", "train.slimmable=true", "train.slim_profile=2",
                                     "train.recalibrate_batches=2"])
    run = tmp_path / "run"
    run_all(cfg, run, progress=False)
    table = json.loads((run / "slim_table.json").read_text())
    assert len(table["rows"]) == 1 + 2 * 2 + 2 and len(table["curve"]) == 5
    report = (run / "report.md").read_text()  # the report shows the curve, the preferences and batch norm's figures
    assert all(h in report for h in ("## Slimmable widths", "### Controllability", "### Preferences", "### Batch norm"))
    assert (run / "figures" / "slimmable.png").stat().st_size > 1000
    arch = Architecture.load(run / "architecture.json")
    limit = widths_cost(arch, Widths.uniform(arch, 0.75))[0].macs
    config = tmp_path / "c.json"
    assert main(["configure", "--run", str(run), "--max-macs", str(limit), "--measure", "--out", str(config)]) == 0
    assert "mean_top1_measured_val" in json.loads(config.read_text())
    assert main(["evaluate", "--run", str(run), "--config", str(config), "--quiet"]) == 0
    measured = json.loads(config.read_text())
    assert "mean_top1_measured_test" in measured and measured["mean_top1"] == measured["mean_top1_measured_test"]
    pytest.importorskip("onnxruntime")
    out = tmp_path / "export"
    assert main(["export", "--run", str(run), "--out", str(out), "--config", str(config), "--latency-repeats", "1"]) == 0
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["widths"]["multipliers"] == measured["widths"]
    for d, e in manifest["domains"].items():
        assert e["macs"] == measured["domains"][d]["macs"]
        assert e["top1"] == pytest.approx(measured["domains"][d]["top1_measured_test"], abs=1e-6)
