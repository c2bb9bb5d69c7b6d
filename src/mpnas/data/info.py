"""What a trained run must remember about its domains to classify new images: class names in output order,
the resolution and the normalisation statistics. A run keeps them beside its weights (`domains.json`, written
and read by `mpnas.rundir`), so that `predict`, `mpnas.load` and `export` need neither the training data nor
mpnas's cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from mpnas.data.domain import Domain

RESIZE_RULE = "shorter_side_then_center_crop"


@dataclass(frozen=True)
class DomainInfo:
    name: str
    classes: tuple[str, ...]
    resolution: int
    mean: tuple[float, float, float]  # per channel, for pixels scaled to 0..1
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "resolution": self.resolution, "resize": RESIZE_RULE,
                "mean": list(self.mean), "std": list(self.std)}


def rgb(values: Iterable[float]) -> tuple[float, float, float]:
    """Per-channel statistics as the three floats a `DomainInfo` holds (from a list, a tuple or JSON)."""
    r, g, b = values
    return float(r), float(g), float(b)


def infos_from_domains(domains: Iterable[Domain]) -> dict[str, DomainInfo]:
    return {d.name: DomainInfo(d.name, tuple(d.class_names), d.resolution, rgb(d.mean), rgb(d.std)) for d in domains}


__all__ = ["RESIZE_RULE", "DomainInfo", "infos_from_domains", "rgb"]
