"""Decoding a file-based domain (decathlon, folder) into a cache entry, shared by both sources.

A source turns its layout into `Item`s per split; this module fingerprints them (path, size, mtime, label) for
the cache key and decodes them with a small thread pool (Pillow releases the GIL while decoding and resizing).
"""

from __future__ import annotations

import hashlib
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpnas.console import progress as console_progress
from mpnas.data.cache import EntryWriter, LoadOptions, cached, content_key, entry_name, report_skipped
from mpnas.data.domain import AugmentSpec, Domain
from mpnas.data.images import BadImage, UnsupportedImage, decode_square
from mpnas.errors import MpnasError

_CHUNK = 256  # items handed to the pool at once: bounded memory for a million-image domain
VERSION = 2  # bump when decoding changes, so old cache entries are not reused (2: 16-bit range, transparency)


@dataclass(frozen=True)
class Item:
    path: Path
    label: int | None
    ref: str  # how error messages name it: "image id 7, file data/x/1.png" or a path
    ident: int | None = None  # the source's image id, kept for submissions
    # The split whose folder holds the file, when the file is used in another one (a val split carved from train):
    # an error names the folder the user has to look in.
    folder_split: str | None = None


def where(domain: str, split: str, item: Item) -> str:
    """How an error locates `item`: the domain and the split its file lives in."""
    if item.folder_split and item.folder_split != split:
        return f"domain {domain!r}, split {item.folder_split} (carved into {split})"
    return f"domain {domain!r}, split {split}"


def fingerprint(domain: str, items: dict[str, Sequence[Item]]) -> str:
    """Hash of every file's path, size, mtime and label; a missing file is an error naming it."""
    h = hashlib.sha256()
    for split, split_items in items.items():
        for item in split_items:
            try:
                st = os.stat(item.path)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                raise MpnasError(f"{where(domain, split, item)}: {item.ref}: image file not found at {item.path}")
            h.update(f"{split}\t{item.path}\t{item.label}\t{item.ident}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _decode(args: tuple[Path, int]) -> np.ndarray | BadImage:
    try:
        return decode_square(*args)
    except BadImage as exc:
        return exc


def _chunks(items: Sequence[Item]) -> Iterator[Sequence[Item]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def decode_items(writer: EntryWriter, domain: str, items: dict[str, Sequence[Item]], resolution: int, *,
                 skip_bad_images: bool, progress: bool) -> None:
    """Decode every split of one domain into `writer`; corrupt files raise, or are skipped and counted."""
    workers = min(8, 2 * (os.cpu_count() or 1))
    total = sum(len(v) for v in items.values())
    with ThreadPoolExecutor(workers) as pool, console_progress(total, f"decoding {domain}", progress, "img", leave=False) as bar:
        for split, split_items in items.items():
            out = writer.new_images(split, len(split_items), resolution)
            labels: list[int] = []
            ids: list[int] = []
            kept = 0
            for chunk in _chunks(split_items):
                for item, result in zip(chunk, pool.map(_decode, [(i.path, resolution) for i in chunk])):
                    if isinstance(result, BadImage):
                        if not skip_bad_images:
                            what = "unsupported image" if isinstance(result, UnsupportedImage) else "corrupt image"
                            raise MpnasError(
                                f"{where(domain, split, item)}: {item.ref}: {what} ({result}); "
                                "pass --skip-bad-images to leave such files out"
                            )
                        continue
                    out[kept] = result
                    kept += 1
                    if item.label is not None:
                        labels.append(item.label)
                    if item.ident is not None:
                        ids.append(item.ident)
                bar.update(len(chunk))
            out.flush()
            del out
            if kept == 0:
                raise MpnasError(f"domain {domain!r}, split {split}: no readable images (all {len(split_items)} are corrupt)")
            labelled = split_items[0].label is not None
            writer.finish_split(
                split, kept, np.array(labels, dtype=np.int64) if labelled else None,
                np.array(ids, dtype=np.int64) if split_items[0].ident is not None else None,
                skipped=len(split_items) - kept,
            )


class FileSource(ABC):
    """A source whose domains are image files; subclasses say which files, labels and augmentations."""

    kind: str
    root: Path

    @abstractmethod
    def names(self) -> list[str]:
        """The source's domains, in a stable order."""

    @abstractmethod
    def items(self, name: str, seed: int) -> tuple[list[str], dict[str, Sequence[Item]]]:
        """Class names and the items of each split; `seed` fixes any split mpnas carves itself."""

    @abstractmethod
    def augment(self, name: str) -> AugmentSpec:
        """The augmentations that keep this domain's labels true."""

    @abstractmethod
    def description(self, name: str) -> str:
        """One line: where the images come from and how the splits were made."""

    def load(self, name: str, opts: LoadOptions) -> Domain:
        class_names, items = self.items(name, opts.seed)
        for split, split_items in items.items():
            if not split_items:
                raise MpnasError(f"{self.kind} domain {name!r}, split {split}: no images")
        key = content_key({
            "kind": self.kind, "version": VERSION, "domain": name, "resolution": opts.resolution,
            "skip_bad_images": opts.skip_bad_images, "classes": class_names, "files": fingerprint(name, items),
        })

        def build(writer: EntryWriter) -> list[str]:
            decode_items(writer, name, items, opts.resolution, skip_bad_images=opts.skip_bad_images,
                         progress=opts.progress)
            return class_names

        entry = cached(opts.cache_root, entry_name(self.kind, name, opts.resolution), key, build)
        report_skipped(name, entry.skipped)
        return Domain(name, entry.class_names, entry.splits, opts.resolution, entry.mean, entry.std,
                      self.augment(name), self.description(name))
