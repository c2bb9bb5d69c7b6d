"""Decoded domains on disk, so that only the first load pays for decoding or rendering.

One entry per domain: a directory named by a content hash of everything the arrays depend on, holding one
`.npy` per split (images, labels, ids) and a `meta.json`. An entry is written in a temporary directory and
renamed into place, so a crash never leaves a half-written entry that looks complete. Arrays are opened
memory-mapped copy-on-write: pages load on demand, and torch gets a writable view without copying.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torch

from mpnas.data.domain import Split
from mpnas.errors import MpnasError
from mpnas.io import make_temp_dir, read_json, write_json

FORMAT = 1
_CHUNK = 4096  # images per chunk when streaming through a possibly huge array


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The explicit argument wins, then $MPNAS_CACHE, then the user's cache directory."""
    root = cache_dir or os.environ.get("MPNAS_CACHE") or platformdirs.user_cache_dir("mpnas")
    return Path(root).expanduser()


def content_key(parts: Any) -> str:
    """A short stable hash of JSON-serialisable `parts`."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass(frozen=True)
class LoadOptions:
    """How a source turns its domains into arrays (everything but the choice of domains)."""

    resolution: int
    seed: int
    skip_bad_images: bool
    cache_root: Path
    progress: bool


@dataclass
class Entry:
    """What a cache entry holds for one domain (augmentation and naming come from the source at load time)."""

    class_names: list[str]
    splits: dict[str, Split]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    skipped: dict[str, int]  # split -> images skipped as corrupt when it was built


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std on the 0..1 scale, accumulated in float64 chunks (the array may be huge)."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]


class EntryWriter:
    """Collects one domain's arrays in a temporary directory, one split at a time."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.splits: dict[str, dict[str, Any]] = {}
        self.skipped: dict[str, int] = {}

    def new_images(self, split: str, count: int, resolution: int) -> np.memmap:
        """A writable N x 3 x R x R uint8 array backed by the entry's file, to be filled in place."""
        return np.lib.format.open_memmap(
            self.tmp / f"{split}.images.npy", mode="w+", dtype=np.uint8, shape=(count, 3, resolution, resolution)
        )

    def put_images(self, split: str, images: np.ndarray) -> None:
        np.save(self.tmp / f"{split}.images.npy", np.ascontiguousarray(images, dtype=np.uint8))

    def finish_split(self, split: str, kept: int, labels: np.ndarray | None, ids: np.ndarray | None = None,
                     skipped: int = 0) -> None:
        """Record a split whose first `kept` image rows are valid (rows after them belonged to skipped files)."""
        path = self.tmp / f"{split}.images.npy"
        full = np.load(path, mmap_mode="r")
        if full.shape[0] != kept:
            shrunk = np.lib.format.open_memmap(path.with_suffix(".tmp"), mode="w+", dtype=np.uint8,
                                               shape=(kept, *full.shape[1:]))
            for start in range(0, kept, _CHUNK):
                stop = min(start + _CHUNK, kept)
                shrunk[start:stop] = full[start:stop]
            shrunk.flush()
            del full, shrunk
            os.replace(path.with_suffix(".tmp"), path)
        if labels is not None:
            np.save(self.tmp / f"{split}.labels.npy", np.asarray(labels, dtype=np.int64))
        if ids is not None:
            np.save(self.tmp / f"{split}.ids.npy", np.asarray(ids, dtype=np.int64))
        self.splits[split] = {"count": kept, "labelled": labels is not None, "has_ids": ids is not None}
        self.skipped[split] = skipped


def _open(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(path, mmap_mode="c"))


def load_entry(path: Path) -> Entry:
    meta = read_json(path / "meta.json", "cache entry")
    if meta.get("format") != FORMAT:
        raise MpnasError(f"cache entry {path}: format {meta.get('format')!r}, expected {FORMAT}")
    splits = {}
    for name, info in meta["splits"].items():
        labels = _open(path / f"{name}.labels.npy") if info["labelled"] else None
        ids = _open(path / f"{name}.ids.npy") if info["has_ids"] else None
        splits[name] = Split(_open(path / f"{name}.images.npy"), labels, ids)
        if len(splits[name]) != info["count"]:
            raise MpnasError(f"cache entry {path}: split {name} holds {len(splits[name])} images, meta says {info['count']}")
    return Entry(meta["class_names"], splits, tuple(meta["mean"]), tuple(meta["std"]), meta["skipped"])


def entry_name(kind: str, domain: str, resolution: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", domain)
    return f"{kind}-{safe}-r{resolution}"


def report_skipped(domain: str, skipped: dict[str, int]) -> None:
    """Tell the user on stderr, on every load (cached or not), how many corrupt images a domain lost."""
    total = sum(skipped.values())
    if total:
        detail = ", ".join(f"{split} {n}" for split, n in skipped.items() if n)
        print(f"mpnas: domain {domain!r}: skipped {total} corrupt image(s) ({detail})", file=sys.stderr)


def cached(root: Path, name: str, key: str, build: Callable[[EntryWriter], list[str]]) -> Entry:
    """Return the entry `name-key` under `root`, building it with `build(writer) -> class_names` when absent.

    An unreadable entry (killed mid-way by another tool, an older format) is rebuilt rather than trusted.
    """
    final = root / f"{name}-{key}"
    if final.is_dir():
        try:
            return load_entry(final)
        except (MpnasError, OSError, ValueError, KeyError, TypeError) as exc:
            print(f"mpnas: cache entry {final} unreadable ({exc}); rebuilding it", file=sys.stderr)
            shutil.rmtree(final, ignore_errors=True)
    try:
        # A plain mkdir's mode, not mkdtemp's 0700: a cache shared between users must stay readable by them.
        tmp = make_temp_dir(root, f".{name}-building-")
    except MpnasError as exc:
        raise MpnasError(f"cache directory {root}: {exc}") from None
    try:
        writer = EntryWriter(tmp)
        class_names = build(writer)
        mean, std = channel_stats(_open(tmp / "train.images.npy"))
        write_json(tmp / "meta.json", {"format": FORMAT, "class_names": class_names, "splits": writer.splits,
                                       "mean": list(mean), "std": list(std), "skipped": writer.skipped})
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            # Another process finished the same entry first; the contents are identical, keep theirs.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_entry(final)
