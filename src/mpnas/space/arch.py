"""A multi-domain architecture: each domain's path through one search space, and which domains use each node.

This is the `architecture.json` that search writes, the merged model is built from, and export and reports read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from mpnas.errors import MpnasError
from mpnas.io import read_json, write_json
from mpnas.space.space import Path, SearchSpace

FORMAT = "mpnas.architecture/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def check_domain_name(name: str) -> None:
    if not _NAME.match(name):
        raise MpnasError(
            f"domain name {name!r}: use letters, digits, '_' and '-' only (it names modules and files)"
        )


@dataclass
class Architecture:
    space: SearchSpace
    paths: dict[str, Path]  # domain -> path, in domain order
    num_classes: dict[str, int]
    # Task routing layers (a baseline): fraction of channels each domain keeps after every block; None = off.
    routing_ratio: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # free-form provenance: method, search steps, seed

    def __post_init__(self) -> None:
        if not self.paths:
            raise MpnasError("architecture: no domains")
        if set(self.paths) != set(self.num_classes):
            raise MpnasError("architecture: paths and num_classes name different domains")
        for name, n in self.num_classes.items():
            check_domain_name(name)
            if n < 1:
                raise MpnasError(f"architecture domain {name!r}: num_classes must be >= 1, got {n}")
        if self.routing_ratio is not None and not 0 < self.routing_ratio <= 1:
            raise MpnasError(f"architecture: routing_ratio must be in (0, 1], got {self.routing_ratio}")

    @property
    def domains(self) -> list[str]:
        return list(self.paths)

    def nodes_of(self, domain: str) -> list[str]:
        return self.space.geometry(self.paths[domain]).nodes()

    def node_users(self) -> dict[str, list[str]]:
        """Every node some domain uses, in network order, with the domains that use it."""
        users: dict[str, list[str]] = {}
        for d in self.domains:
            for n in self.nodes_of(d):
                users.setdefault(n, []).append(d)
        return dict(sorted(users.items(), key=lambda kv: _node_order(kv[0])))

    def shared_nodes(self) -> dict[str, list[str]]:
        return {n: ds for n, ds in self.node_users().items() if len(ds) > 1}

    def jaccard(self) -> dict[str, dict[str, float]]:
        """Pairwise Jaccard similarity |A & B| / |A | B| of the domains' node sets (seed 002, Fig. 4)."""
        sets = {d: set(self.nodes_of(d)) for d in self.domains}
        out: dict[str, dict[str, float]] = {}
        for a in self.domains:
            out[a] = {}
            for b in self.domains:
                union = sets[a] | sets[b]
                out[a][b] = len(sets[a] & sets[b]) / len(union) if union else 1.0
        return out

    # -- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "space": self.space.to_dict(),
            "domains": {
                d: {"num_classes": self.num_classes[d], "path": self.paths[d].to_dict(), "nodes": self.nodes_of(d)}
                for d in self.domains
            },
            "nodes": self.node_users(),
            "routing_ratio": self.routing_ratio,
            "meta": self.meta,
        }

    @staticmethod
    def from_dict(data: Any, where: str = "architecture") -> Architecture:
        if not isinstance(data, dict):
            raise MpnasError(f"{where}: expected a JSON object")
        if data.get("format") != FORMAT:
            raise MpnasError(f"{where}: format {data.get('format')!r} is not {FORMAT!r}")
        if "space" not in data or "domains" not in data:
            raise MpnasError(f"{where}: needs fields 'space' and 'domains'")
        space = SearchSpace.from_dict(data["space"], f"{where}.space")
        domains = data["domains"]
        if not isinstance(domains, dict) or not domains:
            raise MpnasError(f"{where}.domains: expected a non-empty object of domain -> path")
        paths, classes = {}, {}
        for name, entry in domains.items():
            at = f"{where} domain {name!r}"
            if not isinstance(entry, dict) or "path" not in entry or "num_classes" not in entry:
                raise MpnasError(f"{at}: needs fields 'path' and 'num_classes'")
            n = entry["num_classes"]
            if isinstance(n, bool) or not isinstance(n, int):
                raise MpnasError(f"{at}: num_classes must be an integer, got {n!r}")
            paths[name] = Path.from_dict(entry["path"], space, at)
            classes[name] = n
        ratio = data.get("routing_ratio")
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))):
            raise MpnasError(f"{where}: routing_ratio must be a number or null, got {ratio!r}")
        return Architecture(space, paths, classes, None if ratio is None else float(ratio), dict(data.get("meta") or {}))

    def save(self, path: str | FsPath) -> None:
        write_json(path, self.to_dict())

    @staticmethod
    def load(path: str | FsPath) -> Architecture:
        return Architecture.from_dict(read_json(path, "architecture file"), f"architecture file {path}")


def _node_order(node: str) -> tuple[int, int, int, int]:
    parts = node.split(".")
    return (int(parts[0][1:]), int(parts[1][1:]), int(parts[2][1:]), len(parts))
