"""Deployment: `mpnas.load` and predict, export to ONNX (with an int8 variant) and its manifest."""

from mpnas.deploy.predictor import Predictor, load

__all__ = ["Predictor", "load"]
