"""Search spaces small enough for tests to enumerate every path."""

from __future__ import annotations

from mpnas.space.space import BlockSpace, LayerSpace, SearchSpace


def tiny_space() -> SearchSpace:
    """12 decisions, 4096 value combinations (fewer distinct paths: a skipped layer's choices do not matter)."""
    first = LayerSpace(1, "relu", (3, 5), (1.0, 2.0), (False, True), skippable=False)
    rest = LayerSpace(1, "relu", (3, 5), (2.0, 3.0), (False, True), skippable=True)
    last = LayerSpace(2, "hswish", (3,), (2.0, 4.0), (False,), skippable=False)
    return SearchSpace(name="tiny", resolution=8, stem_filters=(8, 16),
                       blocks=(BlockSpace((8, 16), (first, rest)), BlockSpace((16, 24), (last,))),
                       head_filters=32, head_hidden=0)
