"""mpnas: multi-path neural architecture search for multi-domain image classification."""

__version__ = "0.1.0"
