"""Live detection: snapshot assembly, residual detectors, alarm hysteresis, saturation rule, localisation.

Entry point: :class:`DetectionEngine` (see :mod:`central.detection.engine` for the data flow).
"""

from central.detection.alarms import AlarmTracker, AlarmTransition, counter_ids
from central.detection.assembly import Residuals, SnapshotAssembler
from central.detection.engine import INSUFFICIENT, NO_DETECTOR, EngineConfig, DetectionEngine
from central.detection.localise import GlrtLocaliser, Localisation, PointSourceLocaliser

__all__ = [
    "INSUFFICIENT",
    "NO_DETECTOR",
    "AlarmTracker",
    "AlarmTransition",
    "EngineConfig",
    "GlrtLocaliser",
    "DetectionEngine",
    "Localisation",
    "PointSourceLocaliser",
    "Residuals",
    "SnapshotAssembler",
    "counter_ids",
]
