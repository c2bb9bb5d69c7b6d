"""The Visual Decathlon devkit layout: `ROOT/annotations/<domain>_{train,val,test_stripped}.json` + `ROOT/data/`.

The annotation files are COCO-like. Category ids are large and offset per domain, so they are mapped to
0..C-1 in sorted id order; annotations are paired with images by `image_id`, never by list position. The
stripped test split has no annotations and becomes an unlabelled split that keeps the image ids for a
submission file. Plain `json` is enough; pycocotools is not needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpnas.data.decode import FileSource, Item
from mpnas.data.domain import AugmentSpec
from mpnas.errors import MpnasError
from mpnas.io import read_json

# Digits, signs and characters change meaning when mirrored.
_NO_FLIP = frozenset({"gtsrb", "omniglot", "svhn"})
# Small, centred images get small shifts; photos of objects and scenes get random resized crops.
_PAD_CROP = frozenset({"cifar100", "daimlerpedcls", "gtsrb", "omniglot", "svhn"})
_FILE = re.compile(r"^(?P<domain>.+)_(?P<split>train|val|test_stripped)\.json$")
_SPLIT_FILES = {"train": "train", "val": "val", "test": "test_stripped"}


class DecathlonSource(FileSource):
    kind = "decathlon"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.annotations = root / "annotations"
        if not root.is_dir():
            raise MpnasError(f"decathlon root {root}: not a directory")
        if not self.annotations.is_dir():
            raise MpnasError(f"decathlon root {root}: no annotations/ folder (expected annotations/<domain>_train.json ...)")

    def names(self) -> list[str]:
        found = {m["domain"] for p in self.annotations.iterdir() if (m := _FILE.match(p.name))}
        if not found:
            raise MpnasError(f"decathlon annotations {self.annotations}: no <domain>_train.json / _val.json files")
        return sorted(found)

    def augment(self, name: str) -> AugmentSpec:
        return AugmentSpec(flip=name not in _NO_FLIP, crop="pad" if name in _PAD_CROP else "resize")

    def description(self, name: str) -> str:
        return f"Visual Decathlon '{name}' from {self.root}: the devkit's own train/val/test splits"

    def items(self, name: str, seed: int) -> tuple[list[str], dict[str, Sequence[Item]]]:
        """Class names and the labelled (train, val) and unlabelled (test) items of one domain."""
        paths = {split: self.annotations / f"{name}_{suffix}.json" for split, suffix in _SPLIT_FILES.items()}
        for split in ("train", "val"):
            if not paths[split].is_file():
                present = ", ".join(p.name for p in paths.values() if p.is_file())
                raise MpnasError(f"decathlon domain {name!r}: missing annotation file {paths[split]} (found: {present})")
        train = _read(paths["train"])
        category_ids, class_names = _categories(train, paths["train"])
        index = {cid: i for i, cid in enumerate(category_ids)}
        items: dict[str, Sequence[Item]] = {}
        for split, path in paths.items():
            if split == "test" and not path.is_file():
                continue
            data = train if split == "train" else _read(path)
            items[split] = self._split_items(data, path, index, paths["train"], labelled=split != "test" or bool(data.get("annotations")))
        return class_names, items

    def _split_items(self, data: dict[str, Any], path: Path, index: dict[int, int], train_path: Path,
                     labelled: bool) -> list[Item]:
        images = _list(data, "images", path)
        if not images:
            raise MpnasError(f"annotation file {path}: no images")
        files: dict[int, str] = {}
        for k, img in enumerate(images):
            image_id = _int(img, "id", path, f"images[{k}]")
            file_name = img.get("file_name") if isinstance(img, dict) else None
            if not isinstance(file_name, str) or not file_name:
                raise MpnasError(f"annotation file {path}: images[{k}] (id {image_id}) has no file_name")
            if image_id in files:
                raise MpnasError(f"annotation file {path}: image id {image_id} appears twice")
            files[image_id] = file_name
        labels: dict[int, int] = {}
        if labelled:
            for k, ann in enumerate(_list(data, "annotations", path)):
                where = f"annotations[{k}]"
                image_id = _int(ann, "image_id", path, where)
                category_id = _int(ann, "category_id", path, where)
                if image_id not in files:
                    raise MpnasError(f"annotation file {path}: {where} refers to image id {image_id}, which is not in images")
                if category_id not in index:
                    raise MpnasError(
                        f"annotation file {path}: {where} (image id {image_id}) has category id {category_id}, "
                        f"which is not among the categories of {train_path}"
                    )
                if image_id in labels:
                    raise MpnasError(f"annotation file {path}: image id {image_id} has more than one annotation")
                labels[image_id] = index[category_id]
            unlabelled = [i for i in files if i not in labels]
            if unlabelled:
                raise MpnasError(
                    f"annotation file {path}: {len(unlabelled)} image(s) without an annotation, e.g. image id {unlabelled[0]}"
                )
        return [
            Item(self.root / file_name, labels.get(image_id) if labelled else None,
                 f"image id {image_id}, file {file_name}", image_id)
            for image_id, file_name in files.items()
        ]


def _read(path: Path) -> dict[str, Any]:
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise MpnasError(f"annotation file {path}: expected a JSON object with images, annotations, categories")
    return data


def _list(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise MpnasError(f"annotation file {path}: field '{key}' missing or not a list")
    return value


def _int(obj: Any, key: str, path: Path, where: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise MpnasError(f"annotation file {path}: {where} has no integer field '{key}'")
    return value


def _categories(data: dict[str, Any], path: Path) -> tuple[list[int], list[str]]:
    names: dict[int, str] = {}
    for k, cat in enumerate(_list(data, "categories", path)):
        cid = _int(cat, "id", path, f"categories[{k}]")
        name = cat.get("name")
        if not isinstance(name, str):
            raise MpnasError(f"annotation file {path}: categories[{k}] (id {cid}) has no name")
        if cid in names:
            raise MpnasError(f"annotation file {path}: category id {cid} appears twice")
        names[cid] = name
    if not names:
        raise MpnasError(f"annotation file {path}: no categories")
    ids = sorted(names)
    return ids, [names[i] for i in ids]
