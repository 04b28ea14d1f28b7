"""Checks the twin's map lookup against direct ray tracing in the other direction (TX → SU).

The maps are traced SU → cell and interpolated; the reference here is a PathSolver run with the
transmitters as sources and the SUs as receivers, at the exact positions. Agreement tests
reciprocity, the interpolation and the solver's sampling all at once. Used by tests and bench.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from central.twin.site import Site
from central.twin.solvers import SolverSettings


def sample_tx_positions(site: Site, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` positions (n, 3) uniform over the hall floor at the TX-plane height, outside obstacles."""
    L, W, _ = site.hall_size_m
    h = site.tx_plane.height_m
    out = []
    while len(out) < n:
        p = (float(rng.uniform(0, L)), float(rng.uniform(0, W)), h)
        if site.obstacle_at(p) is None:
            out.append(p)
    return np.array(out)


def direct_gain_db(site: Site, tx_positions_m: np.ndarray, settings: SolverSettings) -> np.ndarray:
    """Path gain (N, n_su) in dB from each transmitter position to each SU, traced TX → SU."""
    from central.twin.rt_runtime import load_rt_scene
    from central.twin.solvers import path_gain_matrix

    scene = load_rt_scene(site)
    lin = path_gain_matrix(scene, tx_positions_m, np.array(site.su_positions_m), replace(settings, method="paths"))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(lin)


# Pairs whose reference gain is below this cannot matter: a 20 dBm transmitter would arrive 30 dB
# under a −100 dBm noise floor. Deep-shadow gains (−200 dB and lower, or no path at all at the traced
# depth) are compared only as "no path" vs "path", not in dB.
RELEVANT_GAIN_DB = -150.0


@dataclass(frozen=True)
class Agreement:
    median_abs_db: float
    p95_abs_db: float
    bias_db: float
    n: int  # pairs compared (reference gain >= min_reference_db)
    n_shadow: int  # pairs below it (deep shadow or no path), left out of the dB figures


def agreement(lookup_db: np.ndarray, reference_db: np.ndarray, min_reference_db: float = RELEVANT_GAIN_DB) -> Agreement:
    """Absolute error statistics of lookup vs reference (dB) over the pairs that can matter.

    A lookup that misses a relevant path shows up as a huge error, it is not filtered out.
    """
    ref = np.asarray(reference_db, dtype=float).ravel()
    look = np.nan_to_num(np.asarray(lookup_db, dtype=float).ravel(), nan=-np.inf)
    relevant = ref >= min_reference_db
    err = np.maximum(look[relevant], -400.0) - ref[relevant]
    a = np.abs(err)
    return Agreement(float(np.median(a)), float(np.percentile(a, 95)), float(np.median(err)), int(a.size),
                     int((~relevant).sum()))
