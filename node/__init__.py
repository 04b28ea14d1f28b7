"""rftwin node agent: runs on each sensing unit's SDR board and streams calibrated band power.

Imports nothing from ``central``, ``calibration`` or ``models`` (ARCHITECTURE.md).
"""
