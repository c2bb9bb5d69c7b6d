"""`mpnas.load(run_dir)`: a trained run as a classifier of new images, with the run's own preprocessing.

    model = mpnas.load("runs/builtin")
    model.predict("seven.png", "mnist")                  # [("7", 0.93), ("1", 0.02), ("4", 0.01)]
    model.predict([Image.open("seven.png")], "mnist", k=1)   # [[("7", 0.93)]]
    net = model.extract("mnist")                         # a plain nn.Module: 3 x R x R normalised -> logits

`predict(images, domain, k=3)` takes one image (then it returns that image's list) or a list of them. An image is a
file path, a PIL image, an array in numpy's layout (H x W or H x W x C; uint8, uint16, bool, or float in 0..1) or
a tensor in torch's (H x W or C x H x W); a 4-d array or tensor is a batch. Each is made upright, resized so its
shorter side is the run's resolution and centre-cropped (`mpnas.data.images.square_pil`, the rule training data
went through), then normalised with the domain's statistics.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Sequence, overload

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from mpnas import DEFAULT_TOP_K
from mpnas.data.augment import normalize
from mpnas.data.images import IMAGE_SUFFIXES, BadImage, decode_square, square_pil
from mpnas.data.info import DomainInfo, rgb
from mpnas.deploy.export import FORMAT
from mpnas.errors import MpnasError
from mpnas.io import read_json
from mpnas.nn.merged import MultiPathModel
from mpnas.rundir import read_config, read_domain_info
from mpnas.runtime import session
from mpnas.train.evaluate import load_trained_model

ImageLike = Any  # str | Path | PIL.Image.Image | np.ndarray | torch.Tensor
Prediction = list[tuple[str, float]]  # one image's top k: (class name, probability), most likely first

_ARRAY_LAYOUT = ("uint8 (0..255), uint16 (0..65535), bool or float (0..1) arrays shaped H x W or H x W x C (C = 1, 3 "
                 "or 4), tensors shaped H x W or C x H x W")


def is_single(images: Any) -> bool:
    """Whether `images` is one image rather than a sequence of them: a path, a PIL image, or an array or tensor
    of at most three dimensions (a 4-d array or tensor is a batch)."""
    if isinstance(images, (str, Path, Image.Image)):
        return True
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return images.ndim <= 3
    return False


def as_list(images: Any) -> list[ImageLike]:
    """One image or a sequence of them as a list (a 4-d array or tensor split along its first axis)."""
    if is_single(images):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return list(images)
    try:
        return list(images)
    except TypeError:
        raise MpnasError(f"cannot classify a {type(images).__name__}: give one image or a list of paths, PIL images, "
                         "arrays or tensors") from None


def _uint8(values: np.ndarray) -> np.ndarray:
    """An array's values on their type's range as uint8 (uint16 from 0..65535, bool and float from 0..1)."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if values.dtype == np.uint16:
        return np.rint(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(values.dtype, np.floating):
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise MpnasError(f"image array of dtype {values.dtype}: float values must lie in 0..1, got "
                             f"{np.nanmin(values):.4g}..{np.nanmax(values):.4g}")
        return np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)
    raise MpnasError(f"image array of dtype {values.dtype}: expected {_ARRAY_LAYOUT}")


def _array_image(values: np.ndarray) -> Image.Image:
    """H x W or H x W x C values (numpy's and PIL's layout) as a PIL image."""
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in (3, 4)) or 0 in values.shape:
        raise MpnasError(f"image array of shape {tuple(values.shape)}: expected {_ARRAY_LAYOUT}")
    values = np.ascontiguousarray(_uint8(values))
    return Image.fromarray(values, "L" if values.ndim == 2 else ("RGB" if values.shape[2] == 3 else "RGBA"))


def to_square(image: ImageLike, resolution: int) -> np.ndarray:
    """One image of any accepted kind to the run's 3 x R x R uint8 square: a file path, a PIL image, an array in
    numpy's layout (H x W or H x W x C) or a tensor in torch's (H x W or C x H x W), as `_ARRAY_LAYOUT` says."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise MpnasError(f"image {path}: not found")
        try:
            return decode_square(path, resolution)
        except BadImage as exc:
            raise MpnasError(f"image {path}: not a readable image ({exc})") from None
    if isinstance(image, torch.Tensor):
        values = image.detach().cpu().numpy()
        image = _array_image(values.transpose(1, 2, 0) if values.ndim == 3 else values)
    elif isinstance(image, np.ndarray):
        image = _array_image(image)
    if not isinstance(image, Image.Image):
        raise MpnasError(f"cannot classify a {type(image).__name__}: give file paths, PIL images, arrays or tensors")
    try:
        return square_pil(image, resolution)
    except BadImage as exc:
        raise MpnasError(f"image of mode {image.mode}: cannot be used ({exc})") from None


def normalise(squares: np.ndarray, info: DomainInfo) -> Tensor:
    """N x 3 x R x R uint8 -> float32 standardised by the one rule training and evaluation use."""
    return normalize(torch.from_numpy(np.ascontiguousarray(squares)), info)  # type: ignore[arg-type]


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and the image files inside named folders (recursively, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise MpnasError(f"folder {p}: no image files in it")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise MpnasError(f"image {p}: not found")
    if not out:
        raise MpnasError("no images given")
    return out


def top_k(probs: np.ndarray, classes: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    k = max(1, min(k, len(classes)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(classes[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]


class Predictor:
    """A trained run's merged model with its domains' preprocessing; see the module docstring."""

    def __init__(self, model: MultiPathModel, infos: dict[str, DomainInfo], batch_size: int = 64) -> None:
        self.model = model.eval()
        self.infos = infos
        self.batch_size = batch_size

    @property
    def domains(self) -> list[str]:
        return list(self.infos)

    def info(self, domain: str) -> DomainInfo:
        if domain not in self.infos:
            raise MpnasError(f"domain {domain!r} unknown; this model has {', '.join(self.infos)}")
        return self.infos[domain]

    def preprocess(self, images: ImageLike | Sequence[ImageLike], domain: str) -> Tensor:
        """N x 3 x R x R normalised input of the domain's network (N = 1 for a single image)."""
        info = self.info(domain)
        images = as_list(images)
        if not images:
            return torch.zeros((0, 3, info.resolution, info.resolution))
        return normalise(np.stack([to_square(im, info.resolution) for im in images]), info)

    @torch.no_grad()
    def probabilities(self, images: ImageLike | Sequence[ImageLike], domain: str) -> np.ndarray:
        """Class probabilities in the order of `info(domain).classes`: C for one image, N x C for a list."""
        if is_single(images):
            return self.probabilities([images], domain)[0]
        images = as_list(images)
        info = self.info(domain)
        if len(images) == 0:
            return np.zeros((0, len(info.classes)), np.float32)
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(images), self.batch_size):
            x = self.preprocess(images[start:start + self.batch_size], domain).to(device)
            out.append(torch.softmax(self.model(x, domain).float(), 1).cpu().numpy())
        return np.concatenate(out)

    @overload
    def predict(self, images: list[ImageLike] | tuple[ImageLike, ...], domain: str, k: int = ...) -> list[Prediction]: ...

    @overload
    def predict(self, images: ImageLike, domain: str, k: int = ...) -> Prediction | list[Prediction]: ...

    def predict(self, images: ImageLike | Sequence[ImageLike], domain: str,
                k: int = DEFAULT_TOP_K) -> Prediction | list[Prediction]:
        """The `k` most likely classes as (name, probability): for one image its list, for a list of images one
        list per image. An image is a path, a PIL image, an array or a tensor (`to_square`)."""
        return _predict(self, images, domain, k)

    def extract(self, domain: str) -> nn.Module:
        """The domain's path as a plain network with its weights, in eval mode (input: normalised 3 x R x R)."""
        self.info(domain)
        return self.model.extract(domain).eval()


class ExportedPredictor:
    """An export directory's ONNX files run by onnxruntime, fed from its manifest alone (what an app does)."""

    def __init__(self, export_dir: str | Path, int8: bool = False, batch_size: int = 64, threads: int | None = None) -> None:
        self.dir = Path(export_dir)
        manifest = read_json(self.dir / "export.json", "export manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise MpnasError(f"export manifest {self.dir / 'export.json'}: not an {FORMAT} manifest")
        self.manifest = manifest
        self.int8 = int8
        self.batch_size = batch_size
        self.threads = threads
        self._sessions: dict[str, Any] = {}

    @property
    def domains(self) -> list[str]:
        return list(self.manifest["domains"])

    def info(self, domain: str) -> DomainInfo:
        if domain not in self.manifest["domains"]:
            raise MpnasError(f"domain {domain!r} unknown; this export has {', '.join(self.domains)}")
        e = self.manifest["domains"][domain]
        return DomainInfo(domain, tuple(e["classes"]), int(e["resolution"]), rgb(e["mean"]), rgb(e["std"]))

    def _session(self, domain: str) -> Any:
        if domain not in self._sessions:
            e = self.manifest["domains"][domain]
            key = "onnx_int8" if self.int8 else "onnx"
            if key not in e:
                raise MpnasError(f"export {self.dir}: no int8 file for domain {domain} (export with --int8)")
            self._sessions[domain] = session(self.dir / e[key], self.threads)
        return self._sessions[domain]

    def probabilities(self, images: ImageLike | Sequence[ImageLike], domain: str) -> np.ndarray:
        """As `Predictor.probabilities`, computed by onnxruntime."""
        if is_single(images):
            return self.probabilities([images], domain)[0]
        images = as_list(images)
        info = self.info(domain)
        sess = self._session(domain)
        out = []
        for start in range(0, len(images), self.batch_size):
            squares = np.stack([to_square(im, info.resolution) for im in images[start:start + self.batch_size]])
            mean = np.asarray(info.mean, np.float32).reshape(1, 3, 1, 1)
            std = np.asarray(info.std, np.float32).reshape(1, 3, 1, 1)
            x = ((squares.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
            logits = sess.run(["logits"], {"image": x})[0]
            e = np.exp(logits - logits.max(1, keepdims=True))
            out.append(e / e.sum(1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, len(info.classes)), np.float32)

    @overload
    def predict(self, images: list[ImageLike] | tuple[ImageLike, ...], domain: str, k: int = ...) -> list[Prediction]: ...

    @overload
    def predict(self, images: ImageLike, domain: str, k: int = ...) -> Prediction | list[Prediction]: ...

    def predict(self, images: ImageLike | Sequence[ImageLike], domain: str,
                k: int = DEFAULT_TOP_K) -> Prediction | list[Prediction]:
        """As `Predictor.predict`, computed by onnxruntime."""
        return _predict(self, images, domain, k)


def _predict(model: Predictor | ExportedPredictor, images: ImageLike | Sequence[ImageLike], domain: str,
             k: int) -> Prediction | list[Prediction]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MpnasError(f"predict: k must be an integer >= 1, got {k!r}")
    classes = model.info(domain).classes
    if is_single(images):
        return top_k(model.probabilities([images], domain), classes, int(k))[0]
    return top_k(model.probabilities(images, domain), classes, int(k))


def load(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """A trained run directory (`mpnas run` or `mpnas train`) as a `Predictor`."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    model = load_trained_model(replace(cfg, device=device), run_dir)
    infos = read_domain_info(run_dir)
    missing = [d for d in model.arch.domains if d not in infos]
    if missing:
        raise MpnasError(f"run directory {run_dir}: no class names or statistics for domain(s) {', '.join(missing)}")
    return Predictor(model, {d: infos[d] for d in model.arch.domains})
