"""Simulation of the plant for demos and tests: the true world, the scenario, the context feed."""
