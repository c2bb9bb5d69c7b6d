"""The cost T of a sampled path in the reward (seed 002, Eq. 1): latency from a measured table, or MACs.

`mpnas.search.extend.ExtensionCost` is the cost when domains are added to a trained model.
"""

from __future__ import annotations

from mpnas.space.cost import geometry_cost
from mpnas.space.geometry import PathGeometry
from mpnas.space.latency import LatencyTable
from mpnas.space.space import SearchSpace


class CostModel:
    """T for the reward: latency from a measured table when one is given, else MACs."""

    def __init__(self, space: SearchSpace, num_classes: dict[str, int], table_path: str | None) -> None:
        self.table = LatencyTable.load(table_path) if table_path else None
        if self.table is not None:
            self.table.check(space)
        self.num_classes = num_classes
        self.unit = "ms" if self.table else "MACs"

    def __call__(self, domain: str, geo: PathGeometry) -> float:
        if self.table is not None:
            return self.table.geometry_latency(geo)
        return float(geometry_cost(geo, self.num_classes[domain]).macs)
