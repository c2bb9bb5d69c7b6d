"""The reward's Q per domain at the end of the warm-up and of the search, from metrics rows."""

from __future__ import annotations

import pytest

from mpnas.analysis.supernet import supernet_quality


def _rows():
    rows = []
    for step in range(0, 100, 5):  # 100 steps logged every 5; RL from step 40
        for d, top1 in (("a", step / 100), ("b", 0.5)):
            rows.append({"stage": "search", "step": step, "domain": d, "top1": top1, "rl_active": step >= 40})
    rows.append({"stage": "train", "step": 3, "domain": "a", "loss": 1.0})
    return rows


def test_windows_are_the_last_tenth_of_each_phase():
    q = supernet_quality(_rows())
    # warm-up window: steps 30..39 -> logged 30, 35; search window: steps 90..99 -> logged 90, 95 (steps = 96)
    assert q["a"]["warmup_end"] == pytest.approx(100 * (0.30 + 0.35) / 2)
    assert q["a"]["search_end"] == pytest.approx(100 * (0.90 + 0.95) / 2)
    assert q["b"] == {"warmup_end": 50.0, "search_end": 50.0}


def test_no_search_rows_give_nothing():
    assert supernet_quality([{"stage": "train", "step": 1, "domain": "a", "loss": 2.0}]) == {}
