"""Calibration benchmark (issue 6): recover the simulated world's concrete and per-SU offsets from a
40-point reference-transmitter campaign by differentiable ray tracing.

Usage: python bench/calibration.py [--points 40] [--noise-db 2] [--readings 100] [--seed 0] [--out docs/results]

World: ``factory-hall-a-truth`` (concrete ε_r 7.0, σ 0.3 S/m; the twin starts from ITU concrete, ε_r 5.24,
σ 0.13 S/m), its traced gain maps (cached; the same maps the simulated nodes sense), per-SU offsets
uniform in ±3 dB, each reading with N(0, noise) dB measurement noise, a point's value the mean (dB) of
``--readings`` readings (a 10 s dwell at 10 readings/s). Points uniform over the TX plane outside
obstacles, on the 0.5 m cell centres (the floor grid the engineer places the reference TX on, and where
the world's maps are exact; between centres the maps interpolate). 25 % of the points are held-out test
points, 20 % validation points (early stopping), the rest train (calibration.material_fit).

Last line: one JSON object with eps_err_pct, sigma_err_pct, offset_err_db_max, heldout_rmse_before_db,
heldout_rmse_after_db, rmse_reduction_pct: on the test points; "before" is the twin's materials with
per-SU offsets profiled on the training points (so the reduction is what the material fit adds, not the
offsets), ``heldout_rmse_as_built_db`` the twin with no offsets at all. Each twice: ``…_all_db`` over
every test reading, and without the geometry outliers (off by > 10 dB before and after, i.e. a path one
side finds and the other does not; counted in heldout_outliers). Then fit_s and iterations. Writes a
report (Markdown and a scatter PNG) under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.calibrated_twin import SimulatedCampaign  # noqa: E402
from calibration.material_fit import FitSettings, fit_materials, nan_rmse  # noqa: E402
from calibration.report import write_report  # noqa: E402
from central.twin import Twin, resolve_site  # noqa: E402
from run_info import run_info  # noqa: E402

TRUE_EPS, TRUE_SIGMA = 7.0, 0.3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--noise-db", type=float, default=2.0, help="per-reading measurement noise, dB")
    ap.add_argument("--readings", type=int, default=100, help="readings averaged per point (dwell)")
    ap.add_argument("--offset-db", type=float, default=3.0, help="per-SU offsets uniform in ±this, dB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=FitSettings.iterations)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = ap.parse_args(argv)

    site = resolve_site("factory-hall-a")
    world = Twin.load("factory-hall-a-truth")  # traces the world's maps once if not cached
    mat = world.site.materials["concrete"]
    assert (mat.relative_permittivity, mat.conductivity_s_per_m) == (TRUE_EPS, TRUE_SIGMA)
    campaign = SimulatedCampaign(args.points, 20.0, args.offset_db, args.noise_db, args.readings, args.seed)
    r = campaign.readings_in(world, site)
    pts, power, measured, offsets = r.positions_m, r.power_dbm, r.measured_dbm, r.offsets_db

    t0 = time.perf_counter()
    res = fit_materials(site, pts, power, measured, FitSettings(iterations=args.iterations, seed=args.seed),
                        progress=lambda s: print(f"  step {s.iteration:3d}: train RMSE {s.train_rmse_db:.3f} dB, "
                                                 f"validation loss {s.validation_loss_db2:.3f} dB², "
                                                 f"concrete ε_r {s.materials['concrete'][0]:.3f} "
                                                 f"σ {s.materials['concrete'][1]:.4f} ({s.seconds:.2f} s)",
                                                 file=sys.stderr, flush=True))  # fmt: skip
    fit_s = time.perf_counter() - t0
    eps, sigma = res.materials["concrete"]
    off_err = np.array([res.offsets_db[s] for s in site.su_ids]) - offsets
    h = res.holdout
    eb = res.predicted_before_dbm[h] - res.measured_dbm[h]
    ea = res.predicted_after_dbm[h] - res.measured_dbm[h]
    e_built = res.predicted_as_built_dbm[h] - res.measured_dbm[h]
    outlier = (np.abs(eb) > 10.0) & (np.abs(ea) > 10.0)
    ok = np.isfinite(eb) & np.isfinite(ea) & ~outlier
    before, after = float(np.sqrt(np.mean(eb[ok] ** 2))), float(np.sqrt(np.mean(ea[ok] ** 2)))
    out = {
        "points": args.points, "noise_db": args.noise_db, "readings": args.readings, "seed": args.seed,
        "eps_true": TRUE_EPS, "eps_start": round(res.initial_materials["concrete"][0], 3), "eps_fit": round(eps, 3),
        "eps_err_pct": round(100 * abs(eps - TRUE_EPS) / TRUE_EPS, 2),
        "sigma_true": TRUE_SIGMA, "sigma_fit": round(sigma, 4),
        "sigma_err_pct": round(100 * abs(sigma - TRUE_SIGMA) / TRUE_SIGMA, 1),
        "offset_err_db_max": round(float(np.abs(off_err).max()), 3),
        "offset_err_db_rms": round(float(np.sqrt(np.mean(off_err**2))), 3),
        "heldout_rmse_before_db": round(before, 3), "heldout_rmse_after_db": round(after, 3),
        "rmse_reduction_pct": round(100 * (1 - after / before), 1),
        "heldout_outliers": int(outlier.sum()), "heldout_readings": int(ok.sum()),
        "heldout_rmse_before_all_db": round(res.rmse_db("holdout", after=False), 3),
        "heldout_rmse_after_all_db": round(res.rmse_db("holdout"), 3),
        "rmse_reduction_all_pct": round(100 * (1 - res.rmse_db("holdout") / res.rmse_db("holdout", after=False)), 1),
        "heldout_rmse_as_built_db": round(nan_rmse(np.where(ok, e_built, np.nan)), 3),
        "heldout_rmse_as_built_all_db": round(res.as_built_rmse_db("holdout"), 3),
        "train_points": len(res.train), "validation_points": len(res.validation), "test_points": len(h),
        "fit_s": round(fit_s, 1), "iterations": len(res.history), "stopped": res.stopped,
    }  # fmt: skip
    info = out["run"] = run_info()
    paths = write_report(res, Path(args.out), "calibration", site, figures=out,
                         command=info["command"],
                         commit=info["commit"], dirty=info["dirty"])  # fmt: skip
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
