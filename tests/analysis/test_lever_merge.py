"""The lever table's judged file grows across sessions (`benchmarks/search_quality.py judge --merge`): a new judge
keeps the file's other (method, seed) cells, replaces the ones it judged again, recomputes the summary, and
refuses a file judged over a different number of batches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from search_quality import lever_table, merged  # noqa: E402

SET = {"domains": {"glyphs": {}, "textures": {}, "signs": {}}}


def _judged(method: str, seeds: dict[str, float], batches: int = 16) -> dict:
    cells = {s: {d: {"tau": t, "percentile": 50.0} for d in SET["domains"]} for s, t in seeds.items()}
    facts = {s: {"search_s": 100.0, "entropy": {"glyphs": 10.0}} for s in seeds}
    return {"batches": batches, "methods": {method: cells}, "search": {method: facts}}


def test_merge_keeps_other_cells_replaces_rejudged_ones_and_recounts(tmp_path):
    old = _judged("mpnas", {"0": 0.1, "1": 0.3})
    old["methods"].update(_judged("mpnas+fair", {"0": 0.5})["methods"])
    new = _judged("mpnas", {"1": -0.3, "2": 0.2})
    out = merged(old, new, SET)
    assert set(out["methods"]) == {"mpnas", "mpnas+fair"}
    assert {s: c["glyphs"]["tau"] for s, c in out["methods"]["mpnas"].items()} == {"0": 0.1, "1": -0.3, "2": 0.2}
    assert out["summary"]["mpnas"]["seeds"] == 3
    assert out["summary"]["mpnas"]["glyphs"]["tau_mean"] == pytest.approx(0.0, abs=1e-9)
    assert "search_s_mean" not in out["summary"]["mpnas+fair"]  # no facts were recorded for it
    table = lever_table_from(out, tmp_path)
    assert "| mpnas | 3 | +0.00 |" in table and "| mpnas+fair | 1 | +0.50 |" in table


def lever_table_from(result: dict, tmp_path: Path) -> str:
    f = tmp_path / "levers.json"
    f.write_text(json.dumps(result))
    return lever_table([f])


def test_merge_refuses_a_file_judged_over_other_batches():
    with pytest.raises(SystemExit, match="8 batches"):
        merged(_judged("mpnas", {"0": 0.1}, batches=8), _judged("mpnas", {"1": 0.2}), SET)
