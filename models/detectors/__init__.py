"""Residual-snapshot anomaly detectors behind one interface (:class:`ResidualDetector`).

``make_detector("ed" | "lof" | "maxres" | "gauss" | "gls" | "glrt" | "bayes" | "fusion", **params)`` builds one; ``load_detector(path)`` loads any saved one.
Issue 5's detectors: ``maxres`` (maximum residual), ``gauss`` (Mahalanobis, Ledoit–Wolf covariance),
``glrt`` (point-source jammer GLRT over the twin's gain-map cells; needs ``predicted_dbm`` and the gains
at construction: ``make_detector("glrt", cell_positions_m=..., gain_lin=...)``), ``bayes`` (the same
point-source model, likelihood ratio averaged over position and power instead of maximised; ``tails="student"``
for heavy-tailed model error), ``fusion`` (ED and bayes, their scores' normal quantiles summed); robust training with
``fit(..., contamination=c)`` (MCD-like cleaning, :mod:`models.detectors.robust`). New detectors subclass :class:`ResidualDetector` and
decorate with :func:`register`.
"""

from models.detectors.base import (
    DetectorError,
    ResidualDetector,
    constructor_params,
    detector_kinds,
    load_detector,
    make_detector,
    model_paths,
    quantile_threshold,
    read_metadata,
    register,
)
from models.detectors.bayes import BayesDetector
from models.detectors.energy import EnergyDetector
from models.detectors.fusion import FusionDetector
from models.detectors.gauss import GaussDetector, GlsDetector
from models.detectors.glrt import GlrtDetector
from models.detectors.lof import LocalOutlierFactor, LofDetector
from models.detectors.maxres import MaxResidualDetector
from models.detectors.robust import ledoit_wolf, robust_clean

__all__ = [
    "BayesDetector",
    "DetectorError",
    "EnergyDetector",
    "FusionDetector",
    "GaussDetector",
    "GlrtDetector",
    "GlsDetector",
    "LocalOutlierFactor",
    "LofDetector",
    "MaxResidualDetector",
    "ResidualDetector",
    "constructor_params",
    "detector_kinds",
    "ledoit_wolf",
    "load_detector",
    "make_detector",
    "model_paths",
    "quantile_threshold",
    "read_metadata",
    "register",
    "robust_clean",
]
