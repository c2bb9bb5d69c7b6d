"""The search of new domains added to a trained model (`mpnas add-domain`): its supernet, samples and cost.

The new domains' controllers search `mpnas.nn.extend.ExtensionSupernet`, where the trained nodes are candidates
as they are. Every path a controller draws once RL has started, and the path the search returns, fits inside the
trained modules (`mpnas.space.extension.Frozen`) and keeps to the parameter cap: the controller samples its
decisions in order through an exact mask (`mpnas.space.extension.Admissible`), so each of its draws is one it can
learn from. (An earlier version redrew a misfit up to 64 times and then stood a trained domain's path in; at 0.5
to 3% admitted draws it mostly stood in, learnt nothing, and 3 of 9 bench pieces ended on a trained domain's path.)
During TuNAS's warm-up (widest filters, op averages) a warmed path may not fit; it then trains fresh layers where
it leaves the trained modules, and its reward is not learnt from (RL has not started).

The cost T of a path is what it adds to the shipped model, measured against what the trained model spends per
domain: the mean of its MACs over the trained domains' mean path MACs, and of the parameters it adds
(`Frozen.added_params`: reused convolutions add none) over the trained model's parameters per domain. T0 is 1: a
new domain that costs what an average trained domain costs. The reward stays the search's (MnasNet's soft one by
default), whose pressure is weak (beta = -0.07), so the parameters are also capped: a path that adds more than
`add_domain.params_budget` times the trained model's parameters per domain is masked out, as a misfit is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpnas.nn.extend import ExtensionSupernet
from mpnas.nn.merged import MultiPathModel
from mpnas.search.controller import Controller
from mpnas.search.cost import CostModel
from mpnas.space.cost import architecture_cost, geometry_cost
from mpnas.space.extension import Admissible, Frozen
from mpnas.space.geometry import PathGeometry
from mpnas.space.space import Path, SearchSpace


class ExtensionCost(CostModel):
    """T = (MACs / trained MACs per domain + added parameters / trained parameters per domain) / 2, and the cap on
    the added parameters (`budget`, per new domain)."""

    def __init__(self, space: SearchSpace, num_classes: dict[str, int], frozen: Frozen, params_budget: float) -> None:
        super().__init__(space, num_classes, None)
        self.frozen = frozen
        base = frozen.base
        self.macs_per_domain = sum(geometry_cost(space.geometry(base.paths[d]), base.num_classes[d]).macs
                                   for d in base.domains) / len(base.domains)
        self.params_per_domain = architecture_cost(base).params / len(base.domains)
        self.params_budget = params_budget
        self.budget = round(params_budget * self.params_per_domain)
        self.unit = "relative"

    def __call__(self, domain: str, geo: PathGeometry) -> float:
        macs = geometry_cost(geo, self.num_classes[domain]).macs
        return 0.5 * (macs / self.macs_per_domain + self.added(domain, geo) / self.params_per_domain)

    def added(self, domain: str, geo: PathGeometry) -> int:
        return self.frozen.added_params(geo, self.num_classes[domain])

    def admits(self, domain: str, geo: PathGeometry) -> bool:
        """Whether a path may be drawn for `domain`: it fits the trained modules and keeps to the parameter cap."""
        return self.frozen.fits(geo) and self.added(domain, geo) <= self.budget

    def describe(self) -> dict[str, Any]:
        return {"T": "(MACs / trained MACs per domain + added params / trained params per domain) / 2", "t0": 1.0,
                "trained_per_domain": {"macs": round(self.macs_per_domain), "params": round(self.params_per_domain)},
                "params_budget": self.params_budget, "max_added_params": self.budget,
                "sampling": "masked: each decision drawn among the options that keep an admitted path"}


@dataclass
class Extension:
    """What `run_search` needs to search new domains around a trained model."""

    frozen: Frozen
    base: MultiPathModel  # the trained model, weights loaded
    num_classes: dict[str, int]  # the new domains'
    params_budget: float = 0.5  # add_domain.params_budget

    def __post_init__(self) -> None:
        self.costs = ExtensionCost(self.frozen.base.space, self.num_classes, self.frozen, self.params_budget)

    def supernet(self, space: SearchSpace, num_classes: dict[str, int], init: str, zero_residual: bool,
                 bn_momentum: float) -> ExtensionSupernet:
        return ExtensionSupernet(space, num_classes, self.base, self.frozen, init, zero_residual, 0.0, bn_momentum)

    def controller(self, space: SearchSpace, domain: str) -> Controller:
        """`domain`'s controller: it draws only paths `admits` allows (`Admissible`, an exact mask per decision)."""
        return Controller(space, Admissible(self.frozen, self.num_classes[domain], self.costs.budget))

    def fallbacks(self) -> list[Path]:
        """The trained domains' own paths, each once: they fit by construction and add only batch norms and a
        classifier. With `search.final_candidates` > 1 they are scored beside the controller's candidates."""
        out: list[Path] = []
        for p in self.frozen.base.paths.values():
            if p not in out:
                out.append(p)
        return out

    def admits(self, domain: str, path: Path) -> bool:
        return self.costs.admits(domain, self.frozen.base.space.geometry(path))


__all__ = ["Extension", "ExtensionCost"]
