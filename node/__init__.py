"""rftwin node agent: runs on each sensing unit's SDR board and streams calibrated band power.

Imports ``contracts`` and nothing else of the project; :mod:`sim.world` only lazily, when a simulated
radio opens with a world (docs/architecture.md).
"""
