"""The search of new domains added to a trained model (`mpnas add-domain`): its supernet, samples and cost.

The new domains' controllers search `mpnas.nn.extend.ExtensionSupernet`, where the trained nodes are candidates
as they are. Every path a controller is rewarded for, and every path the search may return, must fit inside the
trained modules (`mpnas.space.extension.Frozen`): a draw that does not is drawn again, up to `tries` times, after
which the controller's most likely path among the trained domains' own paths (which fit by construction) is
taken. During TuNAS's warm-up (widest filters, op averages) a path may not fit; it then trains fresh layers where
it leaves the trained modules, and its reward is not learnt from (RL has not started).

The cost T of a path is what it adds to the shipped model: the mean of its MACs over the reference path's MACs and
of the parameters it adds (`Frozen.added_params`: reused convolutions add none) over the reference path's
parameters. T0 is 1, so a path that costs what the space's middle path costs, all of it new, has T = T0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mpnas.nn.extend import ExtensionSupernet
from mpnas.nn.merged import MultiPathModel
from mpnas.search.controller import Controller
from mpnas.search.cost import CostModel
from mpnas.space.cost import geometry_cost
from mpnas.space.extension import Frozen
from mpnas.space.geometry import PathGeometry
from mpnas.space.space import Path, SearchSpace


class ExtensionCost(CostModel):
    """T = (MACs / reference MACs + added parameters / reference parameters) / 2, per new domain."""

    def __init__(self, space: SearchSpace, num_classes: dict[str, int], frozen: Frozen) -> None:
        super().__init__(space, num_classes, None)
        self.frozen = frozen
        ref = space.geometry(space.reference_path())
        self.ref = {d: geometry_cost(ref, n) for d, n in num_classes.items()}
        self.unit = "relative"

    def __call__(self, domain: str, geo: PathGeometry) -> float:
        ref = self.ref[domain]
        macs = geometry_cost(geo, self.num_classes[domain]).macs
        return 0.5 * (macs / ref.macs + self.frozen.added_params(geo, self.num_classes[domain]) / ref.params)

    def describe(self) -> dict[str, Any]:
        return {"T": "(MACs / reference MACs + added params / reference params) / 2", "t0": 1.0,
                "reference": {d: {"macs": c.macs, "params": c.params} for d, c in self.ref.items()}}


@dataclass
class Extension:
    """What `run_search` needs to search new domains around a trained model."""

    frozen: Frozen
    base: MultiPathModel  # the trained model, weights loaded
    tries: int = 64

    def supernet(self, space: SearchSpace, num_classes: dict[str, int], init: str, zero_residual: bool,
                 bn_momentum: float) -> ExtensionSupernet:
        return ExtensionSupernet(space, num_classes, self.base, self.frozen, init, zero_residual, 0.0, bn_momentum)

    def cost(self, space: SearchSpace, num_classes: dict[str, int]) -> ExtensionCost:
        return ExtensionCost(space, num_classes, self.frozen)

    def fallbacks(self) -> list[Path]:
        """The trained domains' own paths, each once: they fit by construction."""
        out: list[Path] = []
        for p in self.frozen.base.paths.values():
            if p not in out:
                out.append(p)
        return out

    def most_likely_fitting(self, controller: Controller, generator: torch.Generator) -> Path:
        """The controller's most likely path among those that fit: of `tries` fitting draws and the trained domains'
        paths, the one it gives the highest log-probability (its own most likely path, when that fits, is taken
        before this is asked)."""
        space = controller.space
        pool = list(self.fallbacks())
        for _ in range(self.tries):
            choices = controller.sample(generator)
            path = space.path_from_choices(choices)
            if path not in pool and self.frozen.fits(space.geometry(path)):
                pool.append(path)
        with torch.no_grad():
            return max(pool, key=lambda p: float(controller.log_prob(space.choices_of(p))))

    def draw(self, controller: Controller, generator: torch.Generator) -> tuple[dict[str, Any], bool]:
        """Choices that fit, and whether they are the controller's own draw (False: a trained domain's path)."""
        space = controller.space
        for _ in range(self.tries):
            choices = controller.sample(generator)
            if self.frozen.fits(space.geometry(space.path_from_choices(choices))):
                return choices, True
        with torch.no_grad():
            best = max(self.fallbacks(), key=lambda p: float(controller.log_prob(space.choices_of(p))))
        # every decision's value, as a controller's sample has them: a skipped layer's own decisions are not in
        # `choices_of`, and the warm-up may un-skip the layer
        choices = {d.key: d.options[0] for d in controller.decisions}
        choices.update(space.choices_of(best))
        return choices, False


__all__ = ["Extension", "ExtensionCost"]
