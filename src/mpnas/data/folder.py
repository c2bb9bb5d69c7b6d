"""A plain folder tree: `ROOT/<domain>/<split>/<class>/<image>`, the easiest way to bring one's own domains.

The class list is train's subfolders, sorted. A missing val split is carved from train (15% of each class,
fixed by the seed). A test folder is optional: with class subfolders it is labelled, with images directly
inside it is unlabelled. An optional `ROOT/<domain>/domain.json` sets {"flip": bool, "crop": "pad"|"resize",
"description": str}; by default flips are allowed and crops are random resized crops.
Files whose suffix is not an image suffix (README, .DS_Store ...) are ignored; hidden entries too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mpnas.data.decode import FileSource, Item
from mpnas.data.domain import CROPS, AugmentSpec
from mpnas.data.images import IMAGE_SUFFIXES
from mpnas.data.seeding import generator, stratified_split
from mpnas.errors import MpnasError
from mpnas.io import read_json

VAL_FRACTION = 0.15
_OPTIONS = {"flip": bool, "crop": str, "description": str}


def _visible(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith("."))


def _images_in(path: Path) -> list[Path]:
    return [p for p in _visible(path) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


class FolderSource(FileSource):
    kind = "folder"

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise MpnasError(f"folder root {root}: not a directory")
        self.root = root

    def names(self) -> list[str]:
        names = [p.name for p in _visible(self.root) if p.is_dir()]
        if not names:
            raise MpnasError(f"folder root {self.root}: no domain folders (expected ROOT/<domain>/train/<class>/<image>)")
        return names

    def _options(self, name: str) -> dict[str, Any]:
        path = self.root / name / "domain.json"
        if not path.exists():
            return {}
        data = read_json(path, "domain options")
        if not isinstance(data, dict):
            raise MpnasError(f"domain options {path}: expected a JSON object like {{\"flip\": false}}")
        for key, value in data.items():
            if key not in _OPTIONS:
                raise MpnasError(f"domain options {path}: unknown field '{key}' (known: {', '.join(_OPTIONS)})")
            if not isinstance(value, _OPTIONS[key]):
                raise MpnasError(f"domain options {path}: '{key}' must be a {_OPTIONS[key].__name__}, got {value!r}")
        if data.get("crop", "resize") not in CROPS:
            raise MpnasError(f"domain options {path}: 'crop' must be one of {', '.join(CROPS)}, got {data['crop']!r}")
        return data

    def augment(self, name: str) -> AugmentSpec:
        options = self._options(name)
        return AugmentSpec(flip=options.get("flip", True), crop=options.get("crop", "resize"))

    def description(self, name: str) -> str:
        given = self._options(name).get("description")
        if given:
            return given
        carved = "" if (self.root / name / "val").is_dir() else f"; val carved from train ({VAL_FRACTION:.0%} per class, by seed)"
        return f"image folders under {self.root / name}{carved}"

    def items(self, name: str, seed: int) -> tuple[list[str], dict[str, Sequence[Item]]]:
        base = self.root / name
        train_dir = base / "train"
        if not train_dir.is_dir():
            raise MpnasError(f"folder domain {name!r}: no train/ folder in {base}")
        classes = [p.name for p in _visible(train_dir) if p.is_dir()]
        if not classes:
            raise MpnasError(f"folder domain {name!r}: {train_dir} has no class folders")
        items: dict[str, Sequence[Item]] = {"train": self._labelled(name, train_dir, classes)}
        for split in ("val", "test"):
            folder = base / split
            if not folder.is_dir():
                continue
            if any(p.is_dir() for p in _visible(folder)):
                items[split] = self._labelled(name, folder, classes)
            elif split == "test":
                items[split] = [Item(p, None, f"file {p}") for p in _images_in(folder)]
                if not items[split]:
                    raise MpnasError(f"folder domain {name!r}: {folder} has neither class folders nor images")
            else:
                raise MpnasError(f"folder domain {name!r}: {folder} has no class folders (val must be labelled)")
        if "val" not in items:
            items["train"], items["val"] = _carve(items["train"], generator(seed, "folder-val", name))
        return classes, {s: items[s] for s in ("train", "val", "test") if s in items}

    def _labelled(self, name: str, folder: Path, classes: list[str]) -> list[Item]:
        index = {c: i for i, c in enumerate(classes)}
        loose = _images_in(folder)
        if loose:
            raise MpnasError(
                f"folder domain {name!r}: {folder} mixes class folders with loose images (e.g. {loose[0].name})"
            )
        out: list[Item] = []
        for sub in _visible(folder):
            if not sub.is_dir():
                continue
            if sub.name not in index:
                raise MpnasError(
                    f"folder domain {name!r}: class folder {sub} is not a class of train/ (known: {', '.join(classes)})"
                )
            images = _images_in(sub)
            if not images:
                raise MpnasError(f"folder domain {name!r}: class folder {sub} has no images")
            out.extend(Item(p, index[sub.name], f"file {p}") for p in images)
        return out


def _carve(train: Sequence[Item], gen: torch.Generator) -> tuple[list[Item], list[Item]]:
    labels = torch.tensor([item.label for item in train])
    parts = stratified_split(labels, {"train": 1 - VAL_FRACTION, "val": VAL_FRACTION}, gen)
    carved = [replace(train[i], folder_split="train") for i in parts["val"].tolist()]
    return [train[i] for i in parts["train"].tolist()], carved
