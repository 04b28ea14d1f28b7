"""The twin a site runs after its calibration campaign, fitted in a simulated world.

A real hall's twin is calibrated before it is trusted (``rftwin-calibrate``): a reference transmitter
is carried to a few dozen points, the nodes' readings are collected, and the twin's materials are fitted
to them by differentiable ray tracing. The benchmarks judge detection and agreement against *that*
twin, so this runs the same fit on a simulated campaign in a world (PT maps the twin never saw):
readings = the world's path gain at ``points`` floor-grid positions + per-SU offsets uniform in
± ``offset_db`` (cable loss, antenna: the nodes' calibration tables' business, profiled by the fit) +
the mean of ``readings`` readings with ``noise_db`` noise each. The fit (:func:`fit_materials`, traced
at the twin's depth) splits the points into train / validation / held-out itself.

The fitted materials are cached as a small JSON file under the cache root (``calibrated-twins``), keyed
by the twin's site and settings, the world's map key and the campaign: a fit at depth 5 takes about
ten minutes, and the calibrated twin's maps are then cached like any twin's.
"""

from __future__ import annotations

import dataclasses as dc
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.material_fit import FitSettings, FitStep, fit_materials, with_materials
from central.twin import SolverSettings, Twin
from central.twin.positions import sample_positions
from central.twin.site import Site
from contracts.cache import cache_dir


@dataclass(frozen=True)
class SimulatedCampaign:
    """A reference-transmitter campaign in a simulated world (the defaults of bench/calibration.py)."""

    points: int = 40
    power_dbm: float = 20.0
    offset_db: float = 3.0  # per-SU offsets ~ U(−this, +this)
    noise_db: float = 2.0  # per reading
    readings: int = 100  # averaged per point
    seed: int = 0

    def readings_in(self, world: Twin, site: Site) -> CampaignReadings:
        """What the campaign reads in ``world``, at points on ``site``'s floor grid."""
        rng = np.random.default_rng(self.seed)
        cell = site.tx_plane.cell_size_m
        pts = sample_positions(world.site, self.points, rng)
        pts[:, :2] = (np.floor(pts[:, :2] / cell) + 0.5) * cell
        power = np.full(self.points, self.power_dbm)
        offsets = rng.uniform(-self.offset_db, self.offset_db, len(site.sensing_units))
        noise = rng.normal(0.0, self.noise_db, (self.readings, self.points, len(site.sensing_units))).mean(axis=0)
        measured = world.predictor.predict(pts[:, None, :], power[:, None]) + offsets + noise
        return CampaignReadings(pts, power, measured, offsets)


@dataclass(frozen=True)
class CampaignReadings:
    positions_m: np.ndarray  # (P, 3)
    power_dbm: np.ndarray  # (P,) the reference transmitter's EIRP
    measured_dbm: np.ndarray  # (P, n_su): the world + per-SU offsets + dwell-averaged noise
    offsets_db: np.ndarray  # (n_su,) the true per-SU offsets (what a fit should recover)


@dataclass(frozen=True)
class CalibratedTwin:
    twin: Twin
    materials: dict[str, tuple[float, float]]  # fitted name → (ε_r, σ S/m)
    fit_s: float  # how long the fit took when it ran (read from the cache on a hit)
    fit_cached: bool
    stopped: str


def calibrated_twin(site: Site, settings: SolverSettings, world: Twin, campaign: SimulatedCampaign = SimulatedCampaign(),
                    cache_root: Path | None = None,
                    progress: Callable[[FitStep], None] | None = None) -> CalibratedTwin:  # fmt: skip
    """``site``'s twin at ``settings`` with its materials fitted to ``campaign`` in ``world``."""
    folder = Path(cache_root) / "calibrated-twins" if cache_root else cache_dir("calibrated-twins")
    key = hashlib.sha256(json.dumps({
        "site": site.content_hash(), "settings": settings.to_dict(), "world": world.maps.key,
        "campaign": dc.asdict(campaign), "fit": dc.asdict(fit_settings(settings, campaign)),
    }, sort_keys=True).encode()).hexdigest()[:20]  # fmt: skip
    path = folder / f"{key}.json"
    cached = None
    if path.exists():
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError):
            cached = None  # a torn or foreign file: fit again
    if cached is None:
        r = campaign.readings_in(world, site)
        t0 = time.perf_counter()
        res = fit_materials(site, r.positions_m, r.power_dbm, r.measured_dbm, fit_settings(settings, campaign), progress=progress)
        fit_s = time.perf_counter() - t0
        materials = {k: (float(e), float(s)) for k, (e, s) in res.materials.items()}
        record = {"materials": materials, "fit_s": round(fit_s, 1), "stopped": res.stopped,
                  "holdout_rmse_db": [round(res.rmse_db("holdout", False), 3), round(res.rmse_db("holdout"), 3)]}  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)  # never a half-written entry
    else:
        record = cached
    materials = {k: tuple(v) for k, v in record["materials"].items()}
    cal = with_materials(site, materials, f"simulated campaign of {campaign.points} points, seed {campaign.seed}")
    twin = Twin.load(cal, settings, cache_dir=(Path(cache_root) / "gain-maps") if cache_root else None)
    return CalibratedTwin(twin, materials, record["fit_s"], cached is not None, record["stopped"])


def log_fit_step(step: FitStep) -> None:
    """A ``progress`` for :func:`calibrated_twin` that prints each fit step to stderr (a fit takes minutes)."""
    print(f"    fit step {step.iteration}: validation loss {step.validation_loss_db2:.3f} dB²", file=sys.stderr, flush=True)


def fit_settings(settings: SolverSettings, campaign: SimulatedCampaign) -> FitSettings:
    """The fit, traced at the twin's depth (the differentiable fit itself runs without diffraction)."""
    return FitSettings(max_depth=settings.max_depth, seed=campaign.seed)

