"""mpnas: multi-path neural architecture search for multi-domain image classification."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpnas.deploy.predictor import Predictor

__version__ = "0.1.0"
# How many classes `mpnas predict` and `predict(images, domain, k)` list per image: one default for both, here
# because the CLI reads it without importing torch.
DEFAULT_TOP_K = 3


def load(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """A trained run directory as a classifier: `.predict(images, domain, k=3)` (one image or a list: paths, PIL
    images, arrays, tensors), `.probabilities(images, domain)`, `.extract(domain)` (`mpnas.deploy.predictor`).

    Imported lazily, so that `import mpnas` stays light."""
    from mpnas.deploy.predictor import load as _load

    return _load(run_dir, device)
