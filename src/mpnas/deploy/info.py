"""What a trained run must remember about its domains to classify new images: class names in output order,
the resolution and the normalisation statistics. Written beside the weights (`domains.json`), so that `predict`,
`mpnas.load` and `export` need neither the training data nor mpnas's cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpnas.errors import MpnasError
from mpnas.io import read_json, write_json

DOMAINS_FILE = "domains.json"
FORMAT = "mpnas.domains/1"
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


def infos_from_domains(domains: Any) -> dict[str, DomainInfo]:
    return {d.name: DomainInfo(d.name, tuple(d.class_names), d.resolution, tuple(d.mean), tuple(d.std)) for d in domains}


def write_domain_info(run_dir: Path, domains: Any) -> None:
    infos = infos_from_domains(domains)
    write_json(run_dir / DOMAINS_FILE, {"format": FORMAT, "domains": {n: i.to_dict() for n, i in infos.items()}})


def read_domain_info(run_dir: Path) -> dict[str, DomainInfo]:
    """The run's domains; a run trained before `domains.json` existed falls back to loading its data source."""
    path = run_dir / DOMAINS_FILE
    if not path.is_file():
        from mpnas.pipeline import load_data, read_config

        return infos_from_domains(load_data(read_config(run_dir), progress=False))
    data = read_json(path, "domains file")
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("domains"), dict):
        raise MpnasError(f"domains file {path}: not an {FORMAT} file")
    out = {}
    for name, d in data["domains"].items():
        try:
            out[name] = DomainInfo(name, tuple(str(c) for c in d["classes"]), int(d["resolution"]),
                                   tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise MpnasError(f"domains file {path}: domain {name!r} is malformed ({exc})") from None
    return out
