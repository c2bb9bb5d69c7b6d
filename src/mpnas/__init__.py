"""mpnas: multi-path neural architecture search for multi-domain image classification."""

__version__ = "0.1.0"


def load(run_dir, device: str = "cpu"):  # noqa: ANN001 - kept light: torch is imported only when called
    """A trained run directory as a classifier: `.predict(images, domain)`, `.extract(domain)` (mpnas.deploy)."""
    from mpnas.deploy.predictor import load as _load

    return _load(run_dir, device)
