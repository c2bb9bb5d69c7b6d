"""`mpnas.load(run_dir)`: a trained run as a classifier of new images, with the run's own preprocessing.

    model = mpnas.load("runs/builtin")
    model.predict([Image.open("seven.png")], "mnist")    # [[("7", 0.93), ("1", 0.02), ...]]
    net = model.extract("mnist")                         # a plain nn.Module: 3 x R x R normalised -> logits

Images may be PIL images, uint8 arrays (H x W or H x W x 3/4) or file paths; each is made upright, resized so its
shorter side is the run's resolution and centre-cropped (`mpnas.data.images.square_pil`, the rule training data
went through), then normalised with the domain's statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from mpnas.data.augment import normalize
from mpnas.data.images import IMAGE_SUFFIXES, BadImage, decode_square, square_pil
from mpnas.deploy.info import DomainInfo, read_domain_info
from mpnas.errors import MpnasError
from mpnas.nn.merged import MultiPathModel

ImageLike = Any  # PIL.Image.Image | np.ndarray | str | Path


def to_square(image: ImageLike, resolution: int) -> np.ndarray:
    """One image of any accepted kind to the run's 3 x R x R uint8 square."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise MpnasError(f"image {path}: not found")
        try:
            return decode_square(path, resolution)
        except BadImage as exc:
            raise MpnasError(f"image {path}: not a readable image ({exc})") from None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise MpnasError(f"image array of shape {image.shape} and dtype {image.dtype}: expected uint8 H x W or H x W x 3")
        image = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    if not isinstance(image, Image.Image):
        raise MpnasError(f"cannot classify a {type(image).__name__}: give PIL images, uint8 arrays or file paths")
    return square_pil(image, resolution)


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

    def preprocess(self, images: Sequence[ImageLike], domain: str) -> Tensor:
        info = self.info(domain)
        return normalise(np.stack([to_square(im, info.resolution) for im in images]), info)

    @torch.no_grad()
    def probabilities(self, images: Sequence[ImageLike], domain: str) -> np.ndarray:
        """N x C class probabilities, in the order of `info(domain).classes`."""
        info = self.info(domain)
        if len(images) == 0:
            return np.zeros((0, len(info.classes)), np.float32)
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(images), self.batch_size):
            x = self.preprocess(images[start:start + self.batch_size], domain).to(device)
            out.append(torch.softmax(self.model(x, domain).float(), 1).cpu().numpy())
        return np.concatenate(out)

    def predict(self, images: Sequence[ImageLike], domain: str, top_k_: int = 5) -> list[list[tuple[str, float]]]:
        """Per image, the `top_k_` most likely classes as (name, probability)."""
        return top_k(self.probabilities(images, domain), self.info(domain).classes, top_k_)

    def extract(self, domain: str) -> nn.Module:
        """The domain's path as a plain network with its weights, in eval mode (input: normalised 3 x R x R)."""
        self.info(domain)
        return self.model.extract(domain).eval()


class ExportedPredictor:
    """An export directory's ONNX files run by onnxruntime, fed from its manifest alone (what an app does)."""

    def __init__(self, export_dir: str | Path, int8: bool = False, batch_size: int = 64) -> None:
        from mpnas.deploy.export import FORMAT
        from mpnas.io import read_json

        self.dir = Path(export_dir)
        manifest = read_json(self.dir / "export.json", "export manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise MpnasError(f"export manifest {self.dir / 'export.json'}: not an {FORMAT} manifest")
        self.manifest = manifest
        self.int8 = int8
        self.batch_size = batch_size
        self._sessions: dict[str, Any] = {}

    @property
    def domains(self) -> list[str]:
        return list(self.manifest["domains"])

    def info(self, domain: str) -> DomainInfo:
        if domain not in self.manifest["domains"]:
            raise MpnasError(f"domain {domain!r} unknown; this export has {', '.join(self.domains)}")
        e = self.manifest["domains"][domain]
        return DomainInfo(domain, tuple(e["classes"]), int(e["resolution"]), tuple(e["mean"]), tuple(e["std"]))  # type: ignore[arg-type]

    def _session(self, domain: str) -> Any:
        from mpnas.deploy.export import session

        if domain not in self._sessions:
            e = self.manifest["domains"][domain]
            key = "onnx_int8" if self.int8 else "onnx"
            if key not in e:
                raise MpnasError(f"export {self.dir}: no int8 file for domain {domain} (export with --int8)")
            self._sessions[domain] = session(self.dir / e[key])
        return self._sessions[domain]

    def probabilities(self, images: Sequence[ImageLike], domain: str) -> np.ndarray:
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

    def predict(self, images: Sequence[ImageLike], domain: str, top_k_: int = 5) -> list[list[tuple[str, float]]]:
        return top_k(self.probabilities(images, domain), self.info(domain).classes, top_k_)


def load(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """A trained run directory (`mpnas run` or `mpnas train`) as a `Predictor`."""
    from dataclasses import replace

    from mpnas.pipeline import load_trained_model, read_config

    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    model = load_trained_model(replace(cfg, device=device), run_dir)
    infos = read_domain_info(run_dir)
    missing = [d for d in model.arch.domains if d not in infos]
    if missing:
        raise MpnasError(f"run directory {run_dir}: no class names or statistics for domain(s) {', '.join(missing)}")
    return Predictor(model, {d: infos[d] for d in model.arch.domains})
