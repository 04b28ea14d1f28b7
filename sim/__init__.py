"""Simulation of the plant for demos, tests and benches: the true world the simulated radios sense
(:mod:`sim.world`), building it from the twin (:mod:`sim.world_builder`), the context feed, the whole
simulated station and the demo. A production node or central unit never imports this package at run
time; a simulated radio with a world imports :mod:`sim.world` when it opens. Kept empty, so that
``import sim.world`` pulls in no ``central`` (docs/architecture.md).
"""
