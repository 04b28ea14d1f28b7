"""Residual-snapshot anomaly detectors behind one interface (:class:`ResidualDetector`).

``make_detector("ed" | "lof", **params)`` builds one; ``load_detector(path)`` loads any saved one.
New detectors (issue 5: max-residual, Mahalanobis, GLRT, …) subclass :class:`ResidualDetector` and
decorate with :func:`register`.
"""

from models.detectors.base import (
    DetectorError,
    ResidualDetector,
    detector_kinds,
    load_detector,
    make_detector,
    model_paths,
    quantile_threshold,
    read_metadata,
    register,
)
from models.detectors.energy import EnergyDetector
from models.detectors.lof import LocalOutlierFactor, LofDetector

__all__ = [
    "DetectorError",
    "EnergyDetector",
    "LocalOutlierFactor",
    "LofDetector",
    "ResidualDetector",
    "detector_kinds",
    "load_detector",
    "make_detector",
    "model_paths",
    "quantile_threshold",
    "read_metadata",
    "register",
]
