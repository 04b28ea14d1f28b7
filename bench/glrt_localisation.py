"""Jammer localisation on the twin: the GLRT (models.detectors.GlrtDetector.locate) against the weighted-LS
point-source localiser (central.detection.localise.PointSourceLocaliser), plus a quick AUC/µs check of the
issue-5 detectors against ED on a simple split (the paper's 5-fold protocol is bench/detection.py's).

Usage: python bench/glrt_localisation.py [--site factory-hall-a] [--n 2000] [--sigmas 0,3,6]

Data (:mod:`evaluation.dataset`, cached gain maps only): training = n normal realisations (seed 1), test = n
realisations with a jammer in half of them (seed 2); 3 legitimate TXs + jammer at 20 dBm, context error
N(0, 0.37 m), Δ = PT − DT + σ·z. Localisation error = distance (x, y) from the estimated cell centre to the
true jammer position, over the jammed test snapshots (a miss counts as 40 m). One JSON line per σ.
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

from central.detection.localise import PointSourceLocaliser  # noqa: E402
from central.twin import Twin  # noqa: E402
from evaluation.dataset import generate_dataset  # noqa: E402
from models.detectors import make_detector  # noqa: E402

MISS_M = 40.0


def auc(s0, s1):
    s = np.r_[s0, s1]
    r = s.argsort(kind="stable").argsort() + 1
    return float((r[len(s0) :].sum() - len(s1) * (len(s1) + 1) / 2) / (len(s0) * len(s1)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="factory-hall-a")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sigmas", default="0,3,6")
    ap.add_argument("--detectors", default="ed,maxres,gauss,gls,glrt")
    args = ap.parse_args(argv)
    twin = Twin.load(args.site)
    cg = twin.predictor.cell_gains()
    tr = generate_dataset(twin, n=args.n, seed=1, jammer_prob=0.0)
    te = generate_dataset(twin, n=args.n, seed=2)
    wls = PointSourceLocaliser(cg.positions_m, cg.gain_lin)
    y = te.jammer
    truth = te.jammer_position_m[y, :2]
    for sigma in (float(s) for s in args.sigmas.split(",")):
        xtr, xte = tr.delta_db(sigma), te.delta_db(sigma)
        out = {"site": args.site, "sigma_db": sigma, "n_cells": int(cg.gain_lin.shape[0])}
        for kind in args.detectors.split(","):
            kw = {"cell_positions_m": cg.positions_m, "gain_lin": cg.gain_lin} if kind == "glrt" else {}
            det = make_detector(kind, **kw).fit(xtr, predicted_dbm=tr.dt_dbm)
            t = time.perf_counter()
            s = det.score(xte, predicted_dbm=te.dt_dbm)
            out[f"us_per_snapshot_{kind}"] = round((time.perf_counter() - t) / len(xte) * 1e6, 1)
            out[f"auc_{kind}"] = round(auc(s[~y], s[y]), 4)
            if kind == "glrt":
                pos, _ = det.locate(xte[y], te.dt_dbm[y])
                e = np.nan_to_num(np.linalg.norm(pos - truth, axis=1), nan=MISS_M)
                out["loc_median_m_glrt"] = round(float(np.median(e)), 2)
                out["loc_p90_m_glrt"] = round(float(np.percentile(e, 90)), 2)
        meas = te.dt_dbm + xte
        e = []
        for i, j in enumerate(np.flatnonzero(y)):
            loc = wls.locate(meas[j], te.dt_dbm[j])
            e.append(MISS_M if loc is None else float(np.hypot(*(np.asarray(loc.position_m[:2]) - truth[i]))))
        out["loc_median_m_wls"] = round(float(np.median(e)), 2)
        out["loc_p90_m_wls"] = round(float(np.percentile(e, 90)), 2)
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
