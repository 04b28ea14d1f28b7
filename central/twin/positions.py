"""Transmitter positions in the free area of a site: the TX plane outside every obstacle.

Shared by everything that draws transmitters over a hall: the evaluation datasets
(:mod:`evaluation.dataset`, :mod:`evaluation.los_dataset`), the simulated calibration campaign
(:mod:`calibration.campaign_sim`) and the benches.
"""

from __future__ import annotations

import numpy as np

from central.twin.site import Site


def free_mask(site: Site, xy: np.ndarray, height_m: float) -> np.ndarray:
    """(M,) True where the point (x, y, height) is inside no obstacle (vectorised ``Site.obstacle_at``)."""
    free = np.ones(xy.shape[0], dtype=bool)
    for ob in site.obstacles:
        lo, hi = np.asarray(ob.min_m), np.asarray(ob.max_m)
        if not lo[2] <= height_m <= hi[2]:
            continue
        inside = (xy[:, 0] >= lo[0]) & (xy[:, 0] <= hi[0]) & (xy[:, 1] >= lo[1]) & (xy[:, 1] <= hi[1])
        free &= ~inside
    return free


def sample_positions(site: Site, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) positions uniform over the TX plane outside obstacles (vectorised rejection sampling;
    same distribution as ``central.twin.verify.sample_tx_positions``)."""
    L, W, _ = site.hall_size_m
    h = site.tx_plane.height_m
    out = np.empty((0, 2))
    while out.shape[0] < n:
        m = max(16, int(1.3 * (n - out.shape[0])))
        xy = rng.uniform((0.0, 0.0), (L, W), size=(m, 2))
        out = np.concatenate([out, xy[free_mask(site, xy, h)]])
    out = out[:n]
    return np.column_stack([out, np.full(n, h)])
