"""`load_domains`: one spec string picks the source (builtin, decathlon:ROOT, folder:ROOT), then the domains."""

from __future__ import annotations

import sys
from pathlib import Path

from mpnas.console import progress as console_progress

from mpnas.config import DataConfig
from mpnas.data.builtin import BuiltinSource
from mpnas.data.cache import LoadOptions, cache_root
from mpnas.data.decathlon import DecathlonSource
from mpnas.data.domain import Domain, DomainSet
from mpnas.data.folder import FolderSource
from mpnas.distributed import world
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
    with console_progress(desc="loading domains", enabled=progress, unit="domain", delay=1.0, iterable=names) as bar:
        for name in bar:
            bar.set_postfix_str(name, refresh=False)
            loaded.append(source.load(name, opts))
    for domain in loaded:
        warn_thin_classes(domain)
    return DomainSet(spec, loaded)


def thin_classes(domain: Domain) -> dict[str, dict[str, int]]:
    """Classes missing from a labelled split of `domain`, with their image count in each labelled split."""
    counts = {s: split.labels.bincount(minlength=domain.num_classes).tolist()
              for s, split in domain.splits.items() if split.labelled and split.labels is not None}
    return {c: {s: n[i] for s, n in counts.items()} for i, c in enumerate(domain.class_names)
            if any(n[i] == 0 for n in counts.values())}


def warn_thin_classes(domain: Domain) -> None:
    """A class with too few images for every split (one image: trained on, never validated or tested) still
    trains a classifier output; say so, naming it, rather than report accuracies that never saw it."""
    thin = thin_classes(domain)
    if not thin or not world().is_main:
        return
    shown = "; ".join(f"{c!r} ({', '.join(f'{s} {n}' for s, n in splits.items())})" for c, splits in list(thin.items())[:5])
    more = f" and {len(thin) - 5} more" if len(thin) > 5 else ""
    print(f"mpnas: warning: domain {domain.name!r}: class(es) with no images in a split: {shown}{more}; their accuracy "
          "is not measured there (add images to them)", file=sys.stderr)


def load_domains_from_config(cfg: DataConfig, progress: bool = True) -> DomainSet:
    return load_domains(cfg.spec, cfg.domains, cfg.resolution, seed=cfg.seed, skip_bad_images=cfg.skip_bad_images,
                        cache_dir=cfg.cache_dir, progress=progress)
