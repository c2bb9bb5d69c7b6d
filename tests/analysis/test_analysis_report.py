"""report.md and its figures from a run directory written like the search, train and evaluate stages write it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from analysis_fakerun import make_arch, metric_rows, write_run

from mpnas.analysis import figures, node_table, write_report
from mpnas.analysis.nodes import format_path
from mpnas.errors import MpnasError
from mpnas.space.arch import Architecture

PNG = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = ("accuracy.png", "architecture.png", "jaccard.png", "rewards.png", "controller_probs.png", "training.png")


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG, f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Architecture, str]:
    """One report over a complete run, shared by the tests that read it (drawing takes a few seconds)."""
    arch = make_arch(3)
    run = write_run(tmp_path_factory.mktemp("run"), arch, metric_rows(arch))
    report = write_report(run)
    return run, arch, report.read_text(encoding="utf-8")


def test_report_mentions_every_domain_and_embeds_every_figure(full_run: tuple[Path, Architecture, str]) -> None:
    run, arch, text = full_run
    assert (run / "report.md").is_file()
    assert text.startswith("# MPNAS report: mpnas on decathlon:")
    for d in arch.domains:
        assert f"| {d} |" in text  # the results table
        assert f"**{d}**" in text  # its path
    for name in ALL_FIGURES:
        assert f"](figures/{name})" in text
        assert_png(run / "figures" / name)
    assert "not drawn" not in text


def test_report_counts_and_lists_shared_nodes(full_run: tuple[Path, Architecture, str]) -> None:
    _, arch, text = full_run
    shared = arch.shared_nodes()
    assert re.search(rf"\*\*{len(shared)} shared\*\*", text)
    for node, users in shared.items():
        assert f"| `{node}` | {', '.join(users)} |" in text
    assert "Visual Decathlon score" in text and "decathlon points" in text


def test_report_shows_paths_jaccard_search_training_and_config(full_run: tuple[Path, Architecture, str]) -> None:
    _, arch, text = full_run
    for d in arch.domains:
        assert "\n".join(format_path(arch.space, arch.paths[d])) in text
    jac = arch.jaccard()
    a, b = arch.domains[:2]
    assert f"| **{a}** | 1.00 | {jac[a][b]:.2f} |" in text
    assert "At the last logged step (59)" in text
    assert "Best mean validation top-1" in text
    assert "```yaml\nseed: 0\n" in text and "<details>" in text
    assert "something_new" not in text  # rows of unknown stages are ignored


def test_node_table_marks_the_shared_nodes_and_widths() -> None:
    arch = make_arch(3)
    table = node_table(arch)
    space = arch.space
    assert len(table) == sum(len(la.kernels) * len(la.se) for bl in space.blocks for la in bl.layers) == 78
    shared = {n for n, u in table.items() if u.shared}
    assert shared == set(arch.shared_nodes()) and shared  # make_arch forces one shared node at b1.l0
    assert {n: list(u.domains) for n, u in table.items() if u.used} == arch.node_users()
    first, second = arch.domains[:2]
    forced = next(u for u in table.values() if (u.block, u.layer) == (1, 0) and first in u.domains)
    assert forced.shared and second in forced.domains
    for d in arch.domains:
        for g in space.geometry(arch.paths[d]).layers:
            assert table[g.node].widths[d] == (g.exp_ch, g.out_ch)
    unused = [u for u in table.values() if not u.used]
    assert unused and all(not u.widths and not u.shared for u in unused)


def test_single_path_model_shares_every_node() -> None:
    arch = make_arch(3)
    same = Architecture(arch.space, {d: arch.paths[arch.domains[0]] for d in arch.domains}, arch.num_classes)
    used = [u for u in node_table(same).values() if u.used]
    assert used and all(u.domains == tuple(arch.domains) for u in used)


def test_baseline_run_without_search_rows_skips_those_figures(tmp_path: Path) -> None:
    arch = make_arch(2, seed=5)
    rows = metric_rows(arch, search_steps=0, train_steps=40)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "rewards.png").write_bytes(PNG + b"stale")  # from an earlier report of this run
    run = write_run(tmp_path, arch, rows, data="builtin")
    text = write_report(run).read_text(encoding="utf-8")
    assert "not drawn: no metrics.jsonl rows from a search" in text
    assert "](figures/rewards.png)" not in text and "](figures/controller_probs.png)" not in text
    assert not (run / "figures" / "rewards.png").exists()
    assert_png(run / "figures" / "training.png")
    assert "Visual Decathlon score" not in text  # builtin data: results carry no score


def test_report_without_metrics_or_config(tmp_path: Path) -> None:
    arch = make_arch(1)
    run = write_run(tmp_path, arch, rows=None)
    (run / "config.yaml").unlink()
    text = write_report(run).read_text(encoding="utf-8")
    assert "not drawn: no metrics.jsonl rows from training" in text
    assert "single domain has no other path" in text
    assert "No config.yaml" in text
    for name in ("accuracy.png", "architecture.png"):
        assert_png(run / "figures" / name)


@pytest.mark.parametrize("missing, command",
                         [("results.json", "mpnas evaluate"), ("architecture.json", "mpnas search")])
def test_missing_inputs_name_the_file_and_the_command_that_writes_it(tmp_path: Path, missing: str, command: str) -> None:
    run = write_run(tmp_path, make_arch(2), rows=[])
    (run / missing).unlink()
    with pytest.raises(MpnasError, match=rf"no {re.escape(missing)} \(written by `{command}"):
        write_report(run)
    assert not (run / "report.md").exists()


def test_malformed_results_are_a_user_error(tmp_path: Path) -> None:
    run = write_run(tmp_path, make_arch(2), rows=[])
    (run / "results.json").write_text(json.dumps({"method": "mpnas"}), encoding="utf-8")
    with pytest.raises(MpnasError, match="results file .*results.json: expected an object with 'domains'"):
        write_report(run)


def test_architecture_figure_draws_ten_domains(tmp_path: Path) -> None:
    out = figures.plot_architecture(make_arch(10, seed=2), tmp_path / "arch10.png")
    assert_png(out)


def test_curve_figures_tolerate_odd_rows(tmp_path: Path) -> None:
    rows = [
        {"stage": "search", "step": 0, "domain": "a", "reward": 0.5, "baseline": None},
        {"stage": "search", "step": "1", "domain": "a", "reward": 0.6},  # step not an integer: ignored
        {"stage": "search", "step": 2, "domain": "a", "reward": True},  # not a number: ignored
        {"stage": "search", "step": 3, "domain": "a", "reward": 0.7, "baseline": 0.5},
    ]
    assert_png(figures.plot_rewards(rows, tmp_path / "rewards.png"))
    with pytest.raises(MpnasError, match="no train or train_eval rows"):
        figures.plot_training(rows, tmp_path / "training.png")


def test_controller_probs_from_another_space_is_a_clear_error(tmp_path: Path) -> None:
    rows = [{"stage": "search_probs", "step": 0, "domain": "a", "probs": {"x9.filters": [0.5, 0.5]}}]
    with pytest.raises(MpnasError, match="name none of the decisions of space 'default'"):
        figures.plot_controller_probs(rows, make_arch(1).space, tmp_path / "probs.png")


def test_both_inputs_missing_are_named_together(tmp_path: Path) -> None:
    with pytest.raises(MpnasError, match=r"no architecture\.json .*mpnas search.*; no results\.json .*mpnas evaluate"):
        write_report(tmp_path)


def test_unusable_rows_leave_a_note_instead_of_failing_the_report(tmp_path: Path) -> None:
    arch = make_arch(2)
    rows = [{"stage": "search", "step": "0", "domain": d, "reward": 0.5} for d in arch.domains]
    text = write_report(write_run(tmp_path, arch, rows)).read_text(encoding="utf-8")
    assert re.search(r"not drawn: figure .*rewards\.png: no search rows in the metrics", text)
