"""Domains and their batches: the built-in offline benchmark, Visual Decathlon and plain folder trees.

`load_domains(spec)` returns a `DomainSet`; `MultiDomainLoader` draws one batch per domain per step for
training, `iterate_split` walks a split in order for evaluation.
"""

from mpnas.data.augment import augment, normalize
from mpnas.data.domain import AugmentSpec, Domain, DomainSet, Split
from mpnas.data.loader import MultiDomainLoader, class_batch_sizes, iterate_split
from mpnas.data.preview import save_preview
from mpnas.data.sources import load_domains, load_domains_from_config

__all__ = [
    "class_batch_sizes",
    "AugmentSpec",
    "Domain",
    "DomainSet",
    "MultiDomainLoader",
    "Split",
    "augment",
    "iterate_split",
    "load_domains",
    "load_domains_from_config",
    "normalize",
    "save_preview",
]
