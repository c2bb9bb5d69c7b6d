"""`load_domains`: one spec string picks the source (builtin, decathlon:ROOT, folder:ROOT), then the domains."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from mpnas.config import DataConfig
from mpnas.data.builtin import BuiltinSource
from mpnas.data.cache import LoadOptions, cache_root
from mpnas.data.decathlon import DecathlonSource
from mpnas.data.domain import DomainSet
from mpnas.data.folder import FolderSource
from mpnas.errors import MpnasError

SPEC_FORMS = "builtin | decathlon:ROOT | folder:ROOT"
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024


def open_source(spec: str) -> BuiltinSource | DecathlonSource | FolderSource:
    kind, sep, root = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "builtin" and not root:
        return BuiltinSource()
    if kind in ("decathlon", "folder") and sep:
        if not root.strip():
            raise MpnasError(f"data spec {spec!r}: {kind} needs a root folder, e.g. {kind}:/data/{kind}")
        path = Path(root.strip()).expanduser().resolve()
        return DecathlonSource(path) if kind == "decathlon" else FolderSource(path)
    raise MpnasError(f"data spec {spec!r}: unknown source (expected {SPEC_FORMS})")


def select(known: list[str], wanted: list[str] | None, spec: str) -> list[str]:
    """The wanted domains in the order given, or all of them; unknown or repeated names are errors."""
    if wanted is None:
        return known
    if not wanted:
        raise MpnasError(f"data {spec}: an empty list of domains (known: {', '.join(known)})")
    for name in wanted:
        if name not in known:
            raise MpnasError(f"unknown domain {name!r} in data {spec} (known: {', '.join(known)})")
        if wanted.count(name) > 1:
            raise MpnasError(f"domain {name!r} is listed twice")
    return list(wanted)


def load_domains(spec: str = "builtin", domains: list[str] | None = None, resolution: int = 32, *, seed: int = 0,
                 skip_bad_images: bool = False, cache_dir: str | None = None, progress: bool = True) -> DomainSet:
    """Load the domains of a source, decoding or building them into the cache on first use.

    `domains` keeps those names, in that order (None: all, in the source's order). `seed` fixes the splits mpnas
    makes itself (builtin splits, a val split carved from train). `progress` shows bars on stderr while building.
    """
    if not isinstance(resolution, int) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise MpnasError(f"resolution {resolution!r}: expected an integer from {MIN_RESOLUTION} to {MAX_RESOLUTION}")
    source = open_source(spec)
    names = select(source.names(), domains, spec)
    opts = LoadOptions(resolution, seed, skip_bad_images, cache_root(cache_dir), progress)
    loaded = []
    # `delay` keeps the bar hidden when everything comes from the cache in a blink.
    with tqdm(names, desc="loading domains", unit="domain", file=sys.stderr, disable=not progress, delay=1.0) as bar:
        for name in bar:
            bar.set_postfix_str(name, refresh=False)
            loaded.append(source.load(name, opts))
    return DomainSet(spec, loaded)


def load_domains_from_config(cfg: DataConfig, progress: bool = True) -> DomainSet:
    return load_domains(cfg.spec, cfg.domains, cfg.resolution, seed=cfg.seed, skip_bad_images=cfg.skip_bad_images,
                        cache_dir=cfg.cache_dir, progress=progress)
