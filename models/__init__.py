"""rftwin learned models: residual anomaly detectors, path-loss surrogate, LoS/NLoS classifier.

Imports nothing from ``node``, ``central`` or ``calibration`` (docs/architecture.md).
"""
